"""The `lsp` command: the language server for editors, over stdio."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer


def lsp(
    log_file: Annotated[
        Path | None,
        typer.Option(
            "--log-file", help="Write the server's log here (stdout carries the protocol)."
        ),
    ] = None,
) -> None:
    """Start the language server on stdin and stdout: diagnostics, completion, hover, go to
    definition, rename and formatting for .flow files. Editors start it; see docs/editors.md."""
    from flowbuilder.lsp.server import serve

    if log_file is not None:
        logging.basicConfig(filename=log_file, level=logging.INFO)
    serve()


def register(app: typer.Typer) -> None:
    app.command()(lsp)
