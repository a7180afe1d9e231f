"""Templates render in a sandbox: known escape payloads and dunder probes render nothing
dangerous, huge outputs are refused, a missing merge field is an error, never an empty string."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsl.compile import compile_text
from flowbuilder.mail.guard import unfilled
from flowbuilder.mail.sandbox import (
    Limits,
    MailSandbox,
    MissingField,
    Refused,
    RenderError,
    render_limited,
)
from flowbuilder.mail.templates import TemplateSet


def render(source: str, limits: Limits | None = None, **context: object) -> str:
    template = MailSandbox().from_string(source)
    return render_limited(lambda: template.generate(context), limits or Limits(), "t.html")


# The escapes of Jinja2's history: the dunder walk to `subclasses()` / `__globals__`, str.format
# reaching attributes (CVE-2016-10745, CVE-2019-10906), an indirect call of a stored str.format
# (CVE-2024-56326), and the `|attr` filter fetching `format` (CVE-2025-27516).
ESCAPES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ '{0.__class__.__mro__[1].__subclasses__}'.format(x) }}",
    "{{ '{0.__globals__}'.format_map({'0': x}) }}",
    "{% set f = '{0.__class__.__init__.__globals__}'.format %}{{ f(x) }}",
    "{{ ('{0.__class__.__base__.__subclasses__}' | attr('format'))(x) }}",
    "{{ x | attr('__class__') | attr('__base__') }}",
    "{{ self.__init__.__globals__.__builtins__ }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ request.application.__globals__ }}",
    "{{ config.__class__.__init__.__globals__ }}",
    "{{ x.__dict__ }}",
    "{{ range.__self__ }}",
]


@pytest.mark.parametrize("payload", ESCAPES)
def test_known_sandbox_escapes_render_nothing_dangerous(payload: str) -> None:
    try:
        out = render(payload, x=1)
    except RenderError:
        return
    for leak in (
        "class",
        "subclasses",
        "globals",
        "builtins",
        "popen",
        "uid=",
        "module",
        "object at",
    ):
        assert leak not in out, out


def test_a_billion_characters_are_refused_before_they_are_made() -> None:
    with pytest.raises(Refused, match="1,000,000,000 characters"):
        render("{{ 'a' * 10**9 }}")


def test_a_huge_power_and_a_padded_format_are_refused() -> None:
    with pytest.raises(Refused):
        render("{{ 2 ** 100000 }}")
    with pytest.raises(Refused):
        render("{{ (10 ** 1000) ** 1000 }}")
    with pytest.raises(Refused):
        render("{{ '%999999999s' | format('a') }}")
    with pytest.raises(Refused):
        render("{{ 'x' | center(10**9) }}")


def test_doubling_with_tilde_stops_at_the_output_cap() -> None:
    source = (
        "{% set a = 'x' * 1000 %}"
        + "".join("{% set a = a ~ a %}" for _ in range(20))
        + "{{ a | length }}"
    )
    # The loop-free doubling keeps every part under the cap until one passes it.
    with pytest.raises(Refused):
        render(source, Limits(max_output=100_000))


def test_loops_that_print_nothing_still_stop_at_the_time_limit() -> None:
    with pytest.raises(Refused, match="longer than"):
        render(
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            Limits(seconds=0.05),
        )


def test_output_over_the_cap_is_refused() -> None:
    with pytest.raises(Refused, match="over 1,000 characters"):
        render("{% for i in range(200) %}0123456789{% endfor %}", Limits(max_output=1000))


def test_a_missing_merge_field_is_an_error_and_fallbacks_work() -> None:
    with pytest.raises(MissingField, match="`first_name` has no value"):
        render("Hi {{ first_name }}")
    assert render("Hi {{ first_name | default('there') }}") == "Hi there"
    assert render("{% if first_name %}Hi {{ first_name }}{% else %}Hello{% endif %}") == "Hello"
    assert render("{{ lead.company | default('your team') }}", lead={}) == "your team"


def test_text_is_escaped_in_html_but_not_in_text_parts(tmp_path: Path) -> None:
    (tmp_path / "t.html").write_text('<p>{{ company }}</p><a href="{{ unsubscribe_url }}">u</a>')
    ws = compile_text('template t {\n  subject "{{ company }}"\n  html "t.html"\n}\n').workspace
    assert ws is not None
    out = TemplateSet(ws, tmp_path).render("t", {"company": "<A&B>", "unsubscribe_url": "u"})
    assert out.subject == "<A&B>"
    assert out.html is not None and "&lt;A&amp;B&gt;" in out.html
    assert "<A&B>" in out.text


def test_layouts_and_partials_stay_inside_the_workspace(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "base.html").write_text("<body>{% block main %}{% endblock %}</body>")
    (tmp_path / "templates" / "t.html").write_text(
        '{% extends "templates/base.html" %}{% block main %}Hi {% include "templates/p.html" %}{% endblock %}'
    )
    (tmp_path / "templates" / "p.html").write_text("{{ name | default('you') }}")
    (tmp_path / "templates" / "evil.html").write_text('{% include "../../etc/passwd" %}')
    ws = compile_text(
        'template t {\n  subject "s"\n  html "templates/t.html"\n}\n'
        'template evil {\n  subject "s"\n  html "templates/evil.html"\n}\n'
    ).workspace
    assert ws is not None
    ts = TemplateSet(ws, tmp_path)
    assert ts.render("t", {}).html == "<body>Hi you</body>"
    with pytest.raises(RenderError):
        ts.render("evil", {})


def test_the_unfilled_tag_guard_knows_merge_tags_from_brackets_in_text() -> None:
    assert unfilled("Hello {{ first_name }}", set()) is not None
    assert unfilled("Hello *|FNAME|*", set()) is not None
    assert unfilled("Dear [Company],", {"industry"}) is not None
    assert unfilled("Dear [industry] team", {"industry"}) is not None
    assert unfilled("[웨비나 초대] 다음 주 화요일", {"first_name"}) is None
    assert unfilled("[Webinar] next week", {"first_name"}) is None
