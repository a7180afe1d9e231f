// The .flow language for CodeMirror 5 (simple mode): comments, strings, durations, keywords.
/* global CodeMirror */
(function () {
  "use strict";
  const keywords = [
    "account", "add", "address", "always", "and", "anniversary", "at", "attribute", "branch", "business", "cap",
    "class", "consent", "contact", "contains", "date", "days", "decay", "else", "end", "ends_with", "engagement",
    "entered", "entry", "event", "every", "exit", "false", "field", "fit", "flow", "for", "form", "frequency",
    "fri", "from", "goal", "holdout", "hours", "html", "if", "in", "inactive", "kind", "layout", "list", "matches",
    "migrate", "mon", "move", "not", "null", "on", "once", "or", "per", "preheader", "quiet", "region", "remove",
    "required", "route", "sat", "schedule", "scoring", "segment", "send", "sender", "settings", "split", "stage",
    "stages", "starts_with", "subject", "sun", "suppress", "template", "text", "then", "thu", "timeout", "timezone",
    "to", "topic", "trigger", "true", "tue", "until", "up", "update", "variant", "wait", "webhook", "wed", "when",
    "where", "window", "within", "workspace",
  ];
  const words = new RegExp("(?:" + keywords.join("|") + ")\\b");
  CodeMirror.defineSimpleMode("flow", {
    start: [
      { regex: /#.*/, token: "comment" },
      { regex: /"(?:[^\\"]|\\.)*"/, token: "string" },
      { regex: /\d+(?:\.\d+)?(?:%|[smhdw]\b)/, token: "number" },
      { regex: /\d{1,2}:\d{2}\b/, token: "number" },
      { regex: /\d+(?:\.\d+)?/, token: "number" },
      { regex: /^\s*[A-Za-z_][A-Za-z0-9_]*(?=:\s)/, token: "def" },
      { regex: /->/, token: "operator" },
      { regex: words, token: "keyword" },
      { regex: /[A-Za-z_][A-Za-z0-9_]*(?=\()/, token: "builtin" },
      { regex: /(?:lead|event|answer|settings)\.[A-Za-z_][\w.]*/, token: "variable-2" },
      { regex: /[{}]/, token: "bracket" },
    ],
    meta: { lineComment: "#" },
  });
})();
