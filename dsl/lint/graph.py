"""Graph rules (FB3xx): the shape of a flow — reachability, ends, arms, timeouts, loops, triggers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from dsl import ir, rules
from dsl.diagnostics import Diagnostic, Span
from dsl.ir_text import expr_text

WAITS = (ir.Wait, ir.WaitBusinessDays, ir.WaitUntilTime, ir.WaitUntilDate, ir.WaitFor)


def _span(node: ir.Node) -> Span:
    return node.span or Span(1, 1, 1, 2)


@dataclass(frozen=True)
class FlowGraph:
    """One walk of a flow's steps, shared by the rule families (graph, safety).

    `successors` are each step's targets (`ir.successors`, undefined names included); the walk
    goes depth first from the first step, so `order` holds the reachable steps in topological
    order of the graph without its back edges, `forward` those edges (each loop cut once), and
    `has_loop` says whether a back edge was cut.
    """

    successors: dict[str, list[str]]
    order: list[str]
    forward: dict[str, list[str]]
    has_loop: bool

    @property
    def reachable(self) -> set[str]:
        return set(self.order)


def walk(flow: ir.Flow) -> FlowGraph:
    steps = flow.steps
    successors = {name: ir.successors(step) for name, step in steps.items()}
    forward: dict[str, list[str]] = {}
    post: list[str] = []
    state: dict[str, int] = {}  # 1 on the walk's stack, 2 done
    has_loop = False
    if flow.start is None or flow.start not in steps:
        return FlowGraph(successors, [], forward, False)
    stack: list[tuple[str, Iterator[str]]] = [(flow.start, iter(successors[flow.start]))]
    state[flow.start] = 1
    forward[flow.start] = []
    while stack:
        name, children = stack[-1]
        child = next(children, None)
        if child is None:
            stack.pop()
            state[name] = 2
            post.append(name)
        elif child in steps:
            seen = state.get(child)
            if seen == 1:
                has_loop = True
                continue
            forward[name].append(child)
            if seen is None:
                state[child] = 1
                forward[child] = []
                stack.append((child, iter(successors[child])))
    return FlowGraph(successors, post[::-1], forward, has_loop)


def reachable(flow: ir.Flow) -> set[str]:
    return walk(flow).reachable


# Step kinds compared by exact type: a model's `isinstance` goes through `ABCMeta`, and these
# checks run for every step. (Step models have no subclasses.)
_MANY_EXITS = frozenset({ir.End, ir.MoveToFlow, ir.Split, ir.Branch, ir.WaitFor})
_WAIT_TYPES: frozenset[type] = frozenset(WAITS)


def check(ws: ir.Workspace, flow: ir.Flow, graph: FlowGraph | None = None) -> Iterator[Diagnostic]:
    path = flow.path
    graph = graph or walk(flow)
    succ = graph.successors
    live = graph.reachable
    for step in flow.steps.values():
        kind = type(step)
        if step.name not in live:
            yield rules.make(
                "FB300",
                f"no path from the first step reaches `{step.name}`",
                path,
                _span(step),
                hint="connect a step to it or delete it",
            )
            continue
        if kind not in _MANY_EXITS and succ[step.name] == []:
            yield rules.make(
                "FB301",
                f"the path through `{step.name}` runs off the end of the flow",
                path,
                _span(step),
                hint="add an explicit `end` step after it",
            )
        if kind is ir.Branch:
            assert isinstance(step, ir.Branch)
            if not step.has_else:
                yield rules.make(
                    "FB302",
                    f"branch `{step.name}` has no `else` arm",
                    path,
                    _span(step),
                    hint="add `else -> <step>` so every lead has a path",
                )
            yield from _unreachable_arms(step, path)
        if kind is ir.WaitFor:
            assert isinstance(step, ir.WaitFor)
            if step.timeout_seconds is None:
                yield rules.make(
                    "FB304",
                    f"`{step.name}` waits for {expr_text(step.condition)} with no timeout",
                    path,
                    _span(step),
                    hint="add `up to 7d` and a `timeout ->` arm",
                )
        if (kind is ir.WaitFor or kind is ir.Branch) and None in _exits(step):  # type: ignore[arg-type]
            yield rules.make(
                "FB301",
                f"a path out of `{step.name}` runs off the end of the flow",
                path,
                _span(step),
                hint="add an explicit `end` step",
            )
    if graph.has_loop:
        yield from _loops_without_wait(flow, live, succ)
    if not flow.triggers and not any(
        isinstance(s, ir.MoveToFlow) and s.flow == flow.name
        for f in ws.flows.values()
        for s in f.steps.values()
    ):
        yield rules.make(
            "FB306",
            f"flow `{flow.name}` has no trigger and no flow moves leads into it",
            path,
            _span(flow),
            hint="add a `trigger` such as `trigger event signed_up`",
        )


def _exits(step: ir.WaitFor | ir.Branch) -> list[str | None]:
    if isinstance(step, ir.WaitFor):
        return [step.next] + ([step.timeout_next] if step.timeout_seconds is not None else [])
    return [step.otherwise]


def _threshold(cond: ir.Expr) -> tuple[str, str, float] | None:
    if isinstance(cond, ir.Compare) and cond.op in (">=", ">") and isinstance(cond.right, ir.Const):
        value = cond.right.value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return expr_text(cond.left), cond.op, float(value)
    return None


def _unreachable_arms(step: ir.Branch, path: str) -> Iterator[Diagnostic]:
    earlier: list[ir.Arm] = []
    for arm in step.arms:
        for before in earlier:
            why = None
            if isinstance(before.condition, ir.Const) and before.condition.value is True:
                why = "an earlier arm is always true"
            elif before.condition.model_dump() == arm.condition.model_dump():
                why = "an earlier arm has the same condition"
            else:
                a, b = _threshold(before.condition), _threshold(arm.condition)
                if a and b and a[0] == b[0] and a[1] == b[1] and b[2] >= a[2]:
                    why = f"`{expr_text(before.condition)}` already catches every lead with `{expr_text(arm.condition)}`"
            if why:
                yield rules.make(
                    "FB303",
                    f"this arm of `{step.name}` can never be taken: {why}",
                    path,
                    _span(arm),
                    hint="reorder the arms, most specific first",
                )
                break
        earlier.append(arm)


def _loops_without_wait(
    flow: ir.Flow, live: set[str], succ: dict[str, list[str]]
) -> Iterator[Diagnostic]:
    """Cycles whose steps are all instant (no wait): Tarjan's strongly connected components."""
    steps = flow.steps
    inner = {name: [t for t in targets if t in steps] for name, targets in succ.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    counter = 0
    found: list[list[str]] = []
    for root in sorted(live):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = []
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        work.append((root, iter(inner[root])))
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(inner[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                if low[node] < low[parent]:
                    low[parent] = low[node]
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1 or node in inner[node]:
                    found.append(component)
    if not found:
        return
    order = {name: i for i, name in enumerate(flow.steps)}
    for component in found:
        if not any(type(flow.steps[n]) in _WAIT_TYPES for n in component):
            first = min(component, key=order.__getitem__)
            names = ", ".join(f"`{n}`" for n in sorted(component, key=order.__getitem__))
            yield rules.make(
                "FB305",
                f"the loop through {names} has no wait, so a lead would cycle without end",
                flow.path,
                _span(flow.steps[first]),
                hint="add a wait step inside the loop",
            )
