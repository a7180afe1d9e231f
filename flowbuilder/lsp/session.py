"""What the language server knows: the open documents and the analysis of each workspace.

A file's workspace is the folder it is in, widened upwards while the folder above holds `.flow`
files too — the folder `flowbuilder lint FOLDER` would be given. Every `.flow` file under it is read
(an open document's unsaved text wins over the file on disk), compiled and linted as one, with the
lint settings of the nearest `pyproject.toml`: the same diagnostics as the command line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from lark import Token, Tree

from dsl.compile import compile_files, flow_files
from dsl.complete import recovered_tree
from dsl.diagnostics import Diagnostic
from dsl.lint import lint
from dsl.lint.config import ConfigError, LintConfig, load_config
from dsl.parse import ParsedFile, parse_tree
from flowbuilder.lsp.symbols import Index


def workspace_root(path: Path, boundary: Path | None = None) -> Path:
    """The workspace folder of a .flow file (never above `boundary`, the editor's folder)."""
    folder = path.parent
    while folder.parent != folder and folder != boundary:
        above = folder.parent
        if boundary is not None and not above.is_relative_to(boundary):
            break
        if not any(p.is_file() for p in above.glob("*.flow")):
            break
        folder = above
    return folder


@dataclass
class _Parsed:
    """One file's parse, kept while its text is the same."""

    text: str
    parsed: ParsedFile
    tree: Tree[Token] | None


@dataclass
class Analysis:
    """One workspace compiled and linted: diagnostics per file, the trees, the names."""

    root: Path | None
    files: dict[Path, ParsedFile]
    diagnostics: dict[Path, list[Diagnostic]]
    trees: dict[Path, Tree[Token]]
    index: Index
    config_problem: str | None = None

    def parsed(self, path: Path) -> ParsedFile | None:
        return self.files.get(path)


@dataclass
class Session:
    """Open documents (path -> text) and cached parses and analyses."""

    base: Path | None = None
    open: dict[Path, str] = field(default_factory=dict)
    _parses: dict[Path, _Parsed] = field(default_factory=dict)
    _analyses: dict[Path | None, Analysis] = field(default_factory=dict)
    # The last tree of each file that parsed, for names while a block is still open and unclosed.
    _last_tree: dict[Path, Tree[Token]] = field(default_factory=dict)

    def label(self, path: Path) -> str:
        """How diagnostics name a file: relative to the editor's folder, as the CLI run there would."""
        if self.base is not None and path.is_relative_to(self.base):
            return os.path.relpath(path, self.base)
        return str(path)

    def set_text(self, path: Path, text: str) -> None:
        self.open[path] = text
        self.changed()

    def close(self, path: Path) -> None:
        self.open.pop(path, None)
        self.changed()

    def changed(self) -> None:
        """Something changed (a document, a file on disk): analyse again when next asked."""
        self._analyses.clear()

    def text(self, path: Path) -> str | None:
        if path in self.open:
            return self.open[path]
        try:
            return path.read_bytes().decode("utf-8", "replace")
        except OSError:
            return None

    def root_of(self, path: Path) -> Path | None:
        if path in self.open and not path.is_absolute():
            return None
        return workspace_root(path, self.base)

    def _members(self, root: Path | None, path: Path) -> list[Path]:
        if root is None:
            return [path]
        on_disk = [p.resolve() for p in flow_files([root])] if root.is_dir() else []
        unsaved = [p for p in self.open if p.is_relative_to(root) and p not in on_disk]
        return sorted(set(on_disk) | set(unsaved) | {path})

    def _parse(self, path: Path) -> _Parsed | None:
        if path in self.open:
            text: str | None = self.open[path]
            source: str | bytes | None = text
        else:
            try:
                source = path.read_bytes()
            except OSError:
                return None
            text = source.decode("utf-8", "replace")
        assert text is not None and source is not None
        cached = self._parses.get(path)
        if cached is not None and cached.text == text:
            return cached
        parsed = parse_tree(source, self.label(path))
        tree = parsed.tree if parsed.tree is not None else recovered_tree(parsed.text or text)
        if tree is not None:
            self._last_tree[path] = tree
        entry = _Parsed(text, parsed, tree)
        self._parses[path] = entry
        return entry

    def analyse(self, path: Path) -> Analysis:
        """The analysis of the workspace `path` belongs to (cached until something changes)."""
        root = self.root_of(path)
        cached = self._analyses.get(root)
        if cached is not None and path in cached.files:
            return cached
        members = self._members(root, path)
        parses = {p: e for p in members if (e := self._parse(p)) is not None}
        compilation = compile_files([e.parsed for e in parses.values()])
        config = LintConfig()
        problem = None
        try:
            config = load_config(root if root is not None else Path.cwd())
        except ConfigError as exc:
            problem = str(exc)
        found = lint(compilation, config)
        by_label = {self.label(p): p for p in parses}
        diagnostics: dict[Path, list[Diagnostic]] = {p: [] for p in parses}
        for d in found:
            target = by_label.get(d.path)
            if target is not None:
                diagnostics[target].append(d)
        trees = {
            p: tree
            for p, e in parses.items()
            if (tree := e.tree if e.tree is not None else self._last_tree.get(p)) is not None
        }
        index = Index.build({self.label(p): t for p, t in trees.items()})
        analysis = Analysis(
            root,
            {p: e.parsed for p, e in parses.items()},
            diagnostics,
            trees,
            index,
            problem,
        )
        self._analyses[root] = analysis
        return analysis

    def path_of(self, label: str) -> Path:
        """The file a diagnostic or an index entry names."""
        candidate = Path(label)
        if not candidate.is_absolute() and self.base is not None:
            candidate = self.base / candidate
        return candidate
