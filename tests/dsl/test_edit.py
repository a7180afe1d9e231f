"""Semantic edits change only the statement concerned, keep every comment, and refuse what is wrong."""

from __future__ import annotations

import doctest
import hashlib
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lark import Token, Tree

import dsl.edit
import dsl.edit_ops
from dsl.diagnostics import FlowSyntaxError, StaleRevisionError
from dsl.edit import (
    AddArm,
    AddStep,
    Connect,
    DeleteStep,
    EditError,
    EditOp,
    MoveStep,
    RemoveArm,
    RenameStep,
    SetProperty,
    apply,
    apply_many,
    parse_op,
    revision,
)
from dsl.edit_doc import action_of, conditional_arms, exits
from dsl.parse import parse_tree
from tests.dsl.strategies import FRESH_NAMES, STEP_NAMES, flow_texts

FLOW = """\
# The welcome series.
flow welcome "Welcome" {
  trigger event signed_up
  exit when replied()   # stop on reply

  # First touch.
  hello: send welcome_email subject "Hi"   # the hook
  pause: wait 1d
  await: wait for clicked(hello) up to 7d {
    timeout -> nudge   # no click
  }
  check: branch {
    if clicked(hello, link="pricing") -> hot   # keen
    else if opened(hello) -> nudge
    else -> done
  }
  hot: update lead.score += 10 -> split_it
  split_it: split {
    50% -> guide
    40% -> nudge
    holdout 10%
  }
  guide: send guide_email -> done
  nudge: send nudge_email
  counted: branch {
    if count(click, step=guide) > 1 -> done
  }
  done: end "finished"   # the end

  layout {
    hello: 100, -20   # top left
  }
  migrate {
    old_hello -> hello
  }
}

flow other {
  hello: send welcome_email
  done: end
}
"""


def edit(op: EditOp, text: str = FLOW) -> str:
    return apply(text, op, revision(text)).text


def refusal(op: EditOp, text: str = FLOW) -> str:
    with pytest.raises(EditError) as caught:
        apply(text, op, revision(text))
    return caught.value.diagnostic.message


def changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    """The lines that differ once the common prefix and suffix (byte for byte) are set aside."""
    a, b = before.split("\n"), after.split("\n")
    start = 0
    while start < min(len(a), len(b)) and a[start] == b[start]:
        start += 1
    end = 0
    while end < min(len(a), len(b)) - start and a[-1 - end] == b[-1 - end]:
        end += 1
    return a[start : len(a) - end], b[start : len(b) - end]


def comments(text: str) -> list[str]:
    return [c.text for c in parse_tree(text).comments]


# ---------------------------------------------------------------------------- revisions


def test_the_revision_is_the_sha256_of_the_utf8_text() -> None:
    assert revision("flow é {}") == hashlib.sha256("flow é {}".encode()).hexdigest()


def test_an_edit_against_a_stale_revision_is_refused() -> None:
    old = revision(FLOW + "\n")
    with pytest.raises(StaleRevisionError) as caught:
        apply(FLOW, MoveStep(flow="welcome", step="hello", x=1, y=2), old)
    assert caught.value.expected == old
    assert caught.value.actual == revision(FLOW)
    assert "Reload" in str(caught.value)


def test_the_result_carries_the_revision_of_the_new_text() -> None:
    result = apply(FLOW, MoveStep(flow="welcome", step="hello", x=1, y=2), revision(FLOW))
    assert result.revision == revision(result.text)


def test_a_text_that_does_not_parse_cannot_be_edited() -> None:
    broken = "flow f {\n  a: wait soon\n}\n"
    with pytest.raises(FlowSyntaxError):
        apply(broken, DeleteStep(flow="f", step="a"), revision(broken))


# ---------------------------------------------------------------------------- what is edited


def test_an_unknown_step_is_named_with_the_steps_there_are() -> None:
    message = refusal(Connect(flow="welcome", step="gide", target="done"))
    assert message.startswith("flow 'welcome' has no step 'gide'; steps are: hello, pause, await")
    with pytest.raises(EditError) as caught:
        apply(FLOW, DeleteStep(flow="welcome", step="gide"), revision(FLOW))
    assert caught.value.diagnostic.hint == "did you mean 'guide'?"
    assert caught.value.diagnostic.code == "FB200"


def test_an_unknown_flow_is_named_with_the_flows_there_are() -> None:
    message = refusal(DeleteStep(flow="welcom", step="hello"))
    assert message == "there is no flow 'welcom'; flows are: welcome, other"


def test_an_edit_touches_only_the_flow_it_names() -> None:
    after = edit(RenameStep(flow="other", old="hello", new="greet"))
    assert changed_lines(FLOW, after) == (
        ["  hello: send welcome_email"],
        ["  greet: send welcome_email"],
    )


# ---------------------------------------------------------------------------- AddStep


def test_add_step_inserts_a_canonical_line_after_the_named_step() -> None:
    after = edit(AddStep(flow="welcome", name="remind", action="wait   2d ->  done", after="pause"))
    assert changed_lines(FLOW, after) == ([], ["  remind: wait 2d -> done"])
    assert after.index("remind") > after.index("pause: wait 1d")


def test_add_step_without_after_goes_before_the_first_step_and_its_comments() -> None:
    after = edit(AddStep(flow="welcome", name="intro", action="end"))
    assert "\n  intro: end\n  # First touch.\n  hello:" in after


def test_add_step_prints_a_block_action_in_canonical_form() -> None:
    action = "branch {\n if opened(hello) -> hot\n   else -> done\n}"
    after = edit(AddStep(flow="welcome", name="fork", action=action, after="hot"))
    assert changed_lines(FLOW, after)[1] == [
        "  fork: branch {",
        "    if opened(hello) -> hot",
        "    else -> done",
        "  }",
    ]


def test_add_step_to_a_flow_without_steps_goes_inside_its_braces() -> None:
    text = "flow f {\n  trigger event x\n}\n"
    assert edit(AddStep(flow="f", name="a", action="end"), text) == (
        "flow f {\n  trigger event x\n  a: end\n}\n"
    )
    assert edit(AddStep(flow="f", name="a", action="end"), "flow f {\n}\n") == (
        "flow f {\n  a: end\n}\n"
    )


def test_add_step_refuses_a_taken_name_a_reserved_word_and_a_bad_action() -> None:
    assert refusal(AddStep(flow="welcome", name="hello", action="end")) == (
        "flow 'welcome' already has a step 'hello'"
    )
    assert "reserved word" in refusal(AddStep(flow="welcome", name="wait", action="end"))
    assert "not a valid step name" in refusal(
        AddStep(flow="welcome", name="two words", action="end")
    )
    assert refusal(AddStep(flow="welcome", name="x", action="sned guide")).startswith(
        "the action 'sned guide' is not valid: expected"
    )
    assert "not one step" in refusal(AddStep(flow="welcome", name="x", action="end\n  y: end"))


# ---------------------------------------------------------------------------- Connect


def test_connect_sets_replaces_and_removes_the_single_exit() -> None:
    added = edit(Connect(flow="welcome", step="pause", target="check"))
    assert changed_lines(FLOW, added) == (["  pause: wait 1d"], ["  pause: wait 1d -> check"])
    replaced = edit(Connect(flow="welcome", step="hot", target="done"))
    assert changed_lines(FLOW, replaced)[1] == ["  hot: update lead.score += 10 -> done"]
    removed = edit(Connect(flow="welcome", step="guide", target=None))
    assert changed_lines(FLOW, removed)[1] == ["  guide: send guide_email"]


def test_connect_keeps_a_trailing_comment_after_the_new_edge() -> None:
    after = edit(Connect(flow="welcome", step="hello", target="check"))
    assert changed_lines(FLOW, after)[1] == [
        '  hello: send welcome_email subject "Hi" -> check   # the hook'
    ]


def test_connect_the_ports_of_a_wait_for() -> None:
    then = edit(Connect(flow="welcome", step="await", port="then", target="check"))
    assert changed_lines(FLOW, then) == ([], ["    then -> check"])
    timeout = edit(Connect(flow="welcome", step="await", port="timeout", target="done"))
    assert changed_lines(FLOW, timeout)[1] == ["    timeout -> done   # no click"]
    text = "flow f {\n  w: wait for opened() up to 3d\n  a: end\n}\n"
    assert edit(Connect(flow="f", step="w", port="timeout", target="a"), text) == (
        "flow f {\n  w: wait for opened() up to 3d {\n    timeout -> a\n  }\n  a: end\n}\n"
    )
    assert edit(Connect(flow="f", step="w", port="then", target="a"), text) == (
        "flow f {\n  w: wait for opened() up to 3d -> a\n  a: end\n}\n"
    )
    edged = "flow f {\n  w: wait for opened() up to 3d -> a\n  a: end\n}\n"
    assert edit(Connect(flow="f", step="w", port="timeout", target="w"), edged) == (
        "flow f {\n  w: wait for opened() up to 3d {\n    then -> a\n    timeout -> w\n  }\n"
        "  a: end\n}\n"
    )


def test_removing_the_last_arm_of_a_wait_for_removes_its_empty_block() -> None:
    text = "flow f {\n  w: wait for opened() up to 3d {\n    timeout -> a\n  }\n  a: end\n}\n"
    assert edit(Connect(flow="f", step="w", port="timeout", target=None), text) == (
        "flow f {\n  w: wait for opened() up to 3d\n  a: end\n}\n"
    )


def test_a_timeout_port_needs_a_timeout() -> None:
    text = "flow f {\n  w: wait for opened()\n  a: end\n}\n"
    assert "waits without a timeout" in refusal(
        Connect(flow="f", step="w", port="timeout", target="a"), text
    )
    assert edit(Connect(flow="f", step="w", target="a"), text) == (
        "flow f {\n  w: wait for opened() -> a\n  a: end\n}\n"
    )


def test_connect_the_arms_of_a_branch_and_the_paths_of_a_split() -> None:
    arm = edit(Connect(flow="welcome", step="check", port="arm:1", target="guide"))
    assert changed_lines(FLOW, arm)[1] == ["    else if opened(hello) -> guide"]
    otherwise = edit(Connect(flow="welcome", step="check", port="else", target="hot"))
    assert changed_lines(FLOW, otherwise)[1] == ["    else -> hot"]
    dropped = edit(Connect(flow="welcome", step="check", port="else", target=None))
    assert changed_lines(FLOW, dropped) == (["    else -> done"], [])
    added = edit(Connect(flow="welcome", step="counted", port="else", target="nudge"))
    assert changed_lines(FLOW, added) == ([], ["    else -> nudge"])
    path = edit(Connect(flow="welcome", step="split_it", port="path:1", target="done"))
    assert changed_lines(FLOW, path)[1] == ["    40% -> done"]


def test_connect_refuses_unknown_ports_missing_targets_and_required_arms_without_target() -> None:
    assert refusal(Connect(flow="welcome", step="check", target="done")) == (
        "step 'check' is a `branch`; connect one of its ports: arm:0, arm:1, else"
    )
    assert refusal(Connect(flow="welcome", step="check", port="arm:2", target="done")) == (
        "step 'check' is a `branch` and has no port 'arm:2'; its ports are: arm:0, arm:1, else"
    )
    assert "needs a target" in refusal(
        Connect(flow="welcome", step="split_it", port="path:0", target=None)
    )
    assert "has no exit" in refusal(Connect(flow="welcome", step="done", target="hello"))
    assert refusal(Connect(flow="welcome", step="hot", target="gone")).startswith(
        "flow 'welcome' has no step 'gone'"
    )


# ---------------------------------------------------------------------------- SetProperty


@pytest.mark.parametrize(
    ("step", "key", "value", "before", "after"),
    [
        ("hello", "template", "guide_email", "send welcome_email", "send guide_email"),
        ("hello", "subject", '"Hello"', 'subject "Hi"', 'subject "Hello"'),
        ("hello", "preheader", '"Pre"', 'subject "Hi"', 'subject "Hi" preheader "Pre"'),
        ("hello", "from", '"a@b.c"', 'subject "Hi"', 'subject "Hi" from "a@b.c"'),
        ("hello", "subject", "", ' subject "Hi"', ""),
        ("pause", "duration", "3d", "wait 1d", "wait 3d"),
        (
            "await",
            "condition",
            "opened(hello)  or clicked()",
            "for clicked(hello) up",
            "for opened(hello) or clicked() up",
        ),
        ("await", "timeout", "12h", "up to 7d", "up to 12h"),
        ("check", "arm:1.condition", "(opened())", "else if opened(hello)", "else if opened()"),
        ("split_it", "path:0.percent", "60%", "50% -> guide", "60% -> guide"),
        ("split_it", "holdout", "0%", "holdout 10%", "holdout 0%"),
        ("hot", "value", "lead.score*2", "+= 10", "+= lead.score * 2"),
        ("done", "reason", '"over"', 'end "finished"', 'end "over"'),
        ("done", "reason", "", ' "finished"', ""),
    ],
)
def test_set_property_rewrites_only_that_property(
    step: str, key: str, value: str, before: str, after: str
) -> None:
    result = edit(SetProperty(flow="welcome", step=step, key=key, value=value))
    old, new = changed_lines(FLOW, result)
    assert len(old) == len(new) == 1
    assert old[0].replace(before, after, 1) == new[0]


def test_set_property_of_the_other_actions() -> None:
    text = (
        "flow f {\n  a: add to list x\n  b: remove from list x\n  c: move to flow g\n"
        '  d: webhook "u"\n  e: goal g1\n  f: wait 3 business days\n  g: wait until 09:00\n'
        "  h: wait until lead.renewal - 7d\n  i: end\n}\n"
    )
    ops = [
        SetProperty(flow="f", step="a", key="list", value="y"),
        SetProperty(flow="f", step="b", key="list", value="y"),
        SetProperty(flow="f", step="c", key="flow", value="other"),
        SetProperty(flow="f", step="d", key="url", value='"v"'),
        SetProperty(flow="f", step="e", key="goal", value="g2"),
        SetProperty(flow="f", step="f", key="days", value="5"),
        SetProperty(flow="f", step="g", key="time", value="10:30"),
        SetProperty(flow="f", step="h", key="date", value="lead.renewal - 14d"),
        SetProperty(flow="f", step="i", key="reason", value='"why"'),
    ]
    result = apply_many(text, ops, revision(text)).text
    assert result == (
        "flow f {\n  a: add to list y\n  b: remove from list y\n  c: move to flow other\n"
        '  d: webhook "v"\n  e: goal g2\n  f: wait 5 business days\n  g: wait until 10:30\n'
        '  h: wait until lead.renewal - 14d\n  i: end "why"\n}\n'
    )


def test_set_property_adds_and_removes_optional_parts() -> None:
    text = "flow f {\n  w: wait for (opened()) -> s\n  s: split {\n    100% -> w\n  }\n}\n"
    ops = [
        SetProperty(flow="f", step="w", key="timeout", value="2d"),
        SetProperty(flow="f", step="s", key="holdout", value="5%"),
    ]
    added = apply_many(text, ops, revision(text)).text
    assert added == (
        "flow f {\n  w: wait for (opened()) up to 2d -> s\n  s: split {\n    100% -> w\n"
        "    holdout 5%\n  }\n}\n"
    )
    ops = [
        SetProperty(flow="f", step="w", key="timeout", value=""),
        SetProperty(flow="f", step="s", key="holdout", value=""),
    ]
    assert apply_many(added, ops, revision(added)).text == text


def test_set_property_refuses_values_that_would_not_parse_and_unknown_keys() -> None:
    assert refusal(SetProperty(flow="welcome", step="pause", key="duration", value="soon")) == (
        "'soon' is not a valid `duration` of step 'pause'; expected a duration such as 3d or 12h"
    )
    assert "not a valid `subject`" in refusal(
        SetProperty(flow="welcome", step="hello", key="subject", value="Hello")
    )
    assert "is not a valid `condition`" in refusal(
        SetProperty(flow="welcome", step="await", key="condition", value="opened(")
    )
    assert "cannot hold a comment" in refusal(
        SetProperty(flow="welcome", step="await", key="condition", value="opened() # x")
    )
    assert refusal(SetProperty(flow="welcome", step="pause", key="colour", value="red")) == (
        "step 'pause' is a `wait` and has no property 'colour'; its properties are: duration"
    )
    assert "reserved word" in refusal(
        SetProperty(flow="welcome", step="hello", key="template", value="send")
    )
    assert "has a `timeout` arm" in refusal(
        SetProperty(flow="welcome", step="await", key="timeout", value="")
    )


def test_an_expression_in_parentheses_is_replaced_whole() -> None:
    text = "flow f {\n  a: branch {\n    if (opened() or clicked()) and replied() -> b\n  }\n  b: end\n}\n"
    result = edit(SetProperty(flow="f", step="a", key="arm:0.condition", value="bounced()"), text)
    assert "    if bounced() -> b\n" in result


# ---------------------------------------------------------------------------- DeleteStep


def test_delete_step_removes_its_lines_and_its_layout_position() -> None:
    text = "flow f {\n  a: wait 1d  # a\n  b: wait 2d\n  c: end\n  layout {\n    a: 1, 2\n    c: 3, 4\n  }\n}\n"
    assert edit(DeleteStep(flow="f", step="a"), text) == (
        "flow f {\n  b: wait 2d\n  c: end\n  layout {\n    c: 3, 4\n  }\n}\n"
    )


def test_delete_step_retargets_edges_to_its_successor() -> None:
    after = edit(DeleteStep(flow="welcome", step="hot"))
    assert '    if clicked(hello, link="pricing") -> split_it   # keen\n' in after
    assert "  hot:" not in after


def test_delete_step_sends_a_fall_through_from_the_step_before_to_its_successor() -> None:
    text = "flow f {\n  a: wait 1d\n  b: wait 2d -> d\n  c: end\n  d: end\n}\n"
    assert edit(DeleteStep(flow="f", step="b"), text) == (
        "flow f {\n  a: wait 1d -> d\n  c: end\n  d: end\n}\n"
    )


def test_delete_step_fills_every_fall_through_port_of_the_step_before() -> None:
    text = "flow f {\n  w: wait for opened() up to 1d\n  b: wait 2d -> d\n  c: end\n  d: end\n}\n"
    assert edit(DeleteStep(flow="f", step="b"), text) == (
        "flow f {\n  w: wait for opened() up to 1d {\n    then -> d\n    timeout -> d\n  }\n"
        "  c: end\n  d: end\n}\n"
    )


def test_delete_step_retargets_migrations() -> None:
    text = "flow f {\n  a: wait 1d\n  b: end\n  migrate {\n    old -> a\n  }\n}\n"
    assert "    old -> b\n" in edit(DeleteStep(flow="f", step="a"), text)


def test_delete_step_refuses_when_edges_to_it_would_have_nowhere_to_go() -> None:
    message = refusal(DeleteStep(flow="welcome", step="done"))
    assert message == (
        "step 'done' cannot be deleted: it is the target of check (-> done), guide (-> done), "
        "counted (-> done), and it is an `end` step, which has no exit; "
        "connect them elsewhere first"
    )
    assert refusal(DeleteStep(flow="welcome", step="split_it")) == (
        "step 'split_it' cannot be deleted: it is the target of hot (-> split_it), and it has "
        "several exits (guide, nudge); connect them elsewhere first"
    )


def test_delete_step_refuses_when_conditions_refer_to_it() -> None:
    assert refusal(DeleteStep(flow="welcome", step="guide")) == (
        "step 'guide' cannot be deleted: conditions of step 'counted' refer to it; "
        "change them first"
    )
    text = "flow f {\n  exit when opened(a)\n  a: send t\n  b: end\n}\n"
    assert "conditions of the flow's policies refer to it" in refusal(
        DeleteStep(flow="f", step="a"), text
    )


def test_a_step_whose_own_condition_names_it_can_be_deleted() -> None:
    text = "flow f {\n  a: wait for opened(a) -> b\n  b: end\n}\n"
    assert edit(DeleteStep(flow="f", step="a"), text) == "flow f {\n  b: end\n}\n"


# ---------------------------------------------------------------------------- RenameStep


def test_rename_step_updates_every_kind_of_reference() -> None:
    after = edit(RenameStep(flow="welcome", old="hello", new="greet"))
    old, new = changed_lines(FLOW, after)
    assert [re.sub(r"\bhello\b", "greet", line) for line in old] == new
    assert "  greet: send welcome_email" in after  # the statement
    assert "await: wait for clicked(greet)" in after  # a condition
    assert 'if clicked(greet, link="pricing")' in after  # a call with named arguments
    assert "    greet: 100, -20   # top left" in after  # the layout key
    assert "    old_hello -> greet" in after  # a migration
    assert "flow other {\n  hello: send welcome_email" in after  # another flow is untouched
    guide = edit(RenameStep(flow="welcome", old="guide", new="tour"))
    assert "    50% -> tour\n" in guide and "count(click, step=tour)" in guide
    done = edit(RenameStep(flow="welcome", old="done", new="finish"))
    assert "    else -> finish\n" in done and "  guide: send guide_email -> finish\n" in done


def test_rename_step_refuses_a_taken_name_and_a_reserved_word() -> None:
    assert refusal(RenameStep(flow="welcome", old="hello", new="pause")) == (
        "flow 'welcome' already has a step 'pause'"
    )
    assert refusal(RenameStep(flow="welcome", old="hello", new="then")) == (
        "'then' is a reserved word and cannot be used as a step name"
    )
    assert refusal(RenameStep(flow="welcome", old="hello", new="9lives")) == (
        "'9lives' is not a valid step name; expected a name such as `welcome_email`"
    )


def test_renaming_a_step_to_its_own_name_changes_nothing() -> None:
    assert edit(RenameStep(flow="welcome", old="hello", new="hello")) == FLOW


# ---------------------------------------------------------------------------- MoveStep


def test_move_step_rewrites_a_position_and_keeps_its_comment() -> None:
    after = edit(MoveStep(flow="welcome", step="hello", x=-5, y=40))
    assert changed_lines(FLOW, after) == (
        ["    hello: 100, -20   # top left"],
        ["    hello: -5, 40   # top left"],
    )


def test_move_step_adds_a_position_to_the_layout_block() -> None:
    after = edit(MoveStep(flow="welcome", step="done", x=1, y=2))
    assert changed_lines(FLOW, after) == ([], ["    done: 1, 2"])


def test_move_step_creates_the_layout_block_at_the_end_of_the_flow() -> None:
    after = edit(MoveStep(flow="other", step="done", x=1, y=2))
    assert after.endswith("  done: end\n\n  layout {\n    done: 1, 2\n  }\n}\n")


# ---------------------------------------------------------------------------- arms


def test_add_arm_inserts_an_else_if_before_the_else() -> None:
    after = edit(AddArm(flow="welcome", step="check", condition="bounced()", target="done"))
    assert (
        "    else if opened(hello) -> nudge\n    else if bounced() -> done\n    else -> done\n"
        in after
    )


def test_add_arm_at_index_zero_turns_the_old_first_arm_into_an_else_if() -> None:
    after = edit(
        AddArm(flow="welcome", step="check", condition="bounced()", target="done", index=0)
    )
    assert changed_lines(FLOW, after) == (
        ['    if clicked(hello, link="pricing") -> hot   # keen'],
        ["    if bounced() -> done", '    else if clicked(hello, link="pricing") -> hot   # keen'],
    )


def test_add_arm_adds_an_else_arm_once() -> None:
    after = edit(AddArm(flow="welcome", step="counted", target="nudge"))
    assert "    if count(click, step=guide) > 1 -> done\n    else -> nudge\n  }" in after
    assert "already has an else arm" in refusal(
        AddArm(flow="welcome", step="check", target="nudge")
    )
    assert "only a branch" in refusal(
        AddArm(flow="welcome", step="hot", condition="true", target="done")
    )
    assert "index 0 to 2" in refusal(
        AddArm(flow="welcome", step="check", condition="true", target="done", index=5)
    )


def test_remove_arm_removes_its_line_and_promotes_the_next_arm_to_if() -> None:
    after = edit(RemoveArm(flow="welcome", step="check", port="arm:0"))
    assert changed_lines(FLOW, after) == (
        [
            '    if clicked(hello, link="pricing") -> hot   # keen',
            "    else if opened(hello) -> nudge",
        ],
        ["    if opened(hello) -> nudge"],
    )


def test_remove_arm_removes_split_paths_holdouts_and_wait_arms() -> None:
    path = edit(RemoveArm(flow="welcome", step="split_it", port="path:1"))
    assert changed_lines(FLOW, path) == (["    40% -> nudge"], [])
    holdout = edit(RemoveArm(flow="welcome", step="split_it", port="holdout"))
    assert changed_lines(FLOW, holdout) == (["    holdout 10%"], [])
    timeout = edit(RemoveArm(flow="welcome", step="await", port="timeout"))
    assert changed_lines(FLOW, timeout) == (["    timeout -> nudge   # no click"], [])
    assert "no port 'arm:9'" in refusal(RemoveArm(flow="welcome", step="check", port="arm:9"))


# ---------------------------------------------------------------------------- text as it is


def test_bytes_outside_the_edited_statement_stay_identical() -> None:
    op = SetProperty(flow="welcome", step="check", key="arm:0.condition", value="opened()")
    after = edit(op)
    line = '    if clicked(hello, link="pricing") -> hot   # keen\n'
    start = FLOW.index(line)
    end = start + len(line)
    assert after[:start] == FLOW[:start]
    assert after[len(after) - (len(FLOW) - end) :] == FLOW[end:]


def test_every_comment_survives_an_edit() -> None:
    ops: list[EditOp] = [
        RenameStep(flow="welcome", old="nudge", new="remind"),
        MoveStep(flow="welcome", step="pause", x=0, y=0),
        AddStep(flow="welcome", name="extra", action="wait 1h", after="hello"),
        Connect(flow="welcome", step="hello", target="check"),
        DeleteStep(flow="welcome", step="pause"),
    ]
    assert comments(apply_many(FLOW, ops, revision(FLOW)).text) == comments(FLOW)


def test_crlf_line_endings_and_a_byte_order_mark_are_kept() -> None:
    text = "\ufeffflow f {\r\n  a: wait 1d\r\n  b: end\r\n}\r\n"
    after = edit(AddStep(flow="f", name="c", action="end", after="a"), text)
    assert after == "\ufeffflow f {\r\n  a: wait 1d\r\n  c: end\r\n  b: end\r\n}\r\n"
    moved = edit(MoveStep(flow="f", step="a", x=1, y=1), text)
    assert moved.endswith("  b: end\r\n\r\n  layout {\r\n    a: 1, 1\r\n  }\r\n}\r\n")


def test_tab_indentation_is_followed_by_new_lines() -> None:
    text = "flow f {\n\ta: wait 1d\n\tb: end\n}\n"
    after = edit(AddStep(flow="f", name="c", action="end", after="a"), text)
    assert after == "flow f {\n\ta: wait 1d\n\tc: end\n\tb: end\n}\n"


# ---------------------------------------------------------------------------- batches and JSON


def test_apply_many_applies_edits_in_order_with_one_revision_check() -> None:
    ops: list[EditOp] = [
        AddStep(flow="other", name="wait_a_bit", action="wait 1d", after="hello"),
        RenameStep(flow="other", old="wait_a_bit", new="rest"),
        Connect(flow="other", step="rest", target="done"),
    ]
    result = apply_many(FLOW, ops, revision(FLOW))
    assert "  hello: send welcome_email\n  rest: wait 1d -> done\n  done: end\n" in result.text


def test_apply_many_is_all_or_nothing_and_says_which_edit_failed() -> None:
    ops: list[EditOp] = [
        RenameStep(flow="other", old="hello", new="greet"),
        DeleteStep(flow="other", step="hello"),
    ]
    with pytest.raises(EditError) as caught:
        apply_many(FLOW, ops, revision(FLOW))
    assert caught.value.diagnostic.message.startswith(
        "edit 2 of 2 (delete_step): flow 'other' has no step 'hello'"
    )


def test_an_operation_is_read_from_its_json_form() -> None:
    op = parse_op(
        {"op": "connect", "flow": "welcome", "step": "check", "port": "else", "target": "hot"}
    )
    assert op == Connect(flow="welcome", step="check", port="else", target="hot")
    assert parse_op(op.model_dump()) == op


# ---------------------------------------------------------------------------- properties


def _steps(text: str) -> dict[str, list[Tree[Token]]]:
    tree = parse_tree(text).tree
    assert tree is not None
    return {
        str(flow.children[0]): [
            s for s in flow.children[2:] if isinstance(s, Tree) and s.data == "step"
        ]
        for flow in tree.find_data("flow")
    }


@st.composite
def edits(draw: st.DrawFn, text: str) -> tuple[EditOp, set[int]]:
    """A random edit that applies to the text, and the lines whose comments it may remove."""
    flows = _steps(text)
    flow = draw(st.sampled_from(sorted(flows)))
    steps = flows[flow]
    if not steps:
        return AddStep(flow=flow, name="first", action="end"), set()
    kind = draw(st.integers(0, 7))
    branches = [s for s in steps if action_of(s).data == "branch"]
    forks = [s for s in steps if action_of(s).data in ("branch", "split", "wait_for")]
    step = draw(
        st.sampled_from(
            branches if kind == 5 and branches else forks if kind == 6 and forks else steps
        )
    )
    name = str(step.children[0])
    names = [str(s.children[0]) for s in steps]
    target = draw(st.sampled_from(names))
    fresh = draw(st.sampled_from([n for n in FRESH_NAMES + STEP_NAMES if n not in names]))
    action = action_of(step)
    if kind == 0:
        action_text = draw(
            st.sampled_from([*NEW_ACTIONS, f"branch {{\n if opened({target}) -> {target}\n}}"])
        )
        after = draw(st.none() | st.sampled_from(names))
        return AddStep(flow=flow, name=fresh, action=action_text, after=after), set()
    if kind == 1:
        ports = [e.port for e in exits(step)]
        if ports:
            port = draw(st.sampled_from(ports))
            connect_to = draw(st.none() | st.just(target))
            removable = _arm_lines(step) if connect_to is None else set()
            return Connect(flow=flow, step=name, port=port, target=connect_to), removable
    if kind == 2:
        return DeleteStep(flow=flow, step=name), _deleted_lines(text, flow, step)
    if kind == 3:
        return RenameStep(flow=flow, old=name, new=fresh), set()
    if kind == 4:
        return MoveStep(
            flow=flow, step=name, x=draw(st.integers(-99, 99)), y=draw(st.integers(-99, 99))
        ), set()
    if kind == 5 and action.data == "branch":
        condition = draw(st.sampled_from(["opened()", "lead.score > 3", f"clicked({target})"]))
        index = draw(st.none() | st.integers(0, len(conditional_arms(action))))
        return AddArm(flow=flow, step=name, condition=condition, target=target, index=index), set()
    if kind == 6 and action.data in ("branch", "split", "wait_for"):
        ports = [e.port for e in exits(step) if e.port is not None]
        if ports:
            return RemoveArm(flow=flow, step=name, port=draw(st.sampled_from(ports))), _arm_lines(
                step
            )
    key, value = draw(st.sampled_from(PROPERTIES[str(action.data)]))
    removable = _arm_lines(step) if key == "holdout" and not value else set()
    return SetProperty(flow=flow, step=name, key=key, value=value), removable


NEW_ACTIONS = ["wait 1d", "end", 'send t subject "x"', "update lead.a = -(1 - 2)"]
PROPERTIES = {
    "send": [("subject", '"New"'), ("subject", ""), ("from", '"a@b.c"'), ("template", "t2")],
    "wait": [("duration", "2d")],
    "wait_business": [("days", "2")],
    "wait_until_time": [("time", "10:00")],
    "wait_until_date": [("date", "now() + 1d")],
    "wait_for": [("timeout", "9h"), ("timeout", ""), ("condition", "opened() or clicked()")],
    "branch": [("arm:0.condition", "lead.score > 1")],
    "split": [("holdout", "5%"), ("holdout", ""), ("path:0.percent", "20%")],
    "update": [("value", "lead.score + 1")],
    "add_to_list": [("list", "l2")],
    "remove_from_list": [("list", "l2")],
    "move_to_flow": [("flow", "other")],
    "webhook": [("url", '"v"')],
    "reach_goal": [("goal", "g2")],
    "suppress": [("reason", ""), ("reason", '"r"')],
    "end": [("reason", ""), ("reason", '"r"')],
}


def _arm_lines(step: Tree[Token]) -> set[int]:
    return set(range(step.meta.line, step.meta.end_line + 1))


def _flow_tree(text: str, flow: str) -> Tree[Token]:
    tree = parse_tree(text).tree
    assert tree is not None
    return next(f for f in tree.find_data("flow") if f.children[0] == flow)


def _deleted_lines(text: str, flow: str, step: Tree[Token]) -> set[int]:
    lines = _arm_lines(step)
    for position in _flow_tree(text, flow).find_data("position"):
        if position.children[0] == step.children[0]:
            lines.add(position.meta.line)
    return lines


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flow_texts(), st.data())
def test_any_edit_keeps_the_text_parseable_and_every_comment_it_does_not_delete(
    text: str, data: st.DataObject
) -> None:
    op, removable = data.draw(edits(text))
    try:
        result = apply(text, op, revision(text)).text
    except EditError as error:
        assert error.diagnostic.message
        return
    assert parse_tree(result).tree is not None
    kept = [c.text for c in parse_tree(text).comments if c.line not in removable]
    remaining = iter(comments(result))
    for comment in kept:
        assert any(c == comment for c in remaining), (comment, result)
    if not removable:
        assert comments(result) == comments(text)
    edited = _flow_tree(text, op.flow).meta
    assert result[: edited.start_pos] == text[: edited.start_pos]
    assert result.endswith(text[edited.end_pos :])


def test_the_examples_in_the_docstrings_hold() -> None:
    assert doctest.testmod(dsl.edit).failed == 0
    assert doctest.testmod(dsl.edit_ops).failed == 0
