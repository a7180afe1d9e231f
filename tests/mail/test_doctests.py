"""The examples in the email modules' docstrings hold."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "compliance",
    "guard",
    "inbound",
    "markup",
    "mime",
    "outbox",
    "pace",
    "personalize",
    "preferences",
    "relay",
    "signing",
    "smtp",
    "templates",
    "textify",
    "tracking",
]


@pytest.mark.parametrize("name", MODULES)
def test_the_docstring_examples_hold(name: str) -> None:
    module = importlib.import_module(f"flowbuilder.mail.{name}")
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
