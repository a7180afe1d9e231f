from __future__ import annotations

import json
from pathlib import Path

import pytest

import dsl
from dsl import ir
from dsl.compile import compile_paths, compile_text

ROOT = Path(__file__).resolve().parents[2]

HEADER = """\
template welcome_email "Welcome" {
  subject "Welcome"
}
list vip "VIP"
segment engaged where count(open, within=30d) >= 2
stages {
  stage sql "Sales-qualified" when count(click) >= 3
  stage mql
}
settings {
  click_threshold = 3
}
"""


def codes(text: str) -> list[tuple[str, int, int]]:
    return [(d.code, d.line, d.col) for d in compile_text(HEADER + text, "t.flow").diagnostics]


def line(n: int) -> int:
    return HEADER.count("\n") + n


def test_a_flow_compiles_to_steps_with_explicit_edges() -> None:
    ws = dsl.loads(
        HEADER
        + 'flow f "F" {\n  trigger event signed_up\n  a: send welcome_email\n  b: wait 3d\n  c: end\n}\n'
    )
    steps = ws.flows["f"].steps
    assert ws.flows["f"].start == "a"
    assert [steps["a"].next, steps["b"].next] == ["b", "c"]  # type: ignore[union-attr]
    assert isinstance(steps["b"], ir.Wait) and steps["b"].seconds == 3 * 86400


def test_an_explicit_edge_overrides_fall_through() -> None:
    ws = dsl.loads(HEADER + 'flow f "F" {\n  a: send welcome_email -> c\n  b: end\n  c: end\n}\n')
    assert ws.flows["f"].steps["a"].next == "c"  # type: ignore[union-attr]


def test_bare_names_in_conditions_resolve_to_steps_lists_and_events() -> None:
    ws = dsl.loads(
        HEADER
        + 'flow f "F" {\n  a: send welcome_email\n  b: branch {\n'
        + "    if opened(a) and in_list(vip) and count(click) > 1 -> c\n    else -> c\n  }\n  c: end\n}\n"
    )
    step = ws.flows["f"].steps["b"]
    assert isinstance(step, ir.Branch)
    operands = step.arms[0].condition.operands  # type: ignore[union-attr]
    kinds = [o.args[0].kind if isinstance(o, ir.Call) else o.left.args[0].kind for o in operands]  # type: ignore[union-attr]
    assert kinds == ["step", "list", "event"]


def test_an_undefined_step_is_reported_where_it_is_named_with_a_suggestion() -> None:
    result = compile_text(
        HEADER + 'flow f "F" {\n  a: send welcome_email -> gide\n  guide: end\n}\n', "t.flow"
    )
    [d] = result.diagnostics
    assert (d.code, d.line) == ("FB200", line(2))
    assert "flow `f` has no step `gide`" in d.message
    assert d.hint == "did you mean `guide`?"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("  a: send nope\n", "FB203"),
        ("  a: add to list nope\n", "FB202"),
        ("  a: branch {\n    if in_segment(nope) -> b\n    else -> b\n  }\n  b: end\n", "FB201"),
        ('  a: update lead.stage = "nope"\n', "FB204"),
        ("  trigger form nope\n  a: end\n", "FB205"),
        ("  a: move to flow nope\n", "FB206"),
        (
            "  a: branch {\n    if count(click) > settings.nope -> b\n    else -> b\n  }\n  b: end\n",
            "FB207",
        ),
        ("  a: branch {\n    if nope(1) -> b\n    else -> b\n  }\n  b: end\n", "FB208"),
        ("  a: branch {\n    if count() > 1 -> b\n    else -> b\n  }\n  b: end\n", "FB209"),
        ("  a: end\n  a: end\n", "FB210"),
        ("  a: branch {\n    if count(click) -> b\n    else -> b\n  }\n  b: end\n", "FB211"),
        ("  a: wait until 25:00\n", "FB212"),
        ('  timezone "Asia/Seol"\n  a: end\n', "FB213"),
        ("  a: split {\n    50% -> b\n    40% -> b\n  }\n  b: end\n", "FB214"),
        ("  entry once\n  entry always\n  a: end\n", "FB215"),
        ("  trigger event x\n", "FB216"),
        ("  a: end\n  layout {\n    ghost: 1, 2\n  }\n", "FB217"),
    ],
)
def test_each_semantic_mistake_has_its_own_code(body: str, code: str) -> None:
    found = {c for c, _, _ in codes('flow f "F" {\n' + body + "}\n")}
    assert code in found, found


def test_a_wrong_type_names_both_types() -> None:
    result = compile_text(HEADER + 'segment s where lead.score > "high"\n', "t.flow")
    [d] = result.diagnostics
    assert d.code == "FB211"
    assert "number" in d.message and "text" in d.message


def test_the_unknown_timezone_gets_a_close_match() -> None:
    result = compile_text('flow f "F" {\n  timezone "Asia/Seol"\n  a: end\n}\n', "t.flow")
    [d] = result.diagnostics
    assert d.hint == "did you mean `Asia/Seoul`?"


def test_a_misspelt_builtin_event_is_caught_but_custom_events_are_fine() -> None:
    bad = compile_text("segment s where count(clik) > 1\n", "t.flow").diagnostics
    assert [d.code for d in bad] == ["FB208"]
    good = compile_text(
        'segment s where count(meeting_booked) > 1 and occurred("purchase")\n', "t.flow"
    )
    assert good.diagnostics == []


def test_event_paths_are_usable_only_where_an_event_is_in_scope() -> None:
    ok = compile_text(
        'flow f "F" {\n  trigger event signed_up where event.plan == "pro"\n  a: end\n}\n', "t.flow"
    )
    assert ok.diagnostics == []
    bad = compile_text('segment s where event.plan == "pro"\n', "t.flow")
    assert [d.code for d in bad.diagnostics] == ["FB208"]


def test_a_declaration_defined_in_two_files_names_the_first_location(tmp_path: Path) -> None:
    (tmp_path / "a.flow").write_text('list vip "VIP"\n')
    (tmp_path / "b.flow").write_text('\nlist vip "Very important"\n')
    result = compile_paths([tmp_path])
    [d] = result.diagnostics
    assert d.code == "FB210"
    assert d.path.endswith("b.flow") and d.line == 2
    assert "a.flow:1:6" in d.message


def test_declarations_resolve_across_the_files_of_a_folder(tmp_path: Path) -> None:
    (tmp_path / "templates.flow").write_text('template hello {\n  subject "Hi"\n}\n')
    (tmp_path / "welcome.flow").write_text(
        'flow welcome "W" {\n  trigger event signed_up\n  a: send hello\n  b: end\n}\n'
    )
    assert dsl.load(tmp_path).flows["welcome"].steps["a"].template == "hello"  # type: ignore[union-attr]


def test_comments_and_layout_never_change_the_ir_hash() -> None:
    plain = 'flow f "F" {\n  a: wait 1d\n  b: end\n}\n'
    decorated = '# intro\nflow f "F" {  # the flow\n  a: wait 1d  # pause\n\n  b: end\n  layout {\n    a: 10, 20\n  }\n}\n'
    first, second = dsl.loads(plain), dsl.loads(decorated)
    assert first.content_hash() == second.content_hash()
    assert first.flows["f"].content_hash() == second.flows["f"].content_hash()
    assert compile_text(decorated).layouts["f"].positions == {"a": (10, 20)}


def test_a_semantic_change_changes_the_hash() -> None:
    a = dsl.loads('flow f "F" {\n  a: wait 1d\n  b: end\n}\n')
    b = dsl.loads('flow f "F" {\n  a: wait 2d\n  b: end\n}\n')
    assert a.content_hash() != b.content_hash()


def test_loads_raises_with_every_error() -> None:
    with pytest.raises(dsl.FlowSemanticError) as info:
        dsl.loads('flow f "F" {\n  a: send x\n  b: add to list y\n}\n')
    assert [d.code for d in info.value.diagnostics] == ["FB203", "FB202"]


def test_loads_raises_a_syntax_error_for_broken_text() -> None:
    with pytest.raises(dsl.FlowSyntaxError):
        dsl.loads("flow {")


def test_dumps_gives_json_without_positions() -> None:
    ws = dsl.loads('flow f "F" {\n  a: end\n}\n')
    data = json.loads(dsl.dumps(ws))
    assert data["ir_version"] == ir.IR_VERSION
    assert "span" not in json.dumps(data)


def test_the_checked_in_ir_schema_is_current() -> None:
    checked_in = json.loads((ROOT / "docs" / "ir.schema.json").read_text())
    assert checked_in == ir.json_schema(), (
        "regenerate it: flowbuilder compile --schema > docs/ir.schema.json"
    )


def test_the_ir_round_trips_through_its_json() -> None:
    compiled = compile_paths([ROOT / "tests" / "fixtures" / "valid"])
    assert compiled.workspace is not None
    again = ir.Workspace.model_validate_json(compiled.workspace.model_dump_json())
    assert again.content_hash() == compiled.workspace.content_hash()


@pytest.mark.parametrize(
    ("calendar", "message"),
    [
        ("XX", "no public-holiday calendar for country `XX`"),
        ("US-ZZ", "`US` has no subdivision `ZZ`"),
        ("korea", "is not a country code for holidays"),
    ],
)
def test_business_days_need_a_holiday_calendar_that_exists(calendar: str, message: str) -> None:
    text = f'flow f "F" {{\n  trigger event x\n  business days "{calendar}"\n  a: end\n}}\n'
    [problem] = compile_text(text, "f.flow").diagnostics
    assert problem.code == "FB212" and message in problem.message
    ok = compile_text(text.replace(calendar, "US-CA"), "f.flow")
    assert ok.ok
