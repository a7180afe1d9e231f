"""Template files snapshotted at publish: a send renders exactly what was published.

Publishing reads every file the workspace's templates use — each `html` and `text` file, the
layouts and partials they `extends`, `include` or `import`, the files an MJML template
`<mj-include>`s — from the workspace folder (the folder the published `.flow` files share),
compiles each in the mail sandbox, and stores them with the publication (`publication_templates`,
each text once in `template_texts`). The sender renders from that snapshot; a file edited after
publishing changes nothing until the next publish.

A file that is missing or does not compile refuses the publication, with the finding the template
lint gives: FB600 at the `template` declaration for a missing file, FB601 at the file's line for
a syntax error. So does a layout or partial named by a computed expression (`{% include
"partials/" ~ kind %}`), whose file cannot be known when publishing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import FileSystemLoader, TemplateNotFound, TemplateSyntaxError, nodes
from jinja2.loaders import split_template_path
from sqlalchemy import func, insert, select
from sqlalchemy.engine import Connection

from dsl import ir, rules
from dsl.compile import Compilation
from dsl.diagnostics import Diagnostic, Span
from flowbuilder.mail.sandbox import MailSandbox, RenderError
from flowbuilder.mail.templates import TemplateSet, mjml_to_html
from flowbuilder.store.schema import Publication, PublishedTemplate, TemplateText
from flowbuilder.store.writes import insert_ignoring

_LINE = re.compile(r":(\d+)$")


@dataclass
class TemplateSnapshot:
    """The template files of one workspace as publishing read them (path → text)."""

    root: Path
    files: dict[str, str] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def changed(self, conn: Connection) -> bool:
        """The files differ from those of the newest publication."""
        newest = conn.execute(select(func.max(Publication.id))).scalar()
        stored = load(conn, int(newest)) if newest is not None else {}
        return stored != self.files

    def store(self, conn: Connection, publication_id: int) -> None:
        """Keep the files with publication `publication_id` (in its transaction)."""
        hashes = {path: _sha256(text) for path, text in self.files.items()}
        insert_ignoring(
            conn,
            TemplateText.__table__,  # type: ignore[arg-type]
            [{"sha256": h, "text": self.files[p]} for p, h in sorted(hashes.items())],
        )
        if hashes:
            conn.execute(
                insert(PublishedTemplate),
                [
                    {"publication_id": publication_id, "path": p, "sha256": h}
                    for p, h in sorted(hashes.items())
                ],
            )


def load(conn: Connection, publication_id: int) -> dict[str, str]:
    """The template files stored with a publication (path → text); empty when it has none."""
    rows = conn.execute(
        select(PublishedTemplate.path, TemplateText.text)
        .join(TemplateText, TemplateText.sha256 == PublishedTemplate.sha256)
        .where(PublishedTemplate.publication_id == publication_id)
    )
    return {path: text for path, text in rows}


def uses_files(ws: ir.Workspace) -> bool:
    """Some template of the workspace has an `html` or a `text` file."""
    return any(t.html or t.text for t in ws.templates.values())


def workspace_root(compilation: Compilation) -> Path:
    """The workspace folder: the folder every compiled `.flow` file is in or under."""
    parents = [Path(p).resolve().parent for p in compilation.files]
    if not parents:
        return Path(".").resolve()
    common = parents[0]
    for p in parents[1:]:
        while common not in (p, *p.parents):
            common = common.parent
    return common


def take_snapshot(compilation: Compilation, root: Path | None = None) -> TemplateSnapshot:
    """Read and check every template file of a compiled workspace (see the module docstring)."""
    snapshot = TemplateSnapshot(root or workspace_root(compilation))
    ws = compilation.workspace
    if ws is None:
        return snapshot
    reader = _Reader(snapshot)
    for template in sorted(ws.templates.values(), key=lambda t: t.name):
        for rel, kind in ((template.html, "HTML"), (template.text, "text")):
            if rel:
                reader.part(template, rel, kind)
    return snapshot


class _Reader:
    def __init__(self, snapshot: TemplateSnapshot) -> None:
        self.snapshot = snapshot
        self.root = snapshot.root
        self.env = MailSandbox(FileSystemLoader(str(self.root)))
        self.checked: set[str] = set()
        self.disk = TemplateSet(ir.Workspace(), self.root)

    def problem(self, code: str, message: str, path: str, span: Span, hint: str) -> None:
        self.snapshot.diagnostics.append(rules.make(code, message, path, span, hint=hint))

    def part(self, template: ir.Template, rel: str, kind: str) -> None:
        """A template's own file: missing is reported at the declaration."""
        declared = template.span or Span(1, 1, 1, 2)
        text = self.read(rel)
        if text is None:
            shown = self.root / rel
            self.problem(
                "FB600",
                f"the {kind} file of template `{template.name}` does not exist: {shown}",
                template.path,
                declared,
                f"create {shown}, or fix the path (relative to {self.root})",
            )
            return
        self.check(rel, text, mjml=kind == "HTML" and rel.endswith(".mjml"))

    def read(self, name: str) -> str | None:
        try:
            split_template_path(name)
            return self.disk.source(name)
        except (TemplateNotFound, UnicodeDecodeError, OSError):
            return None

    def check(self, name: str, text: str, *, mjml: bool = False) -> None:
        """Keep a file, compile it, and follow what it uses."""
        if name in self.checked:
            return
        self.checked.add(name)
        self.snapshot.files[name] = text
        shown = str(self.root / name)
        try:
            tree = self.env.parse(text, name, shown)
            self.env.compile(text, name, shown)
        except TemplateSyntaxError as e:
            line = e.lineno or 1
            self.problem(
                "FB601",
                f"template syntax error: {e.message}",
                shown,
                Span.point(line, _first_col(text, line)),
                "see the template syntax in docs/email.md",
            )
            return
        for reference, line, required in _references(tree):
            if reference is None:
                self.problem(
                    "FB601",
                    "a layout or partial named by an expression cannot be published: its file "
                    "is not known until a message is rendered",
                    shown,
                    Span.point(line, _first_col(text, line)),
                    'name the file: {% include "templates/partials/footer.html" %}',
                )
                continue
            used = self.read(reference)
            if used is None and not required:
                continue  # `ignore missing`, or one of several to choose from: rendered so too
            if used is None:
                self.problem(
                    "FB600",
                    f"`{reference}`, used by {name}, does not exist in {self.root}",
                    shown,
                    Span.point(line, _first_col(text, line)),
                    f"create {self.root / reference}, or fix the name (relative to {self.root})",
                )
                continue
            self.check(reference, used)
        if mjml:
            self.mjml(name, shown, text)

    def mjml(self, name: str, shown: str, text: str) -> None:
        """An MJML file must convert; the files it includes go into the snapshot too."""
        included: list[str] = []

        def read(path: str) -> str:
            if path != name:
                included.append(path)
            return self.disk.source(path)

        try:
            mjml_to_html(name, read)
        except RenderError as e:
            line = int(m.group(1)) if (m := _LINE.search(e.where or "")) else 1
            self.problem(
                "FB601",
                e.reason,
                shown,
                Span.point(line, _first_col(text, line)),
                "see the MJML documentation of the tag named",
            )
            return
        for path in included:
            used = self.read(path)
            if used is not None and path not in self.checked:
                self.checked.add(path)
                self.snapshot.files[path] = used


def _references(tree: nodes.Template) -> Iterator[tuple[str | None, int, bool]]:
    """(file name or None when computed, line, whether it must exist) of every extends,
    include and import. Of `{% include ["a.html", "b.html"] %}` the first that exists is used,
    so none of them must."""
    for node in tree.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)):
        assert isinstance(node, nodes.Extends | nodes.Include | nodes.Import | nodes.FromImport)
        template = node.template
        required = not getattr(node, "ignore_missing", False)
        if isinstance(template, nodes.Const) and isinstance(template.value, str):
            yield template.value, node.lineno, required
        elif isinstance(template, nodes.Tuple | nodes.List):
            items: Iterable[nodes.Expr] = template.items
            for item in items:
                if isinstance(item, nodes.Const) and isinstance(item.value, str):
                    yield item.value, node.lineno, False
                else:
                    yield None, node.lineno, False
        else:
            yield None, node.lineno, required


def _first_col(text: str, line: int) -> int:
    lines = text.splitlines()
    if 0 < line <= len(lines):
        found = lines[line - 1]
        return len(found) - len(found.lstrip()) + 1
    return 1


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
