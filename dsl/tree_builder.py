"""Lark's parse-tree shaping and position propagation, done in one callback per grammar rule.

Lark builds each tree node through a chain of wrappers (filter the punctuation out, inline `_rule`
children, collapse `?rule` nodes with one child, then propagate positions), each a Python call
that looks the rule's layout up again. `tree_callbacks(rules)` precomputes each rule's layout once
and gives one function per rule that does the same in a single step. The trees, their `meta`
(`line`, `column`, `start_pos`, `end_*`, `empty` and the `container_*` positions) and the `None`
placeholders of `maybe_placeholders=True` are exactly Lark's (`tests/dsl/test_tree_builder.py`);
a tree's `data` is the rule's name as a plain `str` rather than Lark's `str` subclass `Token`.

Two shortcuts keep the common cases cheap:
- a `?rule` alternative that is one kept symbol returns that child as it is (Lark's position
  propagation would rewrite the child's container positions with the values they already hold);
- a `_rule` (always inlined into its parent) becomes an `_Inline` holder of its children, and the
  range it covers is worked out only when a parent starts or ends with it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from operator import itemgetter
from typing import Any

from lark import Token, Tree
from lark.grammar import Rule, Terminal
from lark.tree import Meta

Callback = Callable[[list[Any]], Any]

# The callback of a `?rule` alternative that is one kept symbol: its value is that child.
first_child: Callback = itemgetter(0)

_new = object.__new__


class _Inline(Tree[Token]):
    """The children of a `_rule` on their way into the parent node; never part of a parsed tree.

    `raw` keeps the symbols as matched, for the parent's positions when they are asked for.
    """

    raw: list[Any]
    _meta = None


def tree_callbacks(rules: Sequence[Rule]) -> dict[Rule, Callback]:
    """One tree-building function per rule, for Lark's LALR parser (placeholders on)."""
    return {rule: _callback(rule) for rule in rules}


def _layout(rule: Rule) -> tuple[list[tuple[int, bool, int]], int, bool]:
    """Which children stay (index, inline it, `None`s before it), `None`s after, and whether
    the rule keeps its children as they come (Lark's `maybe_create_child_filter`)."""
    expansion = rule.expansion
    empty = rule.options.empty_indices
    if empty:
        ones = "".join(str(int(b)) for b in empty).split("0")
        nones = [len(run) for run in ones]
    else:
        nones = [0] * (len(expansion) + 1)
    keep_all = rule.options.keep_all_tokens
    include: list[tuple[int, bool, int]] = []
    pending = 0
    for i, sym in enumerate(expansion):
        pending += nones[i]
        if keep_all or not (isinstance(sym, Terminal) and sym.filter_out):
            inline = not sym.is_term and sym.name.startswith("_")
            include.append((i, inline, pending))
            pending = 0
    pending += nones[len(expansion)]
    as_is = not empty and len(include) == len(expansion) and not any(x[1] for x in include)
    return include, pending, as_is


def _filter(rule: Rule) -> Callable[[list[Any]], list[Any]]:
    """Lark's child filter for the rule: keep, inline and pad the children."""
    include, trailing, as_is = _layout(rule)
    if as_is:
        return _same
    if not include and not trailing:
        return _nothing
    return _compiled_filter(tuple(include), trailing)


@cache
def _compiled_filter(
    include: tuple[tuple[int, bool, int], ...], trailing: int
) -> Callable[[list[Any]], list[Any]]:
    """The filter for one layout as straight-line code (Lark loops over the layout per node).

    For `send: "send" NAME [variants] [edge]` matched without its options it reads
    `return [c[1], None, None]`. A `_rule` child's list is taken over when nothing precedes it
    (Lark's shortcut for lists built by left recursion), so those lists grow in place.
    """
    if not any(inline for _, inline, _ in include):
        items: list[str] = []
        for i, _, nones in include:
            items += ["None"] * nones + [f"c[{i}]"]
        items += ["None"] * trailing
        body = [f"    return [{', '.join(items)}]"]
    else:
        body = []
        started = False  # whether `out` exists yet
        has_items: bool | None = False  # whether `out` holds something here (None: not known)
        for i, inline, nones in include:
            pad = ", ".join(["None"] * nones)
            if nones:
                body.append(f"    out {'+=' if started else '='} [{pad}]")
                started = has_items = True
            if not inline:
                body.append(f"    out.append(c[{i}])" if started else f"    out = [c[{i}]]")
                started = has_items = True
            elif has_items is False:
                body.append(f"    out = c[{i}].children")
                started, has_items = True, None
            elif has_items:
                body.append(f"    out += c[{i}].children")
            else:
                body.append(f"    inner = c[{i}].children")
                body.append("    if out:")
                body.append("        out += inner")
                body.append("    else:")
                body.append("        out = inner")
        if trailing:
            body.append(f"    out += [{', '.join(['None'] * trailing)}]")
        body.append("    return out")
    namespace: dict[str, Callable[[list[Any]], list[Any]]] = {}
    exec("\n".join(["def keep(c):", *body]), namespace)
    return namespace["keep"]


def _same(children: list[Any]) -> list[Any]:
    return children


def _nothing(children: list[Any]) -> list[Any]:
    return []


def _callback(rule: Rule) -> Callback:
    # The rule's name as a plain string: it is compared often, and a `Token`'s `__eq__` is Python.
    data = str.__str__(rule.alias or rule.options.template_source or rule.origin.name)
    collapse = bool(rule.options.expand1 and not rule.alias)
    as_is = _layout(rule)[2]
    if collapse and as_is and len(rule.expansion) == 1:
        return first_child
    keep = _filter(rule)
    if str(rule.origin.name).startswith("_") and not collapse:
        return _inline(data, keep)

    expansion = rule.expansion
    # Where a terminal starts or ends the rule, that token is where the node starts or ends.
    first_token = bool(expansion) and expansion[0].is_term
    last_token = bool(expansion) and expansion[-1].is_term

    def build(children: list[Any]) -> Any:
        kept = children if keep is _same else keep(children)
        if collapse and len(kept) == 1:
            return _collapsed(kept[0], children)
        node = _new(Tree)
        node.data = data
        node.children = kept
        meta: Any = _new(Meta)
        node._meta = meta
        if first_token:
            token = children[0]
            line, column, start = token.line, token.column, token.start_pos
        else:
            first = _start(children)
            if first is None:
                meta.empty = True
                return node
            line, column, start = first
        if last_token:
            token = children[-1]
            end_line, end_column, end = token.end_line, token.end_column, token.end_pos
        else:
            # the common case of `_end` spelled out: a step ends where its action ends
            last: Any = children[-1]
            inner: Any = last._meta if last.__class__ is Tree else None
            if inner is not None and not inner.empty:
                end_line = inner.container_end_line
                end_column = inner.container_end_column
                end = inner.container_end_pos
            else:
                end_line, end_column, end = _end(children)
        meta.empty = False
        meta.line = meta.container_line = line
        meta.column = meta.container_column = column
        meta.start_pos = meta.container_start_pos = start
        meta.end_line = meta.container_end_line = end_line
        meta.end_column = meta.container_end_column = end_column
        meta.end_pos = meta.container_end_pos = end
        return node

    return build


def _inline(data: str, keep: Callable[[list[Any]], list[Any]]) -> Callback:
    """The holder a `_rule` gives its parent. A parent may take the kept list over and append to
    it (Lark's left-recursion shortcut), so `raw` is never that list."""
    if keep is _nothing:  # a rule of filtered tokens only, such as a run of `_NL`

        def nothing_kept(children: list[Any]) -> _Inline:
            holder = _new(_Inline)
            holder.data = data
            holder.children = []
            holder.raw = children
            return holder

        return nothing_kept
    copy = list if keep is _same else None

    def inline(children: list[Any]) -> _Inline:
        holder = _new(_Inline)
        holder.data = data
        holder.children = keep(children)
        holder.raw = children if copy is None else copy(children)
        return holder

    return inline


def _collapsed(node: Any, children: list[Any]) -> Any:
    """A `?rule` node that is its one kept child: the child keeps its own start and end, and
    now covers what the rule matched around it (its container)."""
    if node.__class__ is not Tree:
        return node
    meta: Any = node._meta
    if meta is None:
        meta = node._meta = _new(Meta)
        meta.empty = True
    first = _start(children)
    if first is None:
        return node
    line, column, start = first
    end_line, end_column, end = _end(children)
    if not hasattr(meta, "line"):
        meta.line = line
        meta.column = column
        meta.start_pos = start
        meta.empty = False
    meta.container_line = line
    meta.container_column = column
    meta.container_start_pos = start
    if not hasattr(meta, "end_line"):
        meta.end_line = end_line
        meta.end_column = end_column
        meta.end_pos = end
        meta.empty = False
    meta.container_end_line = end_line
    meta.container_end_column = end_column
    meta.container_end_pos = end
    return node


def _start(children: list[Any]) -> tuple[int, int, int] | None:
    """Where the first non-empty child starts, inlined children included (Lark's containers).

    Iterative: a list built by left recursion nests one `_Inline` per item.
    """
    pending = [iter(children)]
    while pending:
        for child in pending[-1]:
            cls = child.__class__
            if cls is Token:
                return child.line, child.column, child.start_pos
            if cls is Tree:
                meta = child._meta
                if meta is not None and not meta.empty:
                    return meta.container_line, meta.container_column, meta.container_start_pos
            elif cls is _Inline:
                pending.append(iter(child.raw))
                break
        else:
            pending.pop()
    return None


def _end(children: list[Any]) -> tuple[int, int, int]:
    """Where the last non-empty child ends (there is one: `_start` found the first)."""
    pending = [reversed(children)]
    while pending:
        for child in pending[-1]:
            cls = child.__class__
            if cls is Token:
                return child.end_line, child.end_column, child.end_pos
            if cls is Tree:
                meta = child._meta
                if meta is not None and not meta.empty:
                    return (
                        meta.container_end_line,
                        meta.container_end_column,
                        meta.container_end_pos,
                    )
            elif cls is _Inline:
                pending.append(reversed(child.raw))
                break
        else:
            pending.pop()
    raise AssertionError("a node with a start has an end")
