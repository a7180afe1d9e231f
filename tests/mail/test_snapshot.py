"""Template files are stored with each publication: a send renders what was published, whatever
happens to the files afterwards; a template file that is missing or does not compile refuses the
publication with the file and line, and nothing is stored. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, func, select
from typer.testing import CliRunner

from dsl.compile import compile_paths
from dsl.lint import lint
from flowbuilder.cli import app
from flowbuilder.config import Settings
from flowbuilder.mail.relay import Relay
from flowbuilder.mail.sender import Sender
from flowbuilder.publish import PublishRefused, publish
from flowbuilder.store.db import open_store
from flowbuilder.store.schema import Publication, PublishedTemplate, TemplateText
from tests.mail.conftest import NOW, Box, add_lead, queue

WORKSPACE = """\
workspace shop "Shop" {
  sender "Shop" "hello@shop.example"
  address "1 Main Street, Springfield"
  contact "help@shop.example"
}

template receipt "Receipt" {
  subject "Your receipt"
  html "templates/receipt.html"
  class transactional
}

flow orders "Orders" {
  kind transactional
  trigger event ordered

  mail: send receipt
  done: end
}
"""
RECEIPT = """<html><body>
{% include "templates/partials/greeting.html" %}
<p>Thank you for your order.</p>
<p><a href="{{ unsubscribe_url }}">Unsubscribe</a> · 1 Main Street, Springfield</p>
</body></html>
"""
GREETING = "<p>Hello {{ first_name | default('there') }},</p>\n"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "shop"
    (root / "templates" / "partials").mkdir(parents=True)
    (root / "shop.flow").write_text(WORKSPACE)
    (root / "templates" / "receipt.html").write_text(RECEIPT)
    (root / "templates" / "partials" / "greeting.html").write_text(GREETING)
    return root


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    engine = open_store(store_url)
    yield engine
    engine.dispose()


def publish_folder(engine: Engine, folder: Path) -> None:
    compilation = compile_paths([folder])
    publish(engine, compilation, lint(compilation), NOW)


def send_one(engine: Engine, settings: Settings, port: int, box: Box, n: int) -> str:
    """Queue one receipt, drain, and return the HTML the server received."""
    lead = add_lead(engine, f"buyer{n}@example.com", {"first_name": "Ann"}, consent=False)
    queue(engine, lead, "receipt", flow="orders", step="mail", n=n)

    async def go() -> None:
        sender = Sender(engine, settings, Relay("127.0.0.1", port), clock=lambda: NOW)
        try:
            stats = await sender.drain()
            assert stats.sent == 1, stats
        finally:
            await sender.close()

    asyncio.run(go())
    import email
    from email import policy

    raw = box.messages[-1].original_content
    assert isinstance(raw, bytes)
    html = email.message_from_bytes(raw, policy=policy.default).get_body(("html",))
    assert html is not None
    return str(html.get_content())  # type: ignore[attr-defined]


def counts(engine: Engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        return (
            conn.execute(select(func.count()).select_from(Publication)).scalar_one(),
            conn.execute(select(func.count()).select_from(PublishedTemplate)).scalar_one(),
            conn.execute(select(func.count()).select_from(TemplateText)).scalar_one(),
        )


def test_a_send_renders_what_was_published_until_the_next_publish(
    engine: Engine, folder: Path, settings: Settings, smtp_box: tuple[Box, int]
) -> None:
    box, port = smtp_box
    elsewhere = settings.model_copy(update={"workspace": None})  # nothing read from disk
    publish_folder(engine, folder)
    assert counts(engine) == (1, 2, 2)  # the receipt and the partial it includes
    (folder / "templates" / "partials" / "greeting.html").write_text(
        "<p>Howdy {{ first_name }}</p>"
    )
    assert "Hello Ann," in send_one(engine, elsewhere, port, box, 1)

    # Only a template file changed: publishing stores a new publication with the new file.
    publish_folder(engine, folder)
    assert counts(engine) == (2, 4, 3)  # the unchanged receipt's text is stored once
    assert "Howdy Ann" in send_one(engine, elsewhere, port, box, 2)

    # Nothing changed: nothing is published.
    publish_folder(engine, folder)
    assert counts(engine)[0] == 2


def test_a_publication_made_before_snapshots_reads_the_files_from_the_workspace(
    engine: Engine, folder: Path, settings: Settings, smtp_box: tuple[Box, int]
) -> None:
    box, port = smtp_box
    publish_folder(engine, folder)
    with engine.begin() as conn:
        conn.execute(delete(PublishedTemplate))
    from_folder = settings.model_copy(update={"workspace": folder})
    assert "Hello Ann," in send_one(engine, from_folder, port, box, 1)


def refused(engine: Engine, folder: Path) -> list[tuple[str, str, int, str]]:
    compilation = compile_paths([folder])
    with pytest.raises(PublishRefused) as caught:
        publish(engine, compilation, lint(compilation), NOW)
    assert counts(engine) == (0, 0, 0)  # nothing stored
    return [(d.code, Path(d.path).name, d.line, d.message) for d in caught.value.diagnostics]


def test_a_missing_template_file_refuses_the_publication_at_its_declaration(
    engine: Engine, folder: Path
) -> None:
    (folder / "templates" / "receipt.html").unlink()
    [(code, file, line, message)] = refused(engine, folder)
    assert (code, file, line) == ("FB600", "shop.flow", 7)
    assert "templates/receipt.html" in message and "does not exist" in message


def test_a_template_syntax_error_refuses_the_publication_at_the_files_line(
    engine: Engine, folder: Path
) -> None:
    (folder / "templates" / "partials" / "greeting.html").write_text(
        "<p>Hello</p>\n<p>{{ first_name | default('there') }</p>\n"
    )
    [(code, file, line, message)] = refused(engine, folder)
    assert (code, file, line) == ("FB601", "greeting.html", 2)
    assert message.startswith("template syntax error")


def test_a_missing_partial_or_a_computed_one_refuses_the_publication_at_its_line(
    engine: Engine, folder: Path
) -> None:
    (folder / "templates" / "partials" / "greeting.html").unlink()
    [(code, file, line, message)] = refused(engine, folder)
    assert (code, file, line) == ("FB600", "receipt.html", 2)
    assert "templates/partials/greeting.html" in message

    (folder / "templates" / "receipt.html").write_text(
        RECEIPT.replace('"templates/partials/greeting.html"', '"templates/partials/" ~ kind')
    )
    [(code, file, line, message)] = refused(engine, folder)
    assert (code, file, line) == ("FB601", "receipt.html", 2)
    assert "named by an expression" in message


def test_the_publish_command_shows_the_template_finding_and_stores_nothing(
    folder: Path, tmp_path: Path
) -> None:
    (folder / "templates" / "receipt.html").write_text("<p>{% if x %}unclosed</p>\n")
    db = f"sqlite:///{tmp_path}/cli.db"
    result = CliRunner().invoke(app, ["publish", str(folder), "--db", db])
    assert result.exit_code == 1
    assert "receipt.html:1" in result.output and "FB601" in result.output
    assert counts(open_store(db)) == (0, 0, 0)
