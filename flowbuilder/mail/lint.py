"""Template lint: the linter reads every template file of a workspace.

| code | finds |
|---|---|
| FB405 | a merge field in a template file with no fallback that a lead may lack |
| FB600 | a template names a file that does not exist, or has no body file at all |
| FB601 | a template file is not valid template syntax |
| FB602 | the HTML part of a marketing template has no unsubscribe link |
| FB603 | a link that goes nowhere: empty, `#`, relative or `javascript:` |

Findings point into the template file (`templates/welcome.html:12:9`), or at the `template`
declaration in the `.flow` file when the file itself is missing. A merge field is safe when it has
a fallback (`| default('…')`, `or '…'`), sits inside an `{% if field %}` that tests it, is a
built-in field, or is an attribute declared `required`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import TemplateSyntaxError, meta, nodes

from dsl import ir, rules
from dsl.compile import Compilation, compile_paths, flow_files
from dsl.diagnostics import Diagnostic, Span, sorted_diagnostics
from dsl.lint import LintConfig, LintResult, lint
from dsl.lint.config import apply, load_config
from flowbuilder.mail.personalize import BUILT_IN_FIELDS
from flowbuilder.mail.sandbox import MailSandbox

_HREF = re.compile(r"""<a\b[^>]*?\bhref\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.I | re.S)
_UNSUBSCRIBE = re.compile(r"\b(unsubscribe_url|preferences_url)\b")
_FALLBACK_FILTERS = frozenset({"default", "d"})


@dataclass
class TemplateLint:
    diagnostics: list[Diagnostic] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # template file path → text
    files_checked: int = 0


def _root_for(template: ir.Template, roots: list[Path]) -> Path:
    declared = Path(template.path).resolve() if template.path else Path.cwd()
    containing = [r for r in roots if r.resolve() in declared.parents]
    if containing:
        return max(containing, key=lambda r: len(r.resolve().parts))
    return declared.parent


def _shown(root: Path, rel: str) -> str:
    return str(root / rel)


def lint_templates(ws: ir.Workspace, roots: Iterable[Path]) -> TemplateLint:
    """Every finding in the template files of `ws`; `roots` are the folders linted (template
    paths are relative to the workspace folder that holds the declaring `.flow` file)."""
    folders = [p if p.is_dir() else p.parent for p in roots]
    result = TemplateLint()
    env = MailSandbox()
    for template in ws.templates.values():
        root = _root_for(template, folders)
        declared = template.span or Span(1, 1, 1, 2)
        if not template.html and not template.text:
            result.diagnostics.append(
                rules.make(
                    "FB600",
                    f"template `{template.name}` has neither an `html` nor a `text` file",
                    template.path,
                    declared,
                    hint='add `html "templates/<name>.html"`',
                )
            )
            continue
        for rel, is_html in ((template.html, True), (template.text, False)):
            if not rel:
                continue
            file = root / rel
            shown = _shown(root, rel)
            if not file.is_file():
                result.diagnostics.append(
                    rules.make(
                        "FB600",
                        f"the {'HTML' if is_html else 'text'} file of template `{template.name}` does not exist: {shown}",
                        template.path,
                        declared,
                        hint=f"create {shown}, or fix the path (relative to {root})",
                    )
                )
                continue
            text = _read(file)
            if text is None:
                result.diagnostics.append(
                    rules.make(
                        "FB600",
                        f"{shown} is not UTF-8 text",
                        template.path,
                        declared,
                        hint="save the template as UTF-8",
                    )
                )
                continue
            result.files_checked += 1
            result.sources[shown] = text
            result.diagnostics += _check_file(env, ws, template, root, rel, shown, text, is_html)
    return result


def _read(file: Path) -> str | None:
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None


def _check_file(
    env: MailSandbox,
    ws: ir.Workspace,
    template: ir.Template,
    root: Path,
    rel: str,
    shown: str,
    text: str,
    is_html: bool,
) -> Iterator[Diagnostic]:
    source = text  # MJML is read as HTML is: its Jinja2 tags and fields are checked alike
    try:
        tree = env.parse(source)
    except TemplateSyntaxError as e:
        line = e.lineno or 1
        yield rules.make(
            "FB601",
            f"template syntax error: {e.message}",
            shown,
            Span.point(line, _first_col(text, line)),
            hint="see the template syntax in docs/email.md",
        )
        return
    lines = text.splitlines()
    for name, line in _unguarded_fields(tree):
        attribute = ws.attributes.get(name)
        if name in BUILT_IN_FIELDS or (attribute is not None and attribute.required):
            continue
        col = _col_of(lines, line, name)
        why = (
            "a lead may lack it"
            if attribute is not None
            else "it is not a declared attribute, so a lead may lack it"
        )
        yield rules.make(
            "FB405",
            f"the merge field `{name}` in template `{template.name}` has no fallback and {why}",
            shown,
            Span(line, col, line, col + len(name)),
            hint=f"write {{{{ {name} | default('…') }}}}",
        )
    if is_html:
        yield from _links(text, shown)
        if template.message_class == "marketing" and not _mentions_unsubscribe(env, root, source):
            line = next(
                (n for n, x in enumerate(lines, 1) if "</body" in x.lower()), max(len(lines), 1)
            )
            yield rules.make(
                "FB602",
                f"the HTML of marketing template `{template.name}` has no unsubscribe link",
                shown,
                Span.point(line, _first_col(text, line)),
                hint='add <a href="{{ unsubscribe_url }}">Unsubscribe</a> to the footer',
            )


def _mentions_unsubscribe(env: MailSandbox, root: Path, source: str, depth: int = 0) -> bool:
    """The template or a layout / partial it uses links to the unsubscribe or preference page."""
    if _UNSUBSCRIBE.search(source):
        return True
    if depth > 8:
        return False
    try:
        referenced = meta.find_referenced_templates(env.parse(source))
    except TemplateSyntaxError:
        return False
    for name in referenced:
        if name and (root / name).is_file():
            text = _read(root / name) or ""
            if _mentions_unsubscribe(env, root, text, depth + 1):
                return True
    return False


def _links(text: str, shown: str) -> Iterator[Diagnostic]:
    for m in _HREF.finditer(text):
        url = (m.group(1) if m.group(1) is not None else m.group(2)).strip()
        if "{{" in url or "{%" in url:
            continue
        lower = url.lower()
        problem = None
        if url in ("", "#"):
            problem = "goes nowhere"
        elif lower.startswith("javascript:"):
            problem = "runs script, which mail clients block"
        elif not lower.startswith(("http://", "https://", "mailto:", "tel:")):
            problem = "is relative, so it cannot work outside the web site"
        if problem is not None:
            start = m.start(1) if m.group(1) is not None else m.start(2)
            line = text.count("\n", 0, start) + 1
            col = start - (text.rfind("\n", 0, start) + 1) + 1
            yield rules.make(
                "FB603",
                f'the link "{url}" {problem}',
                shown,
                Span(line, col, line, col + max(len(url), 1)),
                hint="link to a full https:// address",
            )


def _unguarded_fields(tree: nodes.Template) -> Iterator[tuple[str, int]]:
    """(field, line) for every printed merge field without a fallback or a guarding `if`."""
    yield from _walk(tree, frozenset(), frozenset())


def _assigned(node: nodes.Node) -> set[str]:
    return {n.name for n in node.find_all(nodes.Name) if n.ctx in ("store", "param")}


def _tested(test: nodes.Node) -> set[str]:
    found = [test, *test.find_all(nodes.Node)]
    names = {n.name for n in found if isinstance(n, nodes.Name) and n.ctx == "load"}
    for g in (n for n in found if isinstance(n, nodes.Getattr)):
        if isinstance(g.node, nodes.Name) and g.node.name == "lead":
            names.add(g.attr)
    return names


def _walk(
    node: nodes.Node, guarded: frozenset[str], local: frozenset[str]
) -> Iterator[tuple[str, int]]:
    if isinstance(node, nodes.If):
        inner = guarded | _tested(node.test)
        for child in node.body:
            yield from _walk(child, inner, local)
        for branch in node.elif_:
            yield from _walk(branch, guarded, local)
        for child in node.else_:
            yield from _walk(child, guarded, local)
        return
    if isinstance(node, nodes.For):
        inner_local = local | _assigned(node.target)
        yield from _walk(node.iter, guarded, local)
        for child in node.body:
            yield from _walk(child, guarded, inner_local)
        for child in node.else_:
            yield from _walk(child, guarded, local)
        return
    if isinstance(node, nodes.Macro | nodes.CallBlock):
        inner_local = local | {a.name for a in node.args}
        for child in node.body:
            yield from _walk(child, guarded, inner_local)
        return
    if isinstance(node, nodes.Assign | nodes.AssignBlock):
        return
    if isinstance(node, nodes.Output):
        for child in node.nodes:
            if not isinstance(child, nodes.TemplateData):
                yield from _printed(child, guarded, local)
        return
    for child in node.iter_child_nodes():
        yield from _walk(child, guarded, local)


def _printed(
    expr: nodes.Node, guarded: frozenset[str], local: frozenset[str]
) -> Iterator[tuple[str, int]]:
    """Fields in a printed expression, skipping those under a fallback."""
    if isinstance(expr, nodes.Filter) and expr.name in _FALLBACK_FILTERS:
        return
    if isinstance(expr, nodes.Or):
        yield from _printed(expr.right, guarded, local)
        return
    if isinstance(expr, nodes.CondExpr):
        inner = guarded | _tested(expr.test)
        yield from _printed(expr.expr1, inner, local)
        if expr.expr2 is not None:
            yield from _printed(expr.expr2, guarded, local)
        return
    if isinstance(expr, nodes.Name) and expr.ctx == "load":
        if expr.name not in guarded and expr.name not in local:
            yield expr.name, expr.lineno
        return
    if (
        isinstance(expr, nodes.Getattr)
        and isinstance(expr.node, nodes.Name)
        and expr.node.name == "lead"
    ):
        if expr.attr not in guarded and expr.attr not in local:
            yield expr.attr, expr.lineno
        return
    if isinstance(expr, nodes.Call):
        return  # a helper's result (`in_segment(…)`) is not a merge field
    for child in expr.iter_child_nodes():
        yield from _printed(child, guarded, local)


def _col_of(lines: list[str], line: int, name: str) -> int:
    if 0 < line <= len(lines):
        found = re.search(rf"\b{re.escape(name)}\b", lines[line - 1])
        if found is not None:
            return found.start() + 1
    return 1


def _first_col(text: str, line: int) -> int:
    lines = text.splitlines()
    if 0 < line <= len(lines):
        stripped = lines[line - 1]
        return len(stripped) - len(stripped.lstrip()) + 1
    return 1


def lint_compilation(compilation: Compilation, roots: Iterable[Path]) -> TemplateLint:
    """Template findings for a compiled workspace (none when it did not compile)."""
    if compilation.workspace is None:
        return TemplateLint()
    return lint_templates(compilation.workspace, roots)


def lint_paths(paths: Iterable[str | Path], config: LintConfig | None = None) -> LintResult:
    """`dsl.lint.lint_paths` and the template findings, filtered by the same configuration.

    This is what `flowbuilder lint` runs: every output format shows both."""
    targets = [Path(p) for p in paths]
    if config is None:
        config = load_config(targets[0]) if targets else LintConfig()
    compilation = compile_paths(targets)
    found = lint_compilation(compilation, targets)
    diagnostics = lint(compilation, config) + apply(found.diagnostics, config, {})
    return LintResult(
        diagnostics=sorted_diagnostics(diagnostics),
        files_checked=len(flow_files(targets)) + found.files_checked,
        sources={
            **{path: parsed.text for path, parsed in compilation.files.items()},
            **found.sources,
        },
    )
