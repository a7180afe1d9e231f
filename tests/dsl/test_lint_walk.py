"""One walk of a flow's graph serves every rule family: reachable steps, their order, the loops."""

from __future__ import annotations

from dsl import ir
from dsl.compile import compile_text
from dsl.lint import lint
from dsl.lint.graph import walk
from tests.dsl.lark_reference import corpus


def flows() -> list[ir.Flow]:
    out = []
    for _, text in corpus():
        ws = compile_text(text).workspace
        out += list(ws.flows.values()) if ws is not None else []
    return out


def reachable_by_search(flow: ir.Flow) -> set[str]:
    seen: set[str] = set()
    stack = [flow.start] if flow.start else []
    while stack:
        name = stack.pop()
        if name in seen or name not in flow.steps:
            continue
        seen.add(name)
        stack.extend(ir.successors(flow.steps[name]))
    return seen


def has_cycle(flow: ir.Flow, among: set[str]) -> bool:
    """Whether some step of `among` leads back to itself (removing steps with no way out)."""
    edges = {n: {t for t in ir.successors(flow.steps[n]) if t in among} for n in among}
    while True:
        sinks = {n for n, targets in edges.items() if not targets}
        if not sinks:
            return bool(edges)
        edges = {n: targets - sinks for n, targets in edges.items() if n not in sinks}


def test_the_walk_reaches_what_a_search_reaches_and_finds_every_loop() -> None:
    looped = 0
    for flow in flows():
        graph = walk(flow)
        assert graph.reachable == reachable_by_search(flow)
        assert graph.has_loop == has_cycle(flow, graph.reachable), flow.name
        looped += graph.has_loop
    assert looped >= 2


def test_the_order_puts_every_kept_edge_forward() -> None:
    for flow in flows():
        graph = walk(flow)
        position = {name: i for i, name in enumerate(graph.order)}
        for name, targets in graph.forward.items():
            assert all(position[name] < position[t] for t in targets)


def test_a_loop_without_wait_is_still_found() -> None:
    text = (
        'flow f "F" {\n  trigger event signed_up\n  a: update lead.score += 1\n'
        "  b: branch {\n    if lead.score > 9 -> c\n    else -> a\n  }\n  c: end\n}\n"
    )
    compilation = compile_text(text, "l.flow")
    assert walk(compilation.workspace.flows["f"]).has_loop  # type: ignore[union-attr]
    assert [d.code for d in lint(compilation) if d.code == "FB305"] == ["FB305"]
