"""Conditions and values back to text, with the fewest parentheses that keep the parse tree.

The grammar drops parentheses from the tree, so the printer puts back exactly those that the
precedence ladder (lowest to highest: or < and < not < comparison < + - < * / < unary - < atom)
needs. Operators are left-associative and `and`/`or` chains are flat, so a nested right operand
(`a - (b - c)`, `a or (b or c)`) keeps its parentheses: without them the text would parse to a
different tree.
"""

from __future__ import annotations

from lark import Token, Tree

Node = Tree[Token] | Token | None

OR, AND, NOT, COMPARISON, SUM, PRODUCT, UNARY, ATOM = range(1, 9)

_LEVELS = {
    "or_test": OR,
    "and_test": AND,
    "not_test": NOT,
    "compare": COMPARISON,
    "in_test": COMPARISON,
    "not_in_test": COMPARISON,
    "string_test": COMPARISON,
    "negate": UNARY,
}

_KEYWORD_LITERALS = {"true_lit": "true", "false_lit": "false", "null_lit": "null"}
_TOKEN_LITERALS = frozenset(
    {"number_lit", "string_lit", "duration_lit", "percent_lit", "date_lit", "name"}
)


def token_text(node: Node) -> str:
    """The text of a token, or of the first token under a tree (`comp_op`, `weekday`, ...)."""
    if isinstance(node, Token):
        return str(node)
    if isinstance(node, Tree):
        for child in node.children:
            if child is not None:
                return token_text(child)
    raise ValueError(f"expected a token, found {node!r}")


def level(node: Tree[Token]) -> int:
    """Where a node stands on the precedence ladder."""
    if node.data == "arith":
        return SUM if token_text(node.children[1]) in ("+", "-") else PRODUCT
    return _LEVELS.get(str(node.data), ATOM)


def is_expression(node: Tree[Token]) -> bool:
    data = str(node.data)
    return (
        data in _LEVELS
        or data in _KEYWORD_LITERALS
        or data in _TOKEN_LITERALS
        or data in ("arith", "list_lit", "path", "call", "kwarg")
    )


def expr_text(node: Node) -> str:
    """A condition or value in canonical form: `count(click, within=30d) >= 3`."""
    if not isinstance(node, Tree):
        raise ValueError(f"expected an expression, found {node!r}")
    data = str(node.data)
    c = node.children
    if data == "or_test":
        return " or ".join(_operand(x, AND) for x in c)
    if data == "and_test":
        return " and ".join(_operand(x, NOT) for x in c)
    if data == "not_test":
        return "not " + _operand(c[0], NOT)
    if data in ("compare", "string_test"):
        return f"{_operand(c[0], SUM)} {token_text(c[1])} {_operand(c[2], SUM)}"
    if data == "in_test":
        return f"{_operand(c[0], SUM)} in {_operand(c[1], SUM)}"
    if data == "not_in_test":
        return f"{_operand(c[0], SUM)} not in {_operand(c[1], SUM)}"
    if data == "arith":
        own = level(node)
        return f"{_operand(c[0], own)} {token_text(c[1])} {_operand(c[2], own + 1)}"
    if data == "negate":
        operand = _operand(c[0], UNARY)
        return ("- " if operand.startswith("-") else "-") + operand
    if data in _TOKEN_LITERALS:
        return token_text(c[0])
    if data in _KEYWORD_LITERALS:
        return _KEYWORD_LITERALS[data]
    if data == "list_lit":
        return "[" + ", ".join(expr_text(x) for x in c if x is not None) + "]"
    if data == "path":
        return ".".join(token_text(x) for x in c)
    if data == "call":
        args = ", ".join(expr_text(x) for x in c[1:] if x is not None)
        return f"{token_text(c[0])}({args})"
    if data == "kwarg":
        return f"{token_text(c[0])}={expr_text(c[1])}"
    raise ValueError(f"`{data}` is not an expression")


def _operand(node: Node, at_least: int) -> str:
    """An operand that must stand at `at_least` on the ladder, in parentheses when it stands lower."""
    text = expr_text(node)
    assert isinstance(node, Tree)
    return text if level(node) >= at_least else f"({text})"
