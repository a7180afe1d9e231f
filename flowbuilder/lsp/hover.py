"""What a hover shows at a position, as Markdown: a lint rule's page, a name's declaration, a
function's signature, or the reference section of the construct under the cursor."""

from __future__ import annotations

import re
from pathlib import Path

from lark import Token, Tree

from dsl.complete import signature
from dsl.diagnostics import Diagnostic
from dsl.fmt import format_node
from dsl.functions import FUNCTIONS
from dsl.parse import comment_start, keywords
from flowbuilder.lsp import docs
from flowbuilder.lsp.session import Analysis
from flowbuilder.lsp.symbols import Occurrence, TemplateFile

_CODE = re.compile(r"\bFB\d{3}\b", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STEP = re.compile(r"^  [A-Za-z_][A-Za-z0-9_]*:")
_LEAD_FIELDS_DOC = "a field every lead has (see *Paths* in the language reference)"


def _word_at(line_text: str, col: int) -> tuple[str, int, int] | None:
    """The word under a 1-based column, with its 1-based start and exclusive end."""
    for match in _WORD.finditer(line_text):
        if match.start() + 1 <= col <= match.end():
            return match.group(), match.start() + 1, match.end() + 1
    return None


def _code_in_comment(line_text: str, col: int) -> str | None:
    hash_at = comment_start(line_text)
    if hash_at is None or col <= hash_at:
        return None
    for match in _CODE.finditer(line_text, hash_at):
        if match.start() + 1 <= col <= match.end():
            return match.group().upper()
    return None


def _contains(node: Tree[Token], line: int, col: int) -> bool:
    meta = node.meta
    if getattr(meta, "empty", True):
        return False
    return (meta.line, meta.column) <= (line, col) < (meta.end_line, meta.end_column)


def construct_at(tree: Tree[Token], line: int, col: int, line_text: str = "") -> str | None:
    """The innermost documented construct (a parse-tree rule) around a position.

    A statement whose rule starts later on the line, with only keywords before it, counts too: an
    inlined rule such as `trigger event …` starts at `event`, yet `trigger` belongs to it.
    """
    words = keywords()
    first_word = len(line_text) - len(line_text.lstrip()) + 1 == col
    leading: Tree[Token] | None = None
    inner: tuple[tuple[int, int], Tree[Token]] | None = None
    for node in tree.iter_subtrees():
        if str(node.data) not in docs.CONSTRUCTS or getattr(node.meta, "empty", True):
            continue
        meta = node.meta
        if _contains(node, line, col):
            size = (meta.end_line - meta.line, meta.end_pos - meta.start_pos)
            if inner is None or size < inner[0]:
                inner = (size, node)
        elif first_word and meta.line == line and meta.column > col:
            gap = line_text[col - 1 : meta.column - 1].split()
            if gap and all(w in words for w in gap) and leading is None:
                leading = node
    best = leading if leading is not None else inner[1] if inner is not None else None
    return str(best.data) if best is not None else None


def _occurrence(analysis: Analysis, occurrence: Occurrence) -> str:
    decls = analysis.index.declared(occurrence)
    where = f"{occurrence.kind} `{occurrence.name}`"
    if occurrence.kind == "attribute" and not decls:
        return f"**{where}** — {_LEAD_FIELDS_DOC}"
    if not decls:
        return f"**{where}** is not declared in this workspace"
    decl = decls[0]
    text = format_node(decl.node)
    if occurrence.kind == "flow":
        # A flow's whole text is too long for a hover: its head and its policies, up to the steps.
        lines = text.split("\n")
        first_step = next((i for i, line in enumerate(lines) if _STEP.match(line)), len(lines))
        text = "\n".join([*lines[:first_step], "  …", "}"]) if first_step < len(lines) else text
    head = f"**{where}** — {decl.occurrence.path}:{decl.occurrence.span.line}"
    body = f"{head}\n\n```flow\n{text}\n```"
    if occurrence.kind == "template":
        files = analysis.index.files_of(occurrence.name)
        listed = [f"- {f.relative}" for f in files]
        if listed:
            body += "\n\nBodies:\n" + "\n".join(listed)
    return body


def _template_file(analysis: Analysis, found: TemplateFile) -> str:
    folder = analysis.root or Path(".")
    exists = (folder / found.relative).is_file()
    state = "exists" if exists else "is missing"
    return f"**{found.relative}** — the body of template `{found.template}`; the file {state} in `{folder}`."


def hover(
    analysis: Analysis,
    path: Path,
    label: str,
    text: str,
    line: int,
    col: int,
    diagnostics: list[Diagnostic],
) -> str | None:
    """The Markdown of a hover at a 1-based position of a file (`label` is its name in the index)."""
    lines = text.split("\n")
    if not 1 <= line <= len(lines):
        return None
    line_text = lines[line - 1]
    code = _code_in_comment(line_text, col)
    if code is not None:
        return docs.lint_rule(code)
    parts: list[str] = []
    for d in diagnostics:
        if (d.span.line, d.span.col) <= (line, col) <= (d.span.end_line, d.span.end_col):
            page = docs.lint_rule(d.code)
            if page is not None and page not in parts:
                parts.append(page)
    hash_at = comment_start(line_text)
    if hash_at is not None and col > hash_at:
        return "\n\n---\n\n".join(parts) or None
    found = analysis.index.at(label, line, col)
    word = _word_at(line_text, col)
    tree = analysis.trees.get(path)
    if isinstance(found, TemplateFile):
        parts.append(_template_file(analysis, found))
    elif isinstance(found, Occurrence):
        parts.append(_occurrence(analysis, found))
    elif (
        word is not None
        and word[0] in FUNCTIONS
        and line_text[word[2] - 1 :].lstrip().startswith("(")
    ):
        fn = FUNCTIONS[word[0]]
        parts.append(f"```\n{signature(fn)}\n```\n\n{fn.doc}\n\n    {fn.example}")
    elif tree is not None and word is not None and word[0] in keywords():
        rule = construct_at(tree, line, word[1], line_text)
        section = docs.construct(rule) if rule is not None else None
        if section is not None:
            parts.append(section)
    return "\n\n---\n\n".join(parts) or None
