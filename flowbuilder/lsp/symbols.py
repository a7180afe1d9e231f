"""Where every name of a workspace is declared and used, read off the parse trees of its files.

An `Occurrence` is one name token: a declaration (`template welcome_email`, `hello: send …`) or a
reference (`send welcome_email`, `-> hello`, `opened(hello)`, `lead.revenue`). Steps and goals
belong to their flow; everything else to the workspace. The index answers "what is at this
position" and "where is it declared", which are go to definition, hover and completion.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from lark import Token, Tree

from dsl.complete import Known
from dsl.diagnostics import Span
from dsl.fmt import format_node
from dsl.functions import FUNCTIONS, REF_KINDS

# The declarations that name a workspace-wide thing: rule -> kind.
_DECLARATIONS = {
    "template": "template",
    "segment": "segment",
    "list_decl": "list",
    "form": "form",
    "attribute": "attribute",
    "flow": "flow",
}


@dataclass(frozen=True)
class Occurrence:
    """One name token: what it names (kind, name, flow for steps and goals), where, and whether it
    is the declaration."""

    kind: str
    name: str
    path: str
    span: Span
    flow: str | None = None
    declaration: bool = False

    @property
    def key(self) -> tuple[str, str | None, str]:
        return (self.kind, self.flow if self.kind in ("step", "goal") else None, self.name)


@dataclass(frozen=True)
class TemplateFile:
    """An `html "…"` or `text "…"` line of a template: the file it names, and where the text is."""

    template: str
    relative: str
    path: str
    span: Span


@dataclass(frozen=True)
class Declaration:
    """A declared thing: its occurrence and the parse-tree node that declares it."""

    occurrence: Occurrence
    node: Tree[Token]


def _span(token: Token) -> Span:
    line = token.line or 1
    col = token.column or 1
    end_line = token.end_line or line
    end_col = token.end_column or col + len(token.value)
    return Span(line, col, end_line, end_col)


def _trees(nodes: Iterable[object]) -> Iterator[Tree[Token]]:
    return (n for n in nodes if isinstance(n, Tree))


def _token(node: object) -> Token | None:
    if isinstance(node, Token):
        return node
    if isinstance(node, Tree) and len(node.children) == 1 and isinstance(node.children[0], Token):
        return node.children[0]
    return None


@dataclass
class _FileWalk:
    path: str
    occurrences: list[Occurrence] = field(default_factory=list)
    declarations: list[Declaration] = field(default_factory=list)
    files: list[TemplateFile] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    fields: dict[str, list[str]] = field(default_factory=dict)

    def add(self, kind: str, node: object, flow: str | None = None) -> None:
        token = _token(node)
        if token is not None and token.type == "NAME":
            self.occurrences.append(
                Occurrence(kind, str(token.value), self.path, _span(token), flow)
            )

    def declare(self, kind: str, token: object, node: Tree[Token], flow: str | None = None) -> None:
        if isinstance(token, Token):
            occurrence = Occurrence(kind, str(token.value), self.path, _span(token), flow, True)
            self.occurrences.append(occurrence)
            self.declarations.append(Declaration(occurrence, node))

    # ------------------------------------------------------------------ declarations

    def top(self, decl: Tree[Token]) -> None:
        data = str(decl.data)
        children = decl.children
        if data in _DECLARATIONS:
            self.declare(_DECLARATIONS[data], children[0], decl)
        match data:
            case "flow":
                flow = str(children[0])
                for item in _trees(children[2:]):
                    self.flow_item(item, flow)
            case "template":
                for item in _trees(children[2:]):
                    if item.data in ("template_html", "template_text"):
                        token = _token(item)
                        if token is not None:
                            relative = str(token.value)[1:-1]
                            self.files.append(
                                TemplateFile(str(children[0]), relative, self.path, _span(token))
                            )
            case "stages":
                for stage in _trees(children):
                    self.declare("stage", stage.children[0], stage)
                    self.expr(stage.children[2], None)
            case "settings":
                for setting in _trees(children):
                    self.declare("setting", setting.children[0], setting)
                    self.expr(setting.children[1], None)
            case "form":
                form = str(children[0])
                for item in _trees(children[2:]):
                    if item.data == "form_field":
                        self.fields.setdefault(form, []).append(str(item.children[0]))
                    elif item.data == "form_route":
                        self.expr(item.children[0], None)
                        self.add("list", item.children[1])
            case "segment":
                self.expr(children[2], None)
            case "list_decl" | "scoring":
                for rule in decl.iter_subtrees():
                    if rule.data in ("list_add_rule", "list_remove_rule", "score_when"):
                        self.expr(rule.children[-1], None)
                    elif rule.data == "score_per":
                        self.event(rule.children[3])

    # ------------------------------------------------------------------ flows

    def flow_item(self, item: Tree[Token], flow: str) -> None:
        children = item.children
        match item.data:
            case "step":
                self.declare("step", children[0], item, flow)
                action = children[1]
                if isinstance(action, Tree):
                    self.action(action, flow)
            case "goal":
                self.declare("goal", children[0], item, flow)
                self.expr(children[1], flow)
            case "trigger_entered" | "trigger_schedule":
                for membership in _trees(children):
                    if membership.data == "membership":
                        kind = _token(membership.children[0])
                        if kind is not None:
                            self.add(str(kind.value), membership.children[1])
            case "trigger_form":
                self.add("form", children[0])
                self.expr(children[1], flow)
            case "trigger_event":
                self.event(children[0])
                self.expr(children[1], flow)
            case "layout":
                for position in _trees(children):
                    self.add("step", position.children[0], flow)
            case "migrate":
                for mapping in _trees(children):
                    self.add("step", mapping.children[1], flow)
            case _:
                for child in _trees(children):
                    self.expr(child, flow)

    def action(self, action: Tree[Token], flow: str) -> None:
        children = action.children
        match action.data:
            case "send":
                self.add("template", children[0])
            case "add_to_list" | "remove_from_list":
                self.add("list", children[0])
            case "move_to_flow":
                self.add("flow", children[0])
            case "reach_goal":
                self.add("goal", children[0], flow)
        for node in action.iter_subtrees():
            match node.data:
                case "edge" | "then_arm" | "timeout_arm" | "else_arm":
                    self.add("step", node.children[0], flow)
                case "if_arm" | "else_if_arm" | "split_path":
                    self.add("step", node.children[-1], flow)
                case "variant_template":
                    self.add("template", node.children[0])
        for child in _trees(children):
            if child.data not in ("variants", "wait_arms", "edge"):
                self.expr(child, flow)

    # ------------------------------------------------------------------ conditions

    def event(self, node: object) -> None:
        token = _token(node)
        if token is not None:
            self.events.append(str(token.value).strip('"'))

    def expr(self, node: object, flow: str | None) -> None:
        if not isinstance(node, Tree):
            return
        if node.data == "call":
            fn = FUNCTIONS.get(str(node.children[0]))
            positional = 0
            for arg in node.children[1:]:
                if not isinstance(arg, Tree):
                    continue
                if arg.data == "kwarg":
                    if arg.children[0] == "step":
                        self.add("step", arg.children[1], flow)
                    self.expr(arg.children[1], flow)
                    continue
                kind = fn.params[positional].kind if fn and positional < len(fn.params) else ""
                positional += 1
                if kind in REF_KINDS and arg.data == "name":
                    if kind == "event":
                        self.event(arg)
                    else:
                        self.add(kind, arg, flow)
                elif kind == "event" and arg.data == "string_lit":
                    self.event(arg)
                else:
                    self.expr(arg, flow)
            return
        if node.data == "path":
            root, first = node.children[0], node.children[1]
            if root == "lead":
                self.add("attribute", first)
            elif root == "settings":
                self.add("setting", first)
            return
        for child in node.children:
            self.expr(child, flow)


@dataclass
class Index:
    """The names of a workspace: every occurrence, by file, and the declarations by key."""

    occurrences: dict[str, list[Occurrence]] = field(default_factory=dict)
    declarations: dict[tuple[str, str | None, str], list[Declaration]] = field(default_factory=dict)
    files: list[TemplateFile] = field(default_factory=list)
    events: set[str] = field(default_factory=set)
    fields: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def build(cls, trees: dict[str, Tree[Token]]) -> Index:
        index = cls()
        for path, tree in trees.items():
            walk = _FileWalk(path)
            for decl in _trees(tree.children):
                walk.top(decl)
            index.occurrences[path] = sorted(walk.occurrences, key=lambda o: o.span)
            for d in walk.declarations:
                index.declarations.setdefault(d.occurrence.key, []).append(d)
            index.files += walk.files
            index.events.update(walk.events)
            for form, names in walk.fields.items():
                index.fields.setdefault(form, []).extend(names)
        return index

    def at(self, path: str, line: int, col: int) -> Occurrence | TemplateFile | None:
        """The name (or template file text) at a 1-based position."""
        for f in self.files:
            if f.path == path and _inside(f.span, line, col):
                return f
        for occurrence in self.occurrences.get(path, []):
            if _inside(occurrence.span, line, col):
                return occurrence
        return None

    def declared(self, occurrence: Occurrence) -> list[Declaration]:
        return self.declarations.get(occurrence.key, [])

    def files_of(self, template: str) -> list[TemplateFile]:
        return [f for f in self.files if f.template == template]

    def known(self) -> Known:
        """The declared names by kind, for completion."""
        known = Known(events={e: "used in this workspace" for e in sorted(self.events)})
        for (kind, flow, name), decls in sorted(
            self.declarations.items(), key=lambda kv: (kv[0][0], kv[0][1] or "", kv[0][2])
        ):
            detail = _detail(decls[0].node)
            if kind == "step":
                known.steps.setdefault(flow or "", {})[name] = detail
            elif kind == "goal":
                known.goals.setdefault(flow or "", {})[name] = detail
            else:
                table: dict[str, str] = getattr(known, kind + "s")
                table[name] = detail
        known.fields = {
            form: {n: "form field" for n in names} for form, names in self.fields.items()
        }
        return known


def _inside(span: Span, line: int, col: int) -> bool:
    """Whether the position is on the span or just after it (a cursor after a name is on it)."""
    return (span.line, span.col) <= (line, col) <= (span.end_line, span.end_col)


def _detail(node: Tree[Token]) -> str:
    """A declaration in one line: a step's action, a template's or segment's title, an attribute's type."""
    children = node.children
    match node.data:
        case "step" | "goal" | "setting" | "attribute" | "stage":
            text = format_node(node)
            return text.split("\n", 1)[0].removesuffix(" {")
    for child in children[1:2]:
        if isinstance(child, Token) and child.type == "STRING":
            return str(child.value)[1:-1]
    return str(node.data).removesuffix("_decl")
