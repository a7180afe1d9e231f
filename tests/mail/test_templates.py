"""Template sets: a text part derived once from the HTML source reads as the text derived from each
rendered message; a snapshot renders as the folder does; a subject without template syntax is not
rendered; files outside the workspace are never read."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsl.compile import compile_paths, compile_text
from flowbuilder.mail.personalize import Identity, LeadView, Links, merge_fields
from flowbuilder.mail.sandbox import RenderError
from flowbuilder.mail.snapshot import take_snapshot
from flowbuilder.mail.templates import TemplateSet
from flowbuilder.mail.textify import html_to_text, text_template
from tests.mail.conftest import ACME, LEADS

WS = compile_paths([ACME]).workspace
assert WS is not None
LINKS = Links("https://mail.acme.example/u/7.sig", "https://mail.acme.example/p/7.sig")


def fields(attributes: dict[str, object]) -> dict[str, object]:
    lead = LeadView(7, "ann@example.com", attributes, stage="mql", lists=frozenset({"news"}))
    assert WS is not None
    return merge_fields(lead, LINKS, Identity.of(WS), settings=WS.settings)


@pytest.mark.parametrize("name", sorted(n for n, t in WS.templates.items() if not t.text))
def test_the_derived_text_part_reads_as_the_text_of_the_rendered_html(name: str) -> None:
    ts = TemplateSet(WS, ACME)
    assert ts.compiled(name).derived_text is not None  # the example templates stand alone
    for attributes in LEADS:
        try:
            rendered = ts.render(name, fields(attributes))
        except RenderError:
            continue  # a field without fallback: the message fails whichever way the text is made
        assert rendered.html is not None
        assert rendered.text == html_to_text(rendered.html)


def test_a_template_with_a_partial_or_printed_markup_derives_its_text_per_message() -> None:
    ws = compile_text(
        'template a {\n  subject "A"\n  html "a.html"\n}\n'
        'template b {\n  subject "B"\n  html "b.html"\n}\n'
    ).workspace
    assert ws is not None
    files = {
        "a.html": '<p>Hi</p>{% include "footer.html" %}',
        "footer.html": '<p><a href="{{ unsubscribe_url }}">Leave</a></p>',
        "b.html": "<p>{{ block | safe }}</p>",
    }
    ts = TemplateSet(ws, files=files)
    assert ts.compiled("a").derived_text is None and ts.compiled("b").derived_text is None
    a = ts.render("a", {"unsubscribe_url": "https://x.example/u/1"})
    assert a.text == "Hi\n\nLeave (https://x.example/u/1)\n"
    b = ts.render("b", {"block": "<b>Bold</b> news"})
    assert b.text == "Bold news\n"


def test_jinja_tags_survive_the_derivation_in_place() -> None:
    source = (
        '<p>Hi {{ name | default("there") }}</p>{% if vip %}<p>Thanks &amp; more</p>{% endif %}'
        '<a href="{{ unsubscribe_url }}">Leave</a>'
    )
    assert text_template(source) == (
        'Hi {{ name | default("there") }}\n\n{% if vip %}\n\nThanks & more\n\n{% endif %}'
        "Leave ({{ unsubscribe_url }})\n"
    )


def test_a_snapshot_renders_exactly_as_the_folder_it_was_taken_from() -> None:
    snapshot = take_snapshot(compile_paths([ACME]))
    assert snapshot.diagnostics == []
    from_disk, from_snapshot = TemplateSet(WS, ACME), TemplateSet(WS, files=snapshot.files)
    for name in sorted(WS.templates):
        context = fields(LEADS[0])
        assert from_snapshot.render(name, context) == from_disk.render(name, context)


def test_a_subject_without_template_syntax_is_used_as_written() -> None:
    ws = compile_text('template t {\n  subject "  Plain   subject "\n  text "t.txt"\n}\n').workspace
    assert ws is not None
    ts = TemplateSet(ws, files={"t.txt": "x"})
    assert ts.render("t", {}).subject == "Plain subject"
    assert ts._lines["  Plain   subject "] == "Plain subject"  # kept as text, not compiled


@pytest.mark.parametrize("path", ["../outside.html", "/etc/hostname"])
def test_a_file_outside_the_workspace_is_never_read(tmp_path: Path, path: str) -> None:
    (tmp_path / "outside.html").write_text("<p>secret</p>")
    root = tmp_path / "ws"
    root.mkdir()
    ws = compile_text(f'template t {{\n  subject "T"\n  html "{path}"\n}}\n').workspace
    assert ws is not None
    with pytest.raises(RenderError, match="does not exist"):
        TemplateSet(ws, root).render("t", {})
