"""A workspace's email templates, compiled once and rendered per lead in the sandbox.

A template has a subject and an optional preheader (texts in the `.flow` file), an HTML part and
a text part (files relative to the workspace folder). Without a text file the text part is
derived from the HTML: once, as a text template of its own, when the HTML stands alone, else per
message from the rendered HTML. An HTML file ending in `.mjml` is MJML, turned into responsive
HTML once when the template is loaded (so Jinja2 tags go inside MJML text and attributes). Files
can share layouts and partials with `{% extends "templates/layouts/base.html" %}` and
`{% include … %}`, always relative to the workspace folder and never outside it.

The files come from a folder (`root`: previews and test sends read the workspace as it is on
disk) or from a publication's snapshot (`files`: the sender renders what was published). Each
file is compiled once; a subject or preheader without template syntax is not rendered at all.

    >>> from dsl.compile import compile_text
    >>> ws = compile_text(
    ...     'template hi {\\n  subject "Hi {{ name | default(\\'there\\') }}"\\n  text "hi.txt"\\n}\\n'
    ... ).workspace
    >>> hi = TemplateSet(ws, files={"hi.txt": "Hello {{ name }}!"}).render("hi", {"name": "Ann"})
    >>> hi.subject, hi.text
    ('Hi Ann', 'Hello Ann!')
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import (
    BaseLoader,
    DictLoader,
    FileSystemLoader,
    Template,
    TemplateNotFound,
    TemplateSyntaxError,
    meta,
    nodes,
)
from jinja2.loaders import split_template_path
from markupsafe import Markup

from dsl import ir
from flowbuilder.mail.markup import body_start
from flowbuilder.mail.sandbox import Limits, MailSandbox, RenderError, collect, limited
from flowbuilder.mail.textify import html_to_text, text_template, tidy

_SYNTAX = re.compile(r"\{\{|\{%|\{#")


@dataclass(frozen=True)
class Rendered:
    """One message's parts for one lead, before tracking and headers."""

    subject: str
    preheader: str | None
    html: str | None
    text: str


@dataclass
class _Compiled:
    template: ir.Template
    html: Template | None
    text: Template | None
    html_path: str | None
    text_path: str | None
    derived_text: Template | None = None  # the text part, derived from the HTML source once


# A subject or preheader: the text itself when it holds no template syntax, else its template.
Line = str | Template


@lru_cache(maxsize=1024)
def preheader_html(preheader: str) -> str:
    """The preview text: hidden in the body, shown by inboxes after the subject."""
    return (
        '<div style="display:none;max-height:0;overflow:hidden;mso-hide:all" aria-hidden="true">'
        f"{Markup.escape(preheader)}</div>"
    )


@dataclass
class TemplateSet:
    """Every template of a workspace; files are read and compiled on first use, then kept.

    Files are read from `root`, or from `files` (path → text, a publication's snapshot) when
    given."""

    ws: ir.Workspace
    root: Path = field(default_factory=lambda: Path("."))
    limits: Limits = field(default_factory=Limits)
    files: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        loader: BaseLoader = (
            DictLoader(dict(self.files))
            if self.files is not None
            else FileSystemLoader(str(self.root))
        )
        self.html_env = MailSandbox(loader, autoescape=True)
        self.text_env = MailSandbox(loader, autoescape=False)
        self._compiled: dict[str, _Compiled] = {}
        self._lines: dict[str, Line] = {}

    @property
    def origin(self) -> str:
        """Where the files come from, for messages."""
        return "the published snapshot" if self.files is not None else str(self.root)

    # -- loading -------------------------------------------------------------------------------

    def declared(self, name: str) -> ir.Template:
        template = self.ws.templates.get(name)
        if template is None:
            known = ", ".join(sorted(self.ws.templates)) or "none"
            raise RenderError(f"template `{name}` is not declared; templates: {known}")
        return template

    def compiled(self, name: str) -> _Compiled:
        found = self._compiled.get(name)
        if found is None:
            t = self.declared(name)
            found = _Compiled(
                t,
                self._file(t.html, name, html=True) if t.html else None,
                self._file(t.text, name, html=False) if t.text else None,
                t.html,
                t.text,
            )
            if found.html is None and found.text is None:
                raise RenderError(f"template `{name}` has neither an `html` nor a `text` file")
            if found.text is None and t.html:
                found.derived_text = self._derived_text(t.html)
            self._compiled[name] = found
        return found

    def source(self, path: str) -> str:
        """The text of a template file; `TemplateNotFound` when there is none (or when the path
        would leave the workspace folder)."""
        pieces = split_template_path(path)  # refuses `..`, as the loaders do
        if self.files is not None:
            if path not in self.files:
                raise TemplateNotFound(path)
            return self.files[path]
        try:
            return self.root.joinpath(*pieces).read_text(encoding="utf-8")
        except (FileNotFoundError, IsADirectoryError):
            raise TemplateNotFound(path) from None

    def _file(self, path: str, name: str, *, html: bool) -> Template:
        env = self.html_env if html else self.text_env
        try:
            if html and path.endswith(".mjml"):
                return env.from_string(mjml_to_html(path, self.source))
            return env.get_template(path)
        except TemplateNotFound as e:
            missing = e.name if e.name != path else path
            raise RenderError(
                f"the file {missing} does not exist (template `{name}`; paths are relative to "
                f"{self.origin})"
            ) from None
        except TemplateSyntaxError as e:
            where = f"{e.filename or e.name or path}:{e.lineno}"
            raise RenderError(f"template syntax error: {e.message}", where) from None

    def _derived_text(self, path: str) -> Template | None:
        """The text part as a template of its own, derived from the HTML source, when the HTML
        stands alone (no layout or partial, nothing printed as markup): then no message pays for
        the conversion."""
        if path.endswith(".mjml"):
            return None
        try:
            source = self.source(path)
            tree = self.text_env.parse(source)
            if any(True for _ in meta.find_referenced_templates(tree)) or _prints_markup(tree):
                return None
            return self.text_env.from_string(text_template(source))
        except (OSError, TemplateNotFound, TemplateSyntaxError):
            return None  # derived from the rendered HTML instead

    def _line(self, source: str, where: str) -> Line:
        compiled = self._lines.get(source)
        if compiled is None:
            if _SYNTAX.search(source) is None:
                compiled = " ".join(source.split())
            else:
                try:
                    compiled = self.text_env.from_string(source)
                except TemplateSyntaxError as e:
                    raise RenderError(f"template syntax error: {e.message}", where) from None
            self._lines[source] = compiled
        return compiled

    # -- rendering -----------------------------------------------------------------------------

    def render(
        self,
        name: str,
        context: Mapping[str, Any],
        *,
        subject: str | None = None,
        preheader: str | None = None,
    ) -> Rendered:
        """Render every part of template `name` for one lead's merge fields, within one time
        budget (`Limits.seconds` for the whole message)."""
        c = self.compiled(name)
        t = c.template
        subject_source = subject or t.subject
        if not subject_source:
            raise RenderError(f"template `{name}` has no subject")
        # One context for every part: the environment's globals and the fields, shared by the
        # parts' contexts instead of copied into each.
        fields = {**self.html_env.globals, **context}
        with limited(self.limits):
            subject_text = self._render_line(subject_source, fields, f"template {name} subject")
            pre_source = preheader or t.preheader
            pre = (
                self._render_line(pre_source, fields, f"template {name} preheader")
                if pre_source
                else None
            )
            html = None
            if c.html is not None:
                html = self._render(c.html, fields, c.html_path)
                if pre:
                    html = _with_preheader(html, pre)
            if c.text is not None:
                text = self._render(c.text, fields, c.text_path)
            elif c.derived_text is not None:
                text = tidy(self._render(c.derived_text, fields, c.html_path))
            else:
                text = html_to_text(html or "")
        return Rendered(subject_text, pre, html, text)

    def _render(self, template: Template, fields: dict[str, Any], where: str | None) -> str:
        return collect(
            lambda: template.root_render_func(template.new_context(fields, shared=True)),
            self.limits,
            where,
        )

    def _render_line(self, source: str, fields: dict[str, Any], where: str) -> str:
        line = self._line(source, where)
        if isinstance(line, str):
            return line
        return " ".join(self._render(line, fields, where).split())


def _prints_markup(tree: nodes.Template) -> bool:
    """The template prints something as markup (`| safe`, `{% autoescape false %}`): its text
    part cannot be derived before the values are known."""
    return any(
        isinstance(n, nodes.MarkSafe | nodes.MarkSafeIfAutoescape | nodes.ScopedEvalContextModifier)
        or (isinstance(n, nodes.Filter) and n.name in ("safe", "tojson"))
        for n in tree.find_all(nodes.Node)
    )


def _with_preheader(html: str, preheader: str) -> str:
    hidden = preheader_html(preheader)
    at = body_start(html)
    return hidden + html if at is None else html[:at] + hidden + html[at:]


def mjml_to_html(file: str, read: Callable[[str], str]) -> str:
    """MJML to responsive HTML (mjml-python); `read(path)` gives the text of a file of the
    workspace, for the template and its `<mj-include>`s (which never leave the workspace)."""
    import mjml

    def include(path: str) -> str:
        if Path(path).is_absolute() or ".." in Path(path).parts:
            raise RenderError(f"<mj-include> of {path} leaves the workspace folder", file)
        try:
            return read(Path(path).as_posix())
        except TemplateNotFound:
            raise RenderError(f"<mj-include> of {path}: the file does not exist", file) from None

    source = read(file)
    try:
        return mjml.mjml2html(source, include_loader=include)
    except (ValueError, RuntimeError) as e:  # mrml reports malformed MJML as an exception
        raise RenderError(f"MJML: {e}", file) from None
