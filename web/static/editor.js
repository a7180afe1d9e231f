// The flow editor: a Drawflow canvas laid out by dagre, a CodeMirror text pane, and the server's
// edit operations. The canvas never saves a document: every gesture becomes semantic edit
// operations sent with the revision they were made on; the server answers with the new model (or
// 409 with the current one when someone else changed the text first), and the canvas is redrawn
// from it.
/* global Drawflow, dagre, CodeMirror, htmx */
(function () {
  "use strict";

  const root = document.getElementById("editor");
  if (!root) return;
  const flow = root.dataset.flow;
  const api = `/api/flows/${encodeURIComponent(flow)}`;
  const NODE_W = 200;
  const NODE_H = 90;
  const START = "__start__";

  const state = {
    model: null,
    revision: null,
    selected: null,
    offset: { x: 0, y: 0 },
    ids: {}, // step name → Drawflow id
    names: {}, // Drawflow id → step name
    metrics: null,
    showMetrics: true,
    path: null,
    rendering: false,
    busy: false,
    textDirty: false,
    textTimer: null,
    syntax: [],
  };
  window.flowEditor = state;

  // ------------------------------------------------------------------ messages

  const notice = document.getElementById("notice");
  const conflict = document.getElementById("conflict");
  let noticeTimer = null;

  function say(message, kind) {
    notice.textContent = message;
    notice.className = "notice" + (kind === "error" ? " error" : "");
    notice.setAttribute("role", kind === "error" ? "alert" : "status");
    notice.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => (notice.hidden = true), kind === "error" ? 12000 : 5000);
  }

  // ------------------------------------------------------------------ the canvas

  const container = document.getElementById("canvas");
  const editor = new Drawflow(container);
  editor.reroute = false;
  editor.curvature = 0.45;
  editor.zoom_min = 0.3;
  // Edges run top to bottom: a vertical curve from a port under a step to the top of the next.
  editor.createCurvature = function (sx, sy, ex, ey) {
    const dy = Math.max(Math.abs(ey - sy) * 0.45, 40);
    return ` M ${sx} ${sy} C ${sx} ${sy + dy} ${ex} ${ey - dy} ${ex} ${ey}`;
  };
  editor.start();

  function escapeHtml(text) {
    return String(text)
      .replace(/&/g, "&amp;")
      .replace(/</g, "&lt;")
      .replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;");
  }

  function percent(part, whole) {
    return whole ? Math.round((100 * part) / whole) + "%" : "—";
  }

  function metricsLine(name) {
    if (!state.showMetrics || !state.metrics) return "";
    const c = state.metrics.steps[name];
    if (!c) return `<div class="node-metrics muted">no leads yet</div>`;
    const parts = c.sent
      ? [`${c.sent} sent`, `${percent(c.opened, c.sent)} open`, `${percent(c.clicked, c.sent)} click`]
      : [`${c.entered} leads here`];
    if (c.converted) parts.push(`${c.converted} conv.`);
    const title = Object.entries(c)
      .filter(([k]) => k !== "rates")
      .map(([k, v]) => `${k}: ${v}`)
      .join(", ");
    return `<div class="node-metrics" title="${escapeHtml(title)}">${parts.join(" · ")}</div>`;
  }

  function nodeHtml(n) {
    const problems = n.diagnostics || [];
    const worst = problems.some((d) => d.severity === "error") ? "error" : "warning";
    const badge = problems.length
      ? `<span class="node-badge ${worst}" title="${escapeHtml(
          problems.map((d) => `${d.code} ${d.message}`).join("\n")
        )}">${problems.length}<span class="sr-only"> problems</span></span>`
      : "";
    const visit = state.path ? state.path.order[n.name] : undefined;
    const order = visit !== undefined ? `<span class="node-visit" title="${escapeHtml(visit.title)}">${visit.n}</span>` : "";
    const detail = [n.detail, ...(n.notes || [])].filter(Boolean).join(" · ");
    return `<div class="node-body" data-step="${escapeHtml(n.name)}">
      <div class="node-kind"><span class="icon" aria-hidden="true"></span>${escapeHtml(n.label)}${badge}${order}</div>
      <div class="node-name">${escapeHtml(n.name)}</div>
      <div class="node-detail" title="${escapeHtml(n.action)}">${escapeHtml(detail) || "&nbsp;"}</div>
      ${metricsLine(n.name)}
    </div>`;
  }

  function startHtml(model) {
    const lines = model.triggers.length ? model.triggers : ["moved here by another flow"];
    return `<div class="node-body"><div class="node-kind">Starts</div>${lines
      .map((t) => `<div class="node-detail" title="${escapeHtml(t)}">${escapeHtml(t)}</div>`)
      .join("")}</div>`;
  }

  // dagre lays the graph out top to bottom, in the order of the text: the same flow always gets
  // the same picture. The picture depends only on the steps and where their ports lead, so the
  // last one is kept: showing metrics or a simulated path, or a change of a step's properties,
  // redraws the canvas without laying a big flow out again.
  let lastLayout = { key: null, out: null };
  function autoLayout(model) {
    const key = JSON.stringify([model.start, model.nodes.map((n) => [n.name, n.ports.map((p) => p.target)])]);
    if (lastLayout.key !== key) lastLayout = { key, out: layOut(model) };
    return lastLayout.out;
  }

  function layOut(model) {
    const g = new dagre.graphlib.Graph({ multigraph: true });
    g.setGraph({ rankdir: "TB", nodesep: 40, ranksep: 60, marginx: 0, marginy: 0 });
    g.setDefaultEdgeLabel(() => ({}));
    g.setNode(START, { width: NODE_W, height: 56 });
    model.nodes.forEach((n) => g.setNode(n.name, { width: NODE_W, height: NODE_H }));
    if (model.start) g.setEdge(START, model.start, {}, "start");
    const names = new Set(model.nodes.map((n) => n.name));
    model.nodes.forEach((n) =>
      n.ports.forEach((p) => {
        if (p.target && names.has(p.target)) g.setEdge(n.name, p.target, {}, `${n.name}:${p.id}`);
      })
    );
    dagre.layout(g);
    const out = {};
    g.nodes().forEach((name) => {
      const node = g.node(name);
      out[name] = [Math.round(node.x - node.width / 2), Math.round(node.y - node.height / 2)];
    });
    // The picture starts at the first step: put it at 0, 0 like a saved layout would.
    const first = model.start ? out[model.start] : [0, 0];
    Object.keys(out).forEach((k) => (out[k] = [out[k][0] - first[0], out[k][1] - first[1]]));
    return out;
  }

  function positions(model) {
    // A flow whose layout block places every step needs no automatic layout.
    const auto = model.nodes.every((n) => n.position) ? {} : autoLayout(model);
    const out = {};
    model.nodes.forEach((n) => (out[n.name] = (n.position || auto[n.name]).slice()));
    const first = model.start ? out[model.start] : [0, 0];
    out[START] = [first[0], first[1] - 110];
    return out;
  }

  function render() {
    const model = state.model;
    state.rendering = true;
    try {
      editor.clear();
      state.ids = {};
      state.names = {};
      const pos = positions(model);
      const xs = Object.values(pos).map((p) => p[0]);
      const ys = Object.values(pos).map((p) => p[1]);
      state.offset = { x: 60 - Math.min(...xs), y: 30 - Math.min(...ys) };
      const at = (name) => [pos[name][0] + state.offset.x, pos[name][1] + state.offset.y];
      const start = editor.addNode(START, 0, 1, ...at(START), "start-node", {}, startHtml(model));
      state.names[start] = START;
      model.nodes.forEach((n) => {
        const classes = [`step`, `kind-${n.kind}`];
        if ((n.diagnostics || []).length) classes.push(n.diagnostics.some((d) => d.severity === "error") ? "has-error" : "has-warning");
        if (state.path && n.name in state.path.order) classes.push("visited");
        if (state.selected === n.name) classes.push("chosen");
        const id = editor.addNode(n.name, 1, n.ports.length, ...at(n.name), classes.join(" "), { step: n.name }, nodeHtml(n));
        state.ids[n.name] = id;
        state.names[id] = n.name;
      });
      // Drawflow redraws every edge of both ends each time it adds one, reading port positions
      // (a fresh layout of the page each time) and searching the whole canvas for the node's
      // edges: on a 300-step flow that was most of the time the editor took to open. The edges are
      // added without being drawn, then drawn all at once.
      editor.updateConnectionNodes = () => {};
      try {
        if (model.start) editor.addConnection(start, state.ids[model.start], "output_1", "input_1");
        model.nodes.forEach((n) => {
          n.ports.forEach((p, i) => {
            if (p.target && state.ids[p.target] !== undefined) {
              editor.addConnection(state.ids[n.name], state.ids[p.target], `output_${i + 1}`, "input_1");
            }
          });
        });
      } finally {
        delete editor.updateConnectionNodes; // Drawflow's own again, for dragging a step
      }
      drawEdges();
      decorate();
      if (!state.fitted) fit(pos);
    } finally {
      state.rendering = false;
    }
  }

  // Every edge's curve from the centre of its port to the centre of its target's input, as
  // Drawflow's updateConnectionNodes draws it, but with every position read before any curve is
  // written, so the browser lays the canvas out once instead of once per edge.
  function drawEdges() {
    const pre = editor.precanvas;
    const box = pre.getBoundingClientRect();
    const zx = pre.clientWidth / (pre.clientWidth * editor.zoom) || 0;
    const zy = pre.clientHeight / (pre.clientHeight * editor.zoom) || 0;
    const seen = {};
    const centre = (nodeId, cls) => {
      const key = `${nodeId} ${cls}`;
      if (!(key in seen)) {
        const port = document.getElementById(nodeId).querySelector(`.${cls}`);
        const r = port.getBoundingClientRect();
        seen[key] = [port.offsetWidth / 2 + (r.x - box.x) * zx, port.offsetHeight / 2 + (r.y - box.y) * zy];
      }
      return seen[key];
    };
    const curves = [];
    pre.querySelectorAll(":scope > svg.connection").forEach((svg) => {
      const [, into, from, output, input] = svg.classList;
      const [sx, sy] = centre(from.slice("node_out_".length), output);
      const [ex, ey] = centre(into.slice("node_in_".length), input);
      curves.push([svg.firstElementChild, editor.createCurvature(sx, sy, ex, ey, editor.curvature, "openclose")]);
    });
    curves.forEach(([path, d]) => path.setAttributeNS(null, "d", d));
  }

  // The first picture shows the whole flow: zoom out (not below 80%; drag the background to pan) until it fits.
  function fit(pos) {
    state.fitted = true;
    const xs = Object.values(pos).map((p) => p[0] + state.offset.x);
    const ys = Object.values(pos).map((p) => p[1] + state.offset.y);
    const width = Math.max(...xs) + NODE_W + 60;
    const height = Math.max(...ys) + NODE_H + 60;
    const box = container.getBoundingClientRect();
    const zoom = Math.max(0.8, Math.min(1, box.width / width, box.height / height));
    editor.zoom = zoom;
    editor.canvas_x = Math.max(0, (box.width - width * zoom) / 2);
    editor.canvas_y = 0;
    editor.precanvas.style.transform = `translate(${editor.canvas_x}px, ${editor.canvas_y}px) scale(${zoom})`;
    editor.precanvas.style.transformOrigin = "0 0";
  }

  // Port labels, and edge styles: a fall-through (the next line of the text) is dashed, a path of
  // the simulated lead is highlighted.
  function decorate() {
    const taken = new Set((state.path ? state.path.edges : []).map(([a, b]) => `${a}>${b}`));
    state.model.nodes.forEach((n) => {
      const id = state.ids[n.name];
      n.ports.forEach((p, i) => {
        const dot = container.querySelector(`#node-${id} .outputs .output_${i + 1}`);
        if (dot) {
          dot.dataset.label = p.label;
          dot.title = (p.title || p.label || "next step") + (p.target ? ` → ${p.target}` : " → leaves the flow");
          if (!p.target) dot.classList.add("open-end");
        }
        const edge = container.querySelector(`.connection.node_out_node-${id}.output_${i + 1}`);
        if (edge) {
          if (!p.explicit) edge.classList.add("implicit");
          if (p.target && taken.has(`${n.name}>${p.target}`)) edge.classList.add("taken");
        }
      });
    });
  }

  // ------------------------------------------------------------------ talking to the server

  function setModel(model, options) {
    const opts = options || {};
    state.model = model;
    state.revision = model.revision;
    document.getElementById("flow-title").textContent = model.title;
    const status = document.getElementById("flow-status");
    if (model.published.version === null) {
      status.textContent = "draft, never published";
      status.className = "chip draft";
    } else if (model.published.current) {
      status.textContent = `published v${model.published.version}`;
      status.className = "chip live";
    } else {
      status.textContent = `v${model.published.version} published · draft changed`;
      status.className = "chip draft";
    }
    const checks = document.getElementById("flow-checks");
    checks.innerHTML = model.errors
      ? `<span class="chip error">${model.errors} error${model.errors === 1 ? "" : "s"}</span>`
      : model.warnings
      ? `<span class="chip warning">${model.warnings} warning${model.warnings === 1 ? "" : "s"}</span>`
      : `<span class="chip ok">no problems</span>`;
    const undo = document.getElementById("undo");
    const redo = document.getElementById("redo");
    undo.disabled = !model.undo;
    redo.disabled = !model.redo;
    undo.title = model.undo ? `Undo: ${model.undo}` : "Nothing to undo";
    redo.title = model.redo ? `Redo: ${model.redo}` : "Nothing to redo";
    if (state.selected && !model.nodes.some((n) => n.name === state.selected)) select(null);
    render();
    problems();
    if (!opts.keepText) showText();
    if (!opts.keepPanel && state.selected) loadPanel(state.selected);
    refreshOutline();
    buttons();
  }

  function problems() {
    const box = document.getElementById("problems");
    const list = state.model.diagnostics;
    if (!list.length) {
      box.innerHTML = "";
      return;
    }
    box.innerHTML =
      `<h2 class="sr-only">Problems of the flow</h2><ul class="diagnostics">` +
      list
        .map(
          (d) =>
            `<li class="${d.severity}"><strong>${escapeHtml(d.code)}</strong> line ${d.line}: ${escapeHtml(d.message)}${
              d.hint ? ` <span class="muted">— ${escapeHtml(d.hint)}</span>` : ""
            }</li>`
        )
        .join("") +
      `</ul>`;
  }

  async function load() {
    const answer = await window.fb.send("GET", api);
    if (!answer.ok) {
      say(answer.data.error || "The flow could not be loaded.", "error");
      return;
    }
    setModel(answer.data);
  }

  async function loadMetrics() {
    const answer = await window.fb.send("GET", `${api}/metrics`);
    if (answer.ok) {
      state.metrics = answer.data;
      if (state.model) render();
    }
  }

  // Send a change; on success the new model replaces the old, on 409 the current one does.
  async function change(path, body, done) {
    if (state.busy) {
      say("Still saving the previous change; try again in a moment.", "error");
      return null;
    }
    state.busy = true;
    try {
      const answer = await window.fb.send("POST", `${api}${path}`, { revision: state.revision, ...body });
      if (answer.status === 409 && answer.data.model) {
        conflict.textContent = answer.data.error;
        conflict.hidden = false;
        setModel(answer.data.model);
        return null;
      }
      if (!answer.ok) {
        say(answer.data.error || `The change was refused (${answer.status}).`, "error");
        render();
        return null;
      }
      conflict.hidden = true;
      setModel(answer.data, { keepPanel: false });
      if (done) done(answer);
      return answer;
    } finally {
      state.busy = false;
    }
  }

  function ops(list) {
    return change("/ops", { ops: list.map((op) => ({ flow, ...op })) });
  }

  // ------------------------------------------------------------------ canvas gestures

  function portOf(id, outputClass) {
    const name = state.names[id];
    const node = state.model.nodes.find((n) => n.name === name);
    const index = parseInt(String(outputClass).split("_")[1], 10) - 1;
    return node ? { node, port: node.ports[index] } : null;
  }

  editor.on("connectionCreated", (c) => {
    if (state.rendering) return;
    if (state.names[c.output_id] === START) {
      say("A flow starts at its first step in the text. Move a step to the top in the text to change it.", "error");
      render();
      return;
    }
    const found = portOf(c.output_id, c.output_class);
    const target = state.names[c.input_id];
    if (!found || !found.port || !target || target === START) {
      render();
      return;
    }
    ops([{ op: "connect", step: found.node.name, port: found.port.id === "next" ? null : found.port.id, target }]);
  });

  editor.on("connectionRemoved", (c) => {
    if (state.rendering) return;
    const found = portOf(c.output_id, c.output_class);
    if (!found || !found.port) {
      render();
      return;
    }
    const { node, port } = found;
    if (port.required) {
      say(`“${port.label}” of ${node.name} must lead somewhere: connect it to another step instead.`, "error");
      render();
      return;
    }
    if (!port.explicit) {
      say(`${node.name} continues to the next step of the text. To stop there, connect it to an End step.`, "error");
      render();
      return;
    }
    ops([{ op: "connect", step: node.name, port: port.id === "next" ? null : port.id, target: null }]);
  });

  editor.on("nodeRemoved", (id) => {
    if (state.rendering) return;
    const name = state.names[id];
    if (!name || name === START) {
      render();
      return;
    }
    if (state.selected === name) select(null);
    ops([{ op: "delete_step", step: name }]);
  });

  editor.on("nodeMoved", (id) => {
    if (state.rendering) return;
    const name = state.names[id];
    if (!name || name === START) return;
    const node = editor.getNodeFromId(id);
    const x = Math.round(node.pos_x - state.offset.x);
    const y = Math.round(node.pos_y - state.offset.y);
    const before = state.model.nodes.find((n) => n.name === name);
    if (before && before.position && before.position[0] === x && before.position[1] === y) return;
    ops([{ op: "move_step", step: name, x, y }]);
  });

  editor.on("nodeSelected", (id) => {
    const name = state.names[id];
    select(name && name !== START ? name : null);
  });
  editor.on("nodeUnselected", () => select(null));

  function select(name) {
    state.selected = name;
    container.querySelectorAll(".drawflow-node.chosen").forEach((el) => el.classList.remove("chosen"));
    if (name && state.ids[name] !== undefined) {
      const el = container.querySelector(`#node-${state.ids[name]}`);
      if (el) el.classList.add("chosen");
      loadPanel(name);
    }
    buttons();
  }

  function loadPanel(name) {
    htmx.ajax("GET", `/flows/${encodeURIComponent(flow)}/steps/${encodeURIComponent(name)}/panel`, {
      target: "#panel",
      swap: "innerHTML",
    });
  }

  function buttons() {
    document.getElementById("copy").disabled = !state.selected;
    document.getElementById("delete").disabled = !state.selected;
    document.getElementById("paste").disabled = !clipboard();
  }

  // ------------------------------------------------------------------ palette

  function canvasPoint(clientX, clientY) {
    const rect = editor.precanvas.getBoundingClientRect();
    return {
      x: Math.round((clientX - rect.x) / editor.zoom - state.offset.x),
      y: Math.round((clientY - rect.y) / editor.zoom - state.offset.y),
    };
  }

  function belowEverything() {
    const nodes = state.model.nodes;
    const pos = positions(state.model);
    if (!nodes.length) return { x: 0, y: 0 };
    const last = nodes[nodes.length - 1].name;
    const lowest = Math.max(...nodes.map((n) => pos[n.name][1]));
    return { x: pos[last][0], y: lowest + NODE_H + 60 };
  }

  function addStep(kind, point) {
    const at = point || belowEverything();
    return change("/add", { kind, x: at.x, y: at.y }, (answer) => {
      const name = answer.headers.get("x-added-step");
      if (name) {
        select(name);
        say(`Added ${name}. Set its properties on the right, then connect it.`);
      }
    });
  }

  document.querySelectorAll(".palette-item").forEach((item) => {
    item.addEventListener("dragstart", (e) => {
      e.dataTransfer.setData("application/x-flowbuilder-kind", item.dataset.kind);
      e.dataTransfer.setData("text/plain", item.dataset.kind);
      e.dataTransfer.effectAllowed = "copy";
    });
    item.addEventListener("click", () => addStep(item.dataset.kind, null));
  });
  container.addEventListener("dragover", (e) => {
    e.preventDefault();
    e.dataTransfer.dropEffect = "copy";
  });
  container.addEventListener("drop", (e) => {
    e.preventDefault();
    const kind = e.dataTransfer.getData("application/x-flowbuilder-kind") || e.dataTransfer.getData("text/plain");
    if (!kind) return;
    const p = canvasPoint(e.clientX, e.clientY);
    addStep(kind, { x: p.x - NODE_W / 2, y: p.y - 20 });
  });

  // ------------------------------------------------------------------ toolbar

  function clipboard() {
    try {
      return JSON.parse(window.localStorage.getItem("flowbuilder.clipboard") || "null");
    } catch (e) {
      return null;
    }
  }

  function copy() {
    const node = state.model.nodes.find((n) => n.name === state.selected);
    if (!node) return;
    window.localStorage.setItem("flowbuilder.clipboard", JSON.stringify([{ name: node.name, action: node.action }]));
    buttons();
    say(`Copied ${node.name}.`);
  }

  function paste() {
    const steps = clipboard();
    if (!steps) return;
    const pos = positions(state.model);
    const from = state.selected && pos[state.selected] ? { x: pos[state.selected][0] + 40, y: pos[state.selected][1] + 40 } : belowEverything();
    change("/paste", { steps, x: from.x, y: from.y }, (answer) => {
      const names = (answer.headers.get("x-added-step") || "").split(",").filter(Boolean);
      if (names.length) {
        select(names[0]);
        say(`Pasted ${names.join(", ")}.`);
      }
    });
  }

  function removeSelected() {
    if (!state.selected) return;
    const name = state.selected;
    select(null);
    ops([{ op: "delete_step", step: name }]);
  }

  function arrange() {
    const auto = autoLayout(state.model);
    const moves = state.model.nodes.map((n) => ({ op: "move_step", step: n.name, x: auto[n.name][0], y: auto[n.name][1] }));
    if (moves.length) ops(moves).then((a) => a && say("Arranged: the positions are saved in the layout block of the text."));
  }

  document.getElementById("undo").addEventListener("click", () => change("/undo", {}));
  document.getElementById("redo").addEventListener("click", () => change("/redo", {}));
  document.getElementById("copy").addEventListener("click", copy);
  document.getElementById("paste").addEventListener("click", paste);
  document.getElementById("delete").addEventListener("click", removeSelected);
  document.getElementById("arrange").addEventListener("click", arrange);
  const metricsButton = document.getElementById("toggle-metrics");
  metricsButton.addEventListener("click", () => {
    state.showMetrics = !state.showMetrics;
    metricsButton.setAttribute("aria-pressed", String(state.showMetrics));
    render();
  });

  document.addEventListener("keydown", (e) => {
    const t = e.target;
    const typing = t && (t.closest("input, textarea, select, .CodeMirror, dialog, [contenteditable]") !== null);
    if (typing) return;
    const mod = e.ctrlKey || e.metaKey;
    if (mod && e.key.toLowerCase() === "z" && !e.shiftKey) {
      e.preventDefault();
      if (!document.getElementById("undo").disabled) change("/undo", {});
    } else if (mod && (e.key.toLowerCase() === "y" || (e.key.toLowerCase() === "z" && e.shiftKey))) {
      e.preventDefault();
      if (!document.getElementById("redo").disabled) change("/redo", {});
    } else if (mod && e.key.toLowerCase() === "c" && state.selected) {
      e.preventDefault();
      copy();
    } else if (mod && e.key.toLowerCase() === "v") {
      e.preventDefault();
      paste();
    }
  });

  // ------------------------------------------------------------------ text pane

  const cm = CodeMirror.fromTextArea(document.getElementById("flow-text"), {
    mode: "flow",
    lineNumbers: true,
    lineWrapping: false,
    indentUnit: 2,
    tabSize: 2,
    gutters: ["CodeMirror-lint-markers", "CodeMirror-linenumbers"],
    lint: { getAnnotations: annotations, lintOnChange: false },
    screenReaderLabel: "The .flow text of this file",
    inputStyle: "contenteditable",
    extraKeys: { Tab: false, "Shift-Tab": false },
  });
  const textState = document.getElementById("text-state");

  function annotations() {
    const list = state.syntax.length ? state.syntax : state.model ? state.model.file_diagnostics : [];
    return list.map((d) => ({
      from: CodeMirror.Pos(d.line - 1, Math.max(d.col - 1, 0)),
      to: CodeMirror.Pos(d.end_line - 1, Math.max(d.end_col - 1, d.col)),
      message: `${d.code} ${d.message}${d.hint ? " — " + d.hint : ""}`,
      severity: d.severity === "error" ? "error" : "warning",
    }));
  }

  function showText() {
    if (state.textDirty) return;
    if (cm.getValue() !== state.model.text) {
      const scroll = cm.getScrollInfo();
      const cursor = cm.getCursor();
      cm.setValue(state.model.text);
      cm.setCursor(cursor);
      cm.scrollTo(scroll.left, scroll.top);
    }
    state.syntax = [];
    cm.performLint();
    textState.textContent = "saved";
  }

  cm.on("change", (_cm, event) => {
    if (event.origin === "setValue") return;
    state.textDirty = true;
    textState.textContent = "editing…";
    clearTimeout(state.textTimer);
    state.textTimer = setTimeout(saveText, 800);
  });
  cm.on("blur", () => {
    if (state.textDirty) {
      clearTimeout(state.textTimer);
      saveText();
    }
  });

  async function saveText() {
    if (state.busy) {
      state.textTimer = setTimeout(saveText, 400);
      return;
    }
    const text = cm.getValue();
    state.busy = true;
    let answer;
    try {
      answer = await window.fb.send("POST", `${api}/text`, { revision: state.revision, text });
    } finally {
      state.busy = false;
    }
    if (cm.getValue() !== text) return; // typed on meanwhile: the next save carries it
    if (answer.status === 409 && answer.data.model) {
      state.textDirty = false;
      conflict.textContent = answer.data.error + " Your unsaved text edit was not applied.";
      conflict.hidden = false;
      setModel(answer.data.model);
      return;
    }
    if (!answer.ok) {
      state.syntax = answer.data.diagnostics || [];
      cm.performLint();
      const first = state.syntax[0];
      textState.textContent = first ? `not saved: line ${first.line}: ${first.message}` : answer.data.error;
      return;
    }
    state.textDirty = false;
    state.syntax = [];
    setModel(answer.data, { keepText: true });
    cm.performLint();
    textState.textContent = "saved";
  }

  // ------------------------------------------------------------------ outline, panel and events

  const tabs = [document.getElementById("tab-canvas"), document.getElementById("tab-outline")];
  const views = [document.getElementById("canvas-view"), document.getElementById("outline-view")];

  function showTab(index) {
    tabs.forEach((tab, i) => {
      tab.setAttribute("aria-selected", String(i === index));
      tab.tabIndex = i === index ? 0 : -1;
      views[i].hidden = i !== index;
    });
    if (index === 1) htmx.trigger("#outline-view", "load-outline");
    // A change made in the outline redraws the canvas while it is hidden, where no port has a
    // position and every edge collapses to a point: draw them again now that they can be placed.
    if (index === 0 && state.model) drawEdges();
  }
  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => showTab(i));
    tab.addEventListener("keydown", (e) => {
      if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
        const next = (i + (e.key === "ArrowRight" ? 1 : tabs.length - 1)) % tabs.length;
        showTab(next);
        tabs[next].focus();
      }
    });
  });

  function refreshOutline() {
    if (!views[1].hidden) htmx.trigger("#outline-view", "load-outline");
  }

  document.addEventListener("click", (e) => {
    const button = e.target.closest(".edit-props");
    if (button) {
      select(button.dataset.step);
      document.getElementById("panel").focus();
    }
  });

  // Forms of the panel and the outline carry the revision the canvas knows.
  document.addEventListener("htmx:configRequest", (e) => {
    if ("revision" in e.detail.parameters && state.revision) e.detail.parameters.revision = state.revision;
  });

  // A change made by a panel, the outline or publishing: reload the model.
  document.addEventListener("flowChanged", async (e) => {
    const from = e.target && e.target.closest ? e.target.closest("#panel") : null;
    const answer = await window.fb.send("GET", api);
    if (answer.ok) {
      if (from) {
        const form = document.querySelector("#panel form.props");
        if (form && form.dataset.step !== state.selected) state.selected = form.dataset.step;
      }
      setModel(answer.data, { keepPanel: true });
      if (!document.getElementById("outline-view").hidden) refreshOutline();
    }
  });

  // ------------------------------------------------------------------ simulate

  const simulate = document.getElementById("simulate");
  const leadSearch = document.getElementById("lead-search");
  const leadPick = document.getElementById("lead-pick");
  const simulateError = document.getElementById("simulate-error");
  let searchTimer = null;

  document.getElementById("open-simulate").addEventListener("click", () => {
    simulateError.hidden = true;
    simulate.showModal();
    findLeads();
  });
  leadSearch.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(findLeads, 250);
    simulate.querySelector('input[value="lead"]').checked = true;
  });
  leadPick.addEventListener("change", () => (simulate.querySelector('input[value="lead"]').checked = true));

  async function findLeads() {
    const answer = await window.fb.send("GET", `/api/leads?q=${encodeURIComponent(leadSearch.value)}`);
    if (!answer.ok) return;
    leadPick.innerHTML = answer.data
      .map((l) => `<option value="${l.id}">${escapeHtml(l.email)}${l.name ? " — " + escapeHtml(l.name) : ""}</option>`)
      .join("");
  }

  document.getElementById("run-simulation").addEventListener("click", async () => {
    const who = simulate.querySelector('input[name="who"]:checked').value;
    const value = who === "lead" ? leadPick.value : document.getElementById("fixture").value;
    if (!value) {
      simulateError.textContent = who === "lead" ? "Pick a lead first." : "This flow has no test cases; pick a lead.";
      simulateError.hidden = false;
      return;
    }
    const answer = await window.fb.send("GET", `${api}/path?${who}=${encodeURIComponent(value)}`);
    if (!answer.ok) {
      simulateError.textContent = answer.data.error;
      simulateError.hidden = false;
      return;
    }
    simulate.close();
    showPath(answer.data);
  });

  function showPath(path) {
    const order = {};
    let n = 0;
    path.visits.forEach((v) => {
      if (v.step && !(v.step in order)) order[v.step] = { n: ++n, title: `${v.at.replace("T", " ").slice(0, 16)} UTC: ${v.what} — ${v.reason}` };
    });
    state.path = { order, edges: path.edges };
    render();
    const view = document.getElementById("path-view");
    document.getElementById("path-title").textContent = `Simulated path of ${path.who}`;
    const list = document.getElementById("path-list");
    list.innerHTML =
      path.visits
        .map(
          (v) =>
            `<li><time>${escapeHtml(v.at.replace("T", " ").slice(0, 16))}</time> <code>${escapeHtml(v.step || flow)}</code> <strong>${escapeHtml(
              v.what
            )}</strong> ${escapeHtml(v.reason)}</li>`
        )
        .join("") || "<li>The lead never entered this flow in the simulated days.</li>";
    if (path.problems && path.problems.length) {
      list.innerHTML += path.problems.map((p) => `<li class="error">Expectation not met: ${escapeHtml(p)}</li>`).join("");
    }
    view.hidden = false;
  }

  document.getElementById("clear-path").addEventListener("click", () => {
    state.path = null;
    document.getElementById("path-view").hidden = true;
    render();
  });

  // ------------------------------------------------------------------ publish

  const publish = document.getElementById("publish");
  document.getElementById("open-publish").addEventListener("click", () => {
    document.getElementById("publish-body").innerHTML = '<p class="muted">Working out what publishing would change…</p>';
    publish.showModal();
    htmx.trigger("#publish-body", "load-preview");
  });

  // ------------------------------------------------------------------ start

  // The step metrics are asked for with the model, not after it: when they come first (they are
  // quick to count) the canvas is drawn once, with them, instead of a second time when they come.
  loadMetrics();
  load();
})();
