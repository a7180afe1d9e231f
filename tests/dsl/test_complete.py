"""Completion from the parser's acceptable tokens: every keyword and every reference of the examples
and the reference is offered where it stands, and the context picks the kind of name."""

from __future__ import annotations

from pathlib import Path

import pytest

import dsl
from dsl.complete import Candidate, Known, complete, recovered_tree
from dsl.parse import parse_tree
from flowbuilder.lsp.symbols import Index
from tests.flowbuilder.highlight_cases import CASES, IDS, Case, is_keyword, lark_tokens

ROOT = Path(__file__).resolve().parents[2]
ACME = ROOT / "examples" / "acme"
FILES = {str(p): p.read_text(encoding="utf-8") for p in sorted(ACME.glob("*.flow"))}
INDEX = Index.build({path: t for path, text in FILES.items() if (t := parse_tree(text).tree)})
KNOWN = INDEX.known()

HEAD = """\
template welcome_email "Welcome" {
  subject "Welcome"
}
list newsletter "Newsletter"
segment vip "VIP" where lead.score > 50
attribute revenue: number "Annual revenue"
settings {
  click_threshold = 3
}
form contact_us "Contact" {
  field interest: choice ["a", "b"]
}
"""
SMALL = Known(
    templates={"welcome_email": "Welcome"},
    lists={"newsletter": "Newsletter"},
    segments={"vip": "VIP"},
    attributes={"revenue": "number"},
    settings={"click_threshold": "3"},
    forms={"contact_us": "Contact"},
    fields={"contact_us": {"interest": "choice"}},
    flows={"welcome": "", "other": ""},
    steps={"welcome": {"hello": "", "done": ""}, "other": {"elsewhere": ""}},
    goals={"welcome": {"activated": ""}},
)


def at_end(text: str, known: Known = SMALL) -> list[Candidate]:
    lines = text.split("\n")
    return complete(text, len(lines), len(lines[-1]) + 1, known)


def labels(found: list[Candidate], kind: str) -> list[str]:
    return [c.label for c in found if c.kind == kind]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_every_keyword_is_offered_where_it_stands(case: Case) -> None:
    missing = []
    seen: set[str] = set()
    for token in lark_tokens(case.text):
        if not is_keyword(token) or token.value in seen:
            continue
        seen.add(str(token.value))
        assert token.line is not None and token.column is not None
        found = complete(case.text, token.line, token.column, Known())
        if not any(c.label == token.value and c.kind == "keyword" for c in found):
            missing.append(f"{token.line}:{token.column} {token.value}")
    assert missing == []


@pytest.mark.parametrize("path", sorted(FILES), ids=lambda p: Path(p).name)
def test_every_reference_of_the_examples_is_offered_where_it_stands(path: str) -> None:
    missing = []
    for occurrence in INDEX.occurrences[path]:
        if occurrence.declaration:
            continue
        found = complete(FILES[path], occurrence.span.line, occurrence.span.col, KNOWN)
        if not any(c.label == occurrence.name and c.kind == occurrence.kind for c in found):
            missing.append(f"{occurrence.span.line}:{occurrence.span.col} {occurrence.name}")
    assert missing == []


def test_after_send_only_templates_are_offered() -> None:
    found = at_end(HEAD + "flow welcome {\n  hello: send ")
    assert [c.label for c in found] == ["welcome_email"]


def test_after_an_arrow_the_steps_of_the_same_flow_are_offered() -> None:
    found = at_end(HEAD + "flow welcome {\n  hello: send welcome_email -> ")
    assert labels(found, "step") == ["done", "hello"]


def test_at_the_start_of_an_action_the_action_keywords_are_offered() -> None:
    found = at_end(HEAD + "flow welcome {\n  hello: ")
    assert {"send", "wait", "branch", "split", "update", "end", "webhook"} <= set(
        labels(found, "keyword")
    )
    assert "trigger" not in labels(found, "keyword")


def test_membership_words_pick_lists_segments_and_flows() -> None:
    assert labels(at_end("flow welcome {\n  trigger entered list "), "list") == ["newsletter"]
    assert labels(at_end("flow welcome {\n  trigger entered segment "), "segment") == ["vip"]
    assert labels(at_end("flow welcome {\n  a: add to list "), "list") == ["newsletter"]
    assert labels(at_end("flow welcome {\n  a: move to flow "), "flow") == ["other", "welcome"]
    assert labels(at_end("flow welcome {\n  trigger form "), "form") == ["contact_us"]


def test_a_reach_goal_step_offers_the_goals_of_its_flow() -> None:
    assert labels(at_end("flow welcome {\n  a: goal "), "goal") == ["activated"]


def test_a_path_offers_attributes_settings_and_form_answers() -> None:
    attributes = labels(at_end("flow welcome {\n  exit when lead."), "attribute")
    assert "revenue" in attributes and "email" in attributes and "score" in attributes
    assert labels(at_end("segment s where settings."), "setting") == ["click_threshold"]
    found = at_end("flow welcome {\n  trigger form contact_us where answer.")
    assert labels(found, "field") == ["interest"]


def test_a_functions_argument_offers_what_the_function_expects() -> None:
    inside = at_end("flow welcome {\n  a: branch {\n    if opened(")
    assert labels(inside, "step") == ["done", "hello"]
    assert labels(inside, "keyword") == []
    assert labels(at_end("segment s where in_list("), "list") == ["newsletter"]
    events = labels(at_end("segment s where count("), "event")
    assert "click" in events and "open" in events
    named = at_end("segment s where count(click, ")
    assert labels(named, "parameter") == ["within=", "where=", "step="]
    assert labels(named, "function") == []


def test_a_condition_offers_functions_and_roots_with_their_signatures() -> None:
    found = at_end("flow welcome {\n  exit when ")
    functions = {c.label: c for c in found if c.kind == "function"}
    assert (
        functions["count"].detail == "count(event, within=duration, where=bool, step=step) → number"
    )
    assert {"lead", "settings"} <= set(labels(found, "value"))
    assert "not" in labels(found, "keyword")


def test_declaration_types_and_fixed_values_are_offered() -> None:
    assert labels(at_end("attribute age: "), "type") == ["string", "number", "bool", "date", "list"]
    assert labels(at_end("flow f {\n  kind "), "value") == [
        "marketing",
        "transactional",
        "cold",
        "sales",
    ]


def test_a_broken_statement_above_does_not_stop_completion_below() -> None:
    text = (
        HEAD
        + "flow welcome {\n  hello: sned welcome_email\n  ask: brnch {\n    if x -> y\n  }\n  later: send "
    )
    assert [c.label for c in at_end(text)] == ["welcome_email"]


def test_nothing_is_offered_inside_a_string_or_a_comment() -> None:
    assert at_end('flow welcome "Wel') == []
    assert at_end("flow welcome {\n  # send ") == []


def test_a_broken_statement_that_opens_the_block_of_the_cursor_offers_nothing() -> None:
    assert at_end("flow welcome {\n  ask: brnch {\n    if opened(") == []


def test_the_recovered_tree_keeps_the_good_statements_of_a_broken_file() -> None:
    tree = recovered_tree("flow welcome {\n  hello: sned x\n  done: end\n")
    assert tree is not None
    steps = [str(s.children[0]) for s in tree.find_data("step")]
    assert steps == ["done"]


def test_known_names_can_come_from_a_compiled_workspace() -> None:
    ws = dsl.load(ACME)
    known = Known.from_workspace(ws)
    assert set(known.templates) == set(KNOWN.templates)
    assert set(known.steps["welcome"]) == set(KNOWN.steps["welcome"])
    assert set(known.lists) == set(KNOWN.lists)


def _fed(prefix: str, line: int) -> object:
    from dsl.complete import _feed

    fed = _feed(prefix, line)
    if fed is None:
        return None
    tokens, accepts = fed
    return [(t.type, str(t), t.line, t.column, t.end_pos) for t in tokens], accepts


@pytest.mark.parametrize("compiled", [True, False], ids=["C loop", "Python loop"])
def test_completion_reads_the_prefix_as_lark_s_own_loop_does(
    compiled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Completion feeds the text before the cursor through the parse's loop; the tokens and the
    terminals accepted after them are what Lark's loop, a call per token, gives."""
    from dsl.lalr import FusedParser

    monkeypatch.setattr(FusedParser, "compiled_loop", compiled)
    checked = 0
    for text in list(FILES.values())[:4]:
        for cut in range(0, len(text), 89):
            prefix = text[:cut]
            line = prefix.count("\n") + 1
            ours = _fed(prefix, line)
            with monkeypatch.context() as lark_s:
                lark_s.setattr(
                    FusedParser,
                    "feed_text",
                    lambda self, interactive, made: made.extend(interactive.iter_parse()),
                )
                theirs = _fed(prefix, line)
            assert ours == theirs, prefix[-80:]
            checked += ours is not None
    assert checked > 50
