"""The compiler's quick paths give what the general ones give: the same IR, the same diagnostics.

- the builder names a bare step (list, segment …) argument as a reference of that kind, where the
  checker used to turn an event reference into one;
- the checker keeps a node it has nothing to change instead of copying it;
- spans are made without the frozen dataclass's guarded `__setattr__`;
- `ir.successors` decides by exact type before it matches by class.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
from contextlib import nullcontext
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings

from dsl import ir
from dsl.build import Builder, _new_span
from dsl.check import replaced
from dsl.compile import _check, _merge
from dsl.diagnostics import Span
from dsl.parse import parse_tree
from tests.dsl.lark_reference import corpus
from tests.dsl.strategies import flow_texts


def checked(text: str, general: bool) -> tuple[str, list[str]]:
    """The checked IR's JSON and every diagnostic; `general`: with every bare name built as an
    event reference, as the builder did before it knew function signatures, for the checker to
    resolve."""
    parsed = parse_tree(text, "t.flow")
    assert parsed.tree is not None, parsed.diagnostics
    with mock.patch.object(Builder, "argument", _as_event) if general else nullcontext():
        decls = Builder("t.flow").build(parsed.tree)
    ws, layouts, problems = _merge([decls])
    ws, found = _check(ws, layouts)
    return ws.model_dump_json(), [repr(d) for d in [*decls.diagnostics, *problems, *found]]


def _as_event(builder: Builder, node: Any, kind: str | None) -> ir.Expr:
    return builder.expr(node)


MISNAMED = """\
list vip "VIP"
segment engaged where opened(welcome) and in_list(vipp)
flow f "F" {
  trigger event signed_up
  hello: branch {
    if opened(helo) and clicked(hello, link="x") -> done
    else if count(clik, within=3d) > 1 and in_list(vip) -> done
    else -> done
  }
  done: end
}
"""


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flow_texts())
def test_references_named_by_the_builder_check_as_the_checker_would_name_them(text: str) -> None:
    assert checked(text, general=False) == checked(text, general=True)


PARSED = [(name, text) for name, text in corpus() if parse_tree(text).tree is not None]


@pytest.mark.parametrize(
    ("name", "text"), [*PARSED, ("misnamed", MISNAMED)], ids=[*(n for n, _ in PARSED), "misnamed"]
)
def test_every_project_file_checks_the_same_either_way(name: str, text: str) -> None:
    assert checked(text, general=False) == checked(text, general=True)


def test_misnamed_references_are_reported_where_they_stand() -> None:
    _, diagnostics = checked(MISNAMED, general=False)
    spans = [(d.split("'")[1], d.split("span=Span(")[1].split(",")[:2]) for d in diagnostics]
    assert spans == [
        ("FB208", ["line=2", " col=30"]),  # a step named outside a flow
        ("FB202", ["line=2", " col=51"]),  # `vipp`
        ("FB200", ["line=6", " col=15"]),  # `helo`
        ("FB208", ["line=7", " col=19"]),  # `clik`
    ]


def test_a_node_with_nothing_to_change_is_kept_and_a_change_makes_a_copy() -> None:
    ref = ir.Ref(kind="step", name="a")
    call = ir.Call(function="opened", args=[ref], kwargs={})
    assert replaced(call, args=[ref], kwargs={}) is call
    other = ir.Ref(kind="step", name="b")
    changed = replaced(call, args=[other], kwargs={})
    assert changed is not call
    assert changed == call.model_copy(update={"args": [other], "kwargs": {}})
    assert replaced(call, args=[ref, ref]) == call.model_copy(update={"args": [ref, ref]})
    assert replaced(call, args=[ir.Ref(kind="step", name="a")]) is not call


def test_a_quickly_made_span_is_a_span() -> None:
    quick, plain = _new_span(3, 4, 3, 9), Span(3, 4, 3, 9)
    assert quick == plain and hash(quick) == hash(plain) and repr(quick) == repr(plain)
    assert quick < Span(3, 5, 3, 9) and dataclasses.asdict(quick) == dataclasses.asdict(plain)
    assert pickle.loads(pickle.dumps(quick)) == plain and copy.copy(quick) == plain
    with pytest.raises(dataclasses.FrozenInstanceError):
        quick.line = 1  # type: ignore[misc]


def successors_by_class(step: ir.Step) -> list[str]:
    """`ir.successors` as it reads without its exact-type shortcut."""
    match step:
        case ir.Branch():
            out = [arm.target for arm in step.arms]
            return out + ([step.otherwise] if step.otherwise else [])
        case ir.Split():
            return [p.target for p in step.paths]
        case ir.WaitFor():
            out = [step.next] if step.next else []
            return out + ([step.timeout_next] if step.timeout_next else [])
        case ir.MoveToFlow() | ir.End():
            return []
        case _:
            return [step.next] if step.next else []


def test_successors_by_exact_type_are_the_successors_by_class() -> None:
    kinds = set()
    for _, text in corpus():
        parsed = parse_tree(text)
        if parsed.tree is None:
            continue
        for flow in Builder("x").build(parsed.tree).flows:
            for step in flow.steps.values():
                kinds.add(type(step))
                assert ir.successors(step) == successors_by_class(step)
    assert len(kinds) >= 12
