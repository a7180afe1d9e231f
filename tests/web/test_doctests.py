"""The examples in the docstrings of the web app's modules hold."""

from __future__ import annotations

import doctest
from types import ModuleType

import pytest

import flowbuilder.intake_api
import flowbuilder.metrics
import flowbuilder.users
import web.app

MODULES = [flowbuilder.intake_api, flowbuilder.metrics, flowbuilder.users, web.app]


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_the_docstring_examples_hold(module: ModuleType) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
