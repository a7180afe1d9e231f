"""The sender when something goes wrong for one message or one task, against real SMTP servers
(aiosmtpd, or a raw asyncio server that misbehaves at DATA): internationalized addresses go out
(IDNA domains, SMTPUTF8) or fail alone; a connection task that dies ends the drain with its
error and leaves its rows to their lease; long outbox keys and bookkeeping errors never send a
delivered message again; a connection lost before the relay asked for the message is retried."""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import dkim
import pytest
from aiosmtpd.controller import Controller
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import Engine, select, update

from bench.fleet import free_port
from flowbuilder.config import Settings
from flowbuilder.mail import sender as sender_module
from flowbuilder.mail.relay import Relay
from flowbuilder.mail.sender import DrainError, Sender, SenderOptions, SendStats
from flowbuilder.store.schema import Event, Outbox, Suppression
from tests.mail.conftest import NOW, Box, BoxHandler, add_lead, queue, row


def drain(
    engine: Engine,
    settings: Settings,
    port: int,
    *,
    clock: Callable[[], datetime] = lambda: NOW,
    options: SenderOptions | None = None,
) -> SendStats:
    async def go() -> SendStats:
        sender = Sender(engine, settings, Relay("127.0.0.1", port), clock=clock, options=options)
        try:
            return await asyncio.wait_for(sender.drain(), 30)
        finally:
            await sender.close()

    return asyncio.run(go())


def drain_against(engine: Engine, settings: Settings, serve: Any) -> SendStats:
    """`drain` against a raw asyncio server that answers with `serve(reader, writer)`."""

    async def go() -> SendStats:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        sender = Sender(engine, settings, Relay("127.0.0.1", port), clock=lambda: NOW)
        try:
            return await asyncio.wait_for(sender.drain(), 30)
        finally:
            await sender.close()
            server.close()
            await server.wait_closed()

    return asyncio.run(go())


def transactional(engine: Engine, email: str) -> int:
    """A message no send-time rule holds (no consent needed, no quiet hours)."""
    lead = add_lead(engine, email, {}, consent=False)
    return queue(engine, lead, "ebook_delivery", flow="ebook_nurture", step="deliver")


def events(engine: Engine, type_: str) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(Event).where(Event.type == type_)).all())


def head(raw: bytes | None) -> bytes:
    assert raw is not None
    return raw.split(b"\r\n\r\n", 1)[0]


@pytest.fixture
def ascii_box() -> Iterator[tuple[Box, int]]:
    """An aiosmtpd server that does not offer SMTPUTF8 (`smtp_box` does: aiosmtpd's default)."""
    box = Box()
    port = free_port()
    controller = Controller(BoxHandler(box), hostname="127.0.0.1", port=port, enable_SMTPUTF8=False)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


# -- 1. addresses that are not ASCII -----------------------------------------------------------


def test_an_idn_domain_and_a_utf8_local_part_go_out_over_smtputf8_signed(
    store: Engine, settings: Settings, smtp_box: tuple[Box, int], tmp_path: Path
) -> None:
    """The envelope carries the domain in IDNA form; a non-ASCII local part goes with SMTPUTF8
    (and its To: header in UTF-8, RFC 6532); an ASCII one keeps an ASCII To: header. The DKIM
    signature verifies over the UTF-8 header too."""
    box, port = smtp_box  # offers SMTPUTF8 (RFC 6531)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "dkim.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    signing = settings.model_copy(
        update={
            "dkim_key": tmp_path / "dkim.pem",
            "dkim_selector": "fb2026",
            "dkim_domain": "acme.example",
        }
    )
    addresses = ["user@bücher.example", "지민@한국.kr", "ann@example.com"]
    ids = {a: queue(store, add_lead(store, a, {}), "welcome_email") for a in addresses}
    stats = drain(store, signing, port)
    assert (stats.sent, stats.failed, stats.deferred) == (3, 0, 0)
    got = {e.rcpt_tos[0]: e for e in box.messages}
    assert set(got) == {"user@xn--bcher-kva.example", "지민@xn--3e0b707e.kr", "ann@example.com"}
    assert "SMTPUTF8" in got["지민@xn--3e0b707e.kr"].mail_options
    assert "SMTPUTF8" not in got["user@xn--bcher-kva.example"].mail_options
    assert "SMTPUTF8" not in got["ann@example.com"].mail_options

    idn = head(got["user@xn--bcher-kva.example"].original_content)
    assert b"\r\nTo: user@xn--bcher-kva.example\r\n" in idn and idn.isascii()
    utf8 = got["지민@xn--3e0b707e.kr"].original_content
    assert utf8 is not None
    assert "\r\nTo: 지민@한국.kr\r\n".encode() in head(utf8)
    parsed = message_from_bytes(utf8, policy=policy.SMTPUTF8)
    assert str(parsed["To"]) == "지민@한국.kr"

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == b"fb2026._domainkey.acme.example." else None

    for envelope in box.messages:
        assert dkim.verify(envelope.original_content, dnsfunc=dns), envelope.rcpt_tos
    for address, oid in ids.items():
        r = row(store, oid)
        assert r.state == "sent" and r.recipient == address  # as the lead is stored


def test_a_utf8_local_part_fails_alone_when_the_relay_has_no_smtputf8(
    store: Engine, settings: Settings, ascii_box: tuple[Box, int]
) -> None:
    box, port = ascii_box
    korean = queue(store, add_lead(store, "지민@한국.kr", {}), "welcome_email")
    idn = queue(store, add_lead(store, "user@bücher.example", {}), "welcome_email")
    plain = queue(store, add_lead(store, "ann@example.com", {}), "welcome_email")
    stats = drain(store, settings, port)
    assert (stats.sent, stats.failed, stats.deferred, stats.unknown) == (2, 1, 0, 0)
    r = row(store, korean)
    assert r.state == "failed" and not r.uncertain
    assert "non-ASCII local part" in r.last_error and "SMTPUTF8" in r.last_error
    assert row(store, idn).state == row(store, plain).state == "sent"
    assert sorted(e.rcpt_tos[0] for e in box.messages) == [
        "ann@example.com",
        "user@xn--bcher-kva.example",
    ]
    # Not the address's fault: no bounce, no suppression; and it is not tried again.
    assert not events(store, "bounce")
    with store.connect() as conn:
        assert conn.execute(select(Suppression.email)).all() == []
    assert drain(store, settings, port).claimed == 0


# -- 2. a connection task that dies ------------------------------------------------------------


class Injected(BaseException):
    """An error no `except Exception` of the sender catches."""


@pytest.mark.parametrize("where", ["mark", "deliver"])
def test_a_connection_task_that_dies_ends_the_drain_and_its_rows_wait_for_their_lease(
    store: Engine,
    settings: Settings,
    smtp_box: tuple[Box, int],
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    """The task dies outside its guarded code: when it marks its first lot (nothing of it
    marked), or as it begins to send a lot it marked. The drain raises instead of waiting for
    that task's lot forever; the rows it held stay claimed until their lease runs out and are
    then recovered as those of any sender that died: not marked → sent again, marked →
    `unknown`. No message is lost, none goes out twice."""
    box, port = smtp_box
    names = [f"r{i}@example.com" for i in range(12)]
    ids = {name: transactional(store, name) for name in names}
    real_mark, real_deliver = Sender._mark, Sender._deliver

    def mark(self: Sender, lot: list[Any], run: Any, *, by: float | None = None) -> Any:
        if not hasattr(run, "injected"):
            run.injected = True
            raise RuntimeError("injected failure")
        return real_mark(self, lot, run, by=by)

    async def deliver(self: Sender, n: int, lot: list[Any], run: Any) -> None:
        if not hasattr(run, "injected"):
            run.injected = True
            raise Injected("injected failure")
        await real_deliver(self, n, lot, run)

    if where == "mark":
        monkeypatch.setattr(Sender, "_mark", mark)
    else:
        monkeypatch.setattr(Sender, "_deliver", deliver)
    options = SenderOptions(connections=2, lot=2, rate_per_domain=1e6, lease_seconds=60)
    with pytest.raises(DrainError, match="injected failure") as failed:
        drain(store, settings, port, options=options)
    assert isinstance(failed.value.__cause__, RuntimeError | Injected)
    monkeypatch.undo()

    first = {name: row(store, i) for name, i in ids.items()}
    assert {r.state for r in first.values()} <= {"sending", "sent", "pending"}
    held = {name for name, r in first.items() if r.state == "sending"}
    assert held  # the dead task's lot: still claimed, under its lease
    assert all(first[name].leased_until > NOW for name in held)
    marked = {name for name in held if first[name].data_started_at is not None}
    assert marked if where == "deliver" else not marked

    # Within the lease nothing is taken again; after it, the rest goes, each message once.
    assert drain(store, settings, port, clock=lambda: NOW + timedelta(seconds=30)).sent == 0
    drain(store, settings, port, clock=lambda: NOW + timedelta(minutes=10), options=options)
    states = {name: row(store, i).state for name, i in ids.items()}
    assert {name for name, state in states.items() if state == "unknown"} == marked
    assert all(states[name] == "sent" for name in names if name not in marked)
    received = sorted(e.rcpt_tos[0] for e in box.messages)
    assert received == sorted(set(names) - marked)


def within(seconds: float, run: Callable[[], Any]) -> Any:
    """`run()` in a thread of its own, failing the test if it has not ended within `seconds`
    (a drain that hangs would otherwise hang the test run)."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = run()
        except BaseException as e:  # handed to the test below
            out["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s: it hangs"
    if "error" in out:
        raise out["error"]
    return out["value"]


class FlakyEvent(asyncio.Event):
    """The journal's wake-up event, whose `failing_at`-th wait raises."""

    def __init__(self, failing_at: int) -> None:
        super().__init__()
        self.failing_at = failing_at
        self.waits = 0

    async def wait(self) -> Literal[True]:
        self.waits += 1
        if self.waits == self.failing_at:
            raise RuntimeError("injected failure at the journal's wait")
        return await super().wait()


@pytest.mark.parametrize("where", ["first write", "a wait"])
def test_a_journal_task_that_dies_ends_the_drain_and_its_rows_wait_for_their_lease(
    store: Engine,
    settings: Settings,
    smtp_box: tuple[Box, int],
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    """The task that writes marks and results dies outside its guarded write (an error that
    is no `Exception` in the write, or one at a wait): the drain raises `DrainError` instead of
    leaving the connections waiting on their marks forever, no lot whose mark was not written
    goes out, and the rows are recovered after their lease as those of a sender that died.
    No message is lost, none goes out twice."""
    box, port = smtp_box
    # 20 lots of 2: the journal waits for a next lot's mark many times before the drain ends,
    # however fast the relay answers (its first wait is before any work).
    names = [f"r{i}@example.com" for i in range(40)]
    ids = {name: transactional(store, name) for name in names}
    real_start, real_write = sender_module._Journal.start, sender_module._Journal._write

    def start(self: Any, *args: Any) -> None:
        if where == "a wait":
            self.wake = FlakyEvent(failing_at=3)
        real_start(self, *args)

    def write(self: Any, *args: Any) -> None:
        if where == "first write":
            raise Injected("injected failure in the journal's write")
        real_write(self, *args)

    monkeypatch.setattr(sender_module._Journal, "start", start)
    monkeypatch.setattr(sender_module._Journal, "_write", write)
    options = SenderOptions(connections=2, lot=2, rate_per_domain=1e6, lease_seconds=60)
    with pytest.raises(DrainError, match=r"journal task failed.*injected failure") as failed:
        within(20, lambda: drain(store, settings, port, options=options))
    assert isinstance(failed.value.__cause__, RuntimeError | Injected)
    monkeypatch.undo()

    first = {name: row(store, i) for name, i in ids.items()}
    assert {r.state for r in first.values()} <= {"sending", "sent", "pending"}
    held = {name for name, r in first.items() if r.state == "sending"}
    assert held and all(first[name].leased_until > NOW for name in held)
    if where == "first write":  # nothing was written: nothing may have gone out
        assert held == set(names) and not box.messages
        assert all(r.data_started_at is None for r in first.values())
    marked = {name for name in held if first[name].data_started_at is not None}
    recorded = {name for name, r in first.items() if r.state == "sent"}
    assert {e.rcpt_tos[0] for e in box.messages} <= recorded | marked  # none went unmarked

    # Within the lease nothing is taken again; after it, the rest goes, each message once.
    assert drain(store, settings, port, clock=lambda: NOW + timedelta(seconds=30)).sent == 0
    drain(store, settings, port, clock=lambda: NOW + timedelta(minutes=10), options=options)
    states = {name: row(store, i).state for name, i in ids.items()}
    assert {name for name, state in states.items() if state == "unknown"} == marked
    assert all(states[name] == "sent" for name in names if name not in marked)
    received = sorted(e.rcpt_tos[0] for e in box.messages)
    assert len(received) == len(set(received))  # never twice
    assert set(received) >= set(names) - marked  # never lost: sent, or unknown for review


def test_the_lease_renewal_goes_on_after_a_renewal_that_failed(
    store: Engine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed renewal (the store away for a moment) must not end the task that renews the
    leases: the rows would be taken by another sender while they are being sent."""
    renewals: list[list[int]] = []

    def flaky(self: Sender, ids: list[int], until: datetime) -> None:
        renewals.append(ids)
        if len(renewals) == 1:
            raise ConnectionError("injected: the store is away")

    monkeypatch.setattr(Sender, "_renew_now", flaky)

    async def go() -> None:
        options = SenderOptions(lease_seconds=0.06)
        sender = Sender(store, settings, Relay("127.0.0.1", 1), options=options)
        run = SimpleNamespace(in_flight={7: None})
        task = asyncio.create_task(sender._renew(run))  # type: ignore[arg-type]
        await asyncio.sleep(0.3)
        assert not task.done(), task
        task.cancel()

    asyncio.run(go())
    assert len(renewals) >= 3 and renewals[-1] == [7]


# -- 3. event keys and bookkeeping after the relay accepted --------------------------------------


def test_long_outbox_keys_record_their_delivery_and_bounce_and_never_send_twice(
    store: Engine, settings: Settings, smtp_box: tuple[Box, int]
) -> None:
    box, port = smtp_box
    box.refuse["gone@example.org"] = "550 5.1.1 No such user"
    keys = {
        "ann@example.com": "k" * 250 + "/ann1",  # 255 characters, as long as a key may be
        "bob@example.com": "k" * 250 + "/bob2",  # the same up to its last characters
        "gone@example.org": "g" * 255,
    }
    ids = {}
    for address, key in keys.items():
        oid = ids[address] = transactional(store, address)
        with store.begin() as conn:
            conn.execute(update(Outbox).where(Outbox.id == oid).values(key=key))
    stats = drain(store, settings, port)
    assert (stats.sent, stats.failed, stats.deferred) == (2, 1, 0)
    assert row(store, ids["ann@example.com"]).state == "sent"
    assert row(store, ids["bob@example.com"]).state == "sent"
    assert row(store, ids["gone@example.org"]).state == "failed"

    deliveries = events(store, "delivery")
    assert sorted(e.message_key for e in deliveries) == sorted(
        keys[a] for a in keys if "example.com" in a
    )
    assert all(len(e.idempotency_key) <= 255 for e in deliveries)
    assert len({e.idempotency_key for e in deliveries}) == 2  # unique per row
    [bounce] = events(store, "bounce")
    assert bounce.message_key == keys["gone@example.org"] and len(bounce.idempotency_key) <= 255

    assert drain(store, settings, port).claimed == 0
    assert len(box.messages) == 2


def test_a_bookkeeping_error_after_the_relay_accepted_never_sends_again(
    store: Engine, settings: Settings, smtp_box: tuple[Box, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    box, port = smtp_box
    oid = transactional(store, "ann@example.com")

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("injected bookkeeping failure")

    monkeypatch.setattr(sender_module, "mail_event", broken)
    stats = drain(store, settings, port)
    assert stats.sent == 1 and len(box.messages) == 1
    r = row(store, oid)
    assert r.state == "sent" and r.message_id
    assert drain(store, settings, port, clock=lambda: NOW + timedelta(hours=1)).claimed == 0
    assert len(box.messages) == 1


# -- 4. a connection lost at DATA, before the relay asked for the message ------------------------


async def closes_at_data(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An SMTP server that takes the envelope and hangs up on DATA, before any 354."""
    writer.write(b"220 rude ESMTP\r\n")
    while line := await reader.readline():
        command = line[:4].upper()
        if command in (b"EHLO", b"HELO"):
            writer.write(b"250-rude\r\n250 8BITMIME\r\n")
        elif command == b"DATA":
            break
        elif command == b"QUIT":
            writer.write(b"221 bye\r\n")
            break
        else:
            writer.write(b"250 OK\r\n")
        await writer.drain()
    writer.close()


def test_a_connection_lost_at_data_before_354_is_retried_not_unknown(
    store: Engine, settings: Settings
) -> None:
    oid = transactional(store, "ann@example.com")
    stats = drain_against(store, settings, closes_at_data)
    assert (stats.deferred, stats.unknown) == (1, 0)
    r = row(store, oid)
    assert r.state == "pending" and not r.uncertain and r.data_started_at is None
    assert "DATA" in r.last_error and "unknown" not in r.last_error
    assert r.next_attempt_at == NOW + timedelta(seconds=settings.send_retry_seconds)


def answers_data_with(code: bytes) -> Any:
    """An SMTP server that takes the envelope and answers DATA with `code` instead of 354,
    keeping whatever else it is sent."""
    received: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 odd ESMTP\r\n")
        while line := await reader.readline():
            received.append(line)
            command = line[:4].upper()
            if command in (b"EHLO", b"HELO"):
                writer.write(b"250-odd\r\n250 8BITMIME\r\n")
            elif command == b"DATA":
                writer.write(code + b" OK, but no 354\r\n")
            elif command == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            else:
                writer.write(b"250 OK\r\n")
            await writer.drain()
        writer.close()

    return serve, received


@pytest.mark.parametrize("code", [b"250", b"220"])
def test_a_2xx_to_data_instead_of_354_is_retried_not_unknown(
    store: Engine, settings: Settings, code: bytes
) -> None:
    """RFC 5321 allows only 354 as the positive reply to DATA: a relay that answers 2xx never
    asked for the message, whose payload did not go out. It is sent again later, not left
    `unknown` as a message that may have been delivered."""
    oid = transactional(store, "ann@example.com")
    serve, received = answers_data_with(code)
    stats = drain_against(store, settings, serve)
    assert (stats.deferred, stats.unknown) == (1, 0)
    assert not any(b"Subject:" in line for line in received)  # the payload never went out
    r = row(store, oid)
    assert r.state == "pending" and not r.uncertain and r.data_started_at is None
    assert f"DATA with {code.decode()}" in r.last_error and "instead of 354" in r.last_error
    assert r.next_attempt_at == NOW + timedelta(seconds=settings.send_retry_seconds)
