"""flowbuilder: marketing-automation flows written as text, run by a pure interpreter."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("flowbuilder")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"
