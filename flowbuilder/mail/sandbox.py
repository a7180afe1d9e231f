"""The Jinja2 sandbox every email template renders in.

Templates are written by marketers, so they run in Jinja2's `ImmutableSandboxedEnvironment`
(no attribute of an object that starts with `_`, no `str.format` escapes, no mutation of lists and
dicts) with three more guards:

- **operator interception**: `+ - * / // % **` go through `call_binop`, which refuses a result
  larger than the output cap *before* computing it (`'a' * 10**9` is refused at once) and powers
  with huge results; each part of a `~` join is checked the same way;
- **an output-size cap**: rendering stops as soon as the output passes `Limits.max_output`;
- **a time limit**: every call, attribute lookup, operator and loop iteration counts against a
  deadline, so no template can loop for long even without writing anything.

A merge field with no value and no fallback is an error (`MissingField`), never an empty string:
`{{ first_name }}` for a lead without a first name refuses the message; `{{ first_name |
default('there') }}` and `{% if first_name %}` work as expected.
"""

from __future__ import annotations

import operator
import re
import time
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2 import BaseLoader, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.runtime import Context, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment


class RenderError(Exception):
    """A template could not be rendered for a lead; the message says why and where."""

    def __init__(self, message: str, where: str | None = None) -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.reason = message
        self.where = where


class Refused(RenderError):
    """The template tried something the sandbox does not allow (too big, too slow, unsafe)."""


class MissingField(RenderError):
    """A merge field has no value for this lead and no fallback."""


@dataclass(frozen=True)
class Limits:
    """How much one render may produce and how long it may take."""

    max_output: int = 2_000_000  # characters of one rendered part
    seconds: float = 0.5
    max_power_bits: int = 4096  # the largest number `**` or `*` may produce, in bits


class _Budget:
    __slots__ = ("deadline", "limits", "steps")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.seconds
        self.steps = 0

    def step(self) -> None:
        self.steps += 1
        if self.steps & 63 == 0 and time.monotonic() > self.deadline:
            raise Refused(f"the template took longer than {self.limits.seconds:g} s to render")


_budget: ContextVar[_Budget | None] = ContextVar("flowbuilder_mail_budget", default=None)


def _step() -> None:
    budget = _budget.get()
    if budget is not None:
        budget.step()


def _limits() -> Limits:
    budget = _budget.get()
    return budget.limits if budget is not None else Limits()


class Missing(Undefined):
    """An unknown or empty merge field: false in `if`, empty in `for`, an error when printed."""

    __slots__ = ()

    def __str__(self) -> str:
        raise MissingField(
            f"the merge field `{self._undefined_name}` has no value for this lead and no fallback; "
            f"write {{{{ {self._undefined_name} | default('…') }}}}"
        )

    __html__ = __str__


_BIG_WIDTH = re.compile(r"%[-+ #0]*(\*|\d{5,})|%[-+ #0]*\d*\.(\*|\d{5,})")


def _check_size(value: Any, what: str) -> Any:
    limit = _limits().max_output
    if isinstance(value, str | list | tuple) and len(value) > limit:
        raise Refused(
            f"{what} would make {len(value):,} characters or items; the limit is {limit:,}"
        )
    return value


def _check_format(fmt: object) -> None:
    if isinstance(fmt, str) and _BIG_WIDTH.search(fmt):
        raise Refused("a %-format with a width of 10,000 or more (or `*`) is not allowed")


_BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "//": operator.floordiv,
    "%": operator.mod,
    "**": operator.pow,
}


def _length(value: Any) -> int | None:
    return len(value) if isinstance(value, str | list | tuple) else None


class MailSandbox(ImmutableSandboxedEnvironment):
    """The sandboxed environment of email templates (see the module docstring)."""

    intercepted_binops = frozenset(_BINOPS)

    def __init__(self, loader: BaseLoader | None = None, *, autoescape: bool = True) -> None:
        super().__init__(
            loader=loader,
            autoescape=autoescape,
            undefined=Missing,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            auto_reload=False,
            cache_size=1000,
        )
        # Only what templates need: no lipsum/cycler/joiner/namespace, a bounded range.
        self.globals = {"range": _bounded_range}
        self.filters["format"] = _format_filter
        for name in ("center", "indent", "wordwrap", "truncate", "replace", "join", "batch"):
            self.filters[name] = _sized(self.filters[name], name)
        self.filters["fb_bounded"] = _bounded
        self.filters["fb_part"] = _sized_part

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        # Jinja2 chains a template's globals to the environment's so later changes show; these
        # never change once the environment is made, and a plain dict is much cheaper for every
        # render context to read.
        return {**self.globals, **(d or {})}

    # -- operators ---------------------------------------------------------------------------

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _step()
        limits = _limits()
        if operator == "**":
            base, exp = left, right
            if isinstance(base, int | float) and isinstance(exp, int | float):
                bits = abs(int(base)).bit_length() * max(int(exp), 0)
                if abs(base) > 1 and (exp > 10_000 or bits > limits.max_power_bits):
                    raise Refused(f"`{base} ** {exp}` is too large a number for a template")
        elif operator == "*":
            for seq, n in ((left, right), (right, left)):
                size = _length(seq)
                if size is not None and isinstance(n, int) and size * n > limits.max_output:
                    raise Refused(
                        f"repeating a text of {size:,} characters {n:,} times would make "
                        f"{size * n:,} characters; the limit is {limits.max_output:,}"
                    )
            if (
                isinstance(left, int)
                and isinstance(right, int)
                and left.bit_length() + right.bit_length() > limits.max_power_bits
            ):
                raise Refused("the product is too large a number for a template")
        elif operator == "+":
            a, b = _length(left), _length(right)
            if a is not None and b is not None and a + b > limits.max_output:
                raise Refused(
                    f"joining would make {a + b:,} characters; the limit is {limits.max_output:,}"
                )
        elif operator == "%" and isinstance(left, str):
            _check_format(left)
        return _check_size(_BINOPS[operator](left, right), f"`{operator}`")

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _step()
        return super().call(__context, __obj, *args, **kwargs)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        raise Refused(f"`{attribute}` of a {type(obj).__name__} is not open to templates")

    def getattr(self, obj: Any, attribute: str) -> Any:
        _step()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _step()
        return super().getitem(obj, argument)

    # -- parsing: every loop iterates through `fb_bounded`, which counts against the deadline --

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(
                loop.iter, "fb_bounded", [], [], None, None, lineno=loop.lineno
            )
        # `a ~ b` is not an operator Jinja2 lets a sandbox intercept: each part is checked instead.
        for concat in tree.find_all(nodes.Concat):
            concat.nodes = [
                nodes.Filter(n, "fb_part", [], [], None, None, lineno=n.lineno)
                for n in concat.nodes
            ]
        return tree


def _sized_part(value: Any) -> Any:
    _step()
    return _check_size(value, "`~`")


def _bounded(iterable: Any) -> Iterator[Any]:
    for item in iterable if not isinstance(iterable, Undefined) else ():
        _step()
        yield item


def _bounded_range(*args: int) -> Iterator[int]:
    limit = _limits().max_output
    rng = range(*args)
    if len(rng) > limit:
        raise Refused(f"range() of {len(rng):,} numbers; the limit is {limit:,}")
    return _bounded(rng)


def _format_filter(value: Any, *args: Any, **kwargs: Any) -> str:
    _check_format(str(value))
    if args and kwargs:
        raise Refused("the format filter takes positional or keyword arguments, not both")
    return _check_size(str(value) % (kwargs or args), "the format filter")  # type: ignore[no-any-return]


def _sized(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _step()
        for v in list(args[1:]) + list(kwargs.values()):
            if isinstance(v, int) and v > _limits().max_output:
                raise Refused(f"`{name}` with {v:,} is over the limit of {_limits().max_output:,}")
        return _check_size(fn(*args, **kwargs), f"the {name} filter")

    wrapper.__name__ = name
    for attr in ("jinja_pass_arg",):
        if hasattr(fn, attr):
            setattr(wrapper, attr, getattr(fn, attr))
    return wrapper


def render_limited(render: Callable[[], Iterable[str]], limits: Limits, where: str | None) -> str:
    """Run a template's chunk generator under `limits`; sandbox errors become `RenderError`s."""
    with limited(limits):
        return collect(render, limits, where)


@contextmanager
def limited(limits: Limits) -> Iterator[None]:
    """One time budget for everything rendered inside (the parts of one message)."""
    token = _budget.set(_Budget(limits))
    try:
        yield
    finally:
        _budget.reset(token)


def collect(render: Callable[[], Iterable[str]], limits: Limits, where: str | None) -> str:
    """The output of a chunk generator, inside `limited`: capped in size, and with sandbox
    errors turned into `RenderError`s that say where."""
    size = 0
    parts: list[str] = []
    budget = _budget.get() or _Budget(limits)
    try:
        for chunk in render():
            size += len(chunk)
            if size > limits.max_output:
                raise Refused(f"the rendered text is over {limits.max_output:,} characters")
            budget.step()
            parts.append(chunk)
    except RenderError as e:
        raise type(e)(e.reason, where) from None
    except SecurityError as e:
        raise Refused(f"not allowed in a template: {e}", where) from None
    except UndefinedError as e:
        raise MissingField(str(e), where) from None
    except RecursionError:
        raise Refused("the template calls itself without end", where) from None
    except (TypeError, ValueError, ZeroDivisionError, LookupError, OverflowError) as e:
        raise RenderError(f"{type(e).__name__}: {e}", where) from None
    return "".join(parts)


def syntax_message(error: TemplateSyntaxError) -> str:
    return error.message or "template syntax error"
