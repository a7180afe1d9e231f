"""The sender's SMTP sessions against real aiosmtpd servers, which announce PIPELINING (RFC 2920)
or not: a lot goes out in one transaction per message with the bytes aiosmtplib would send (a
pipelining server gets each transaction's commands at once, and the payload with the next
message's commands); a refusal is reset and the lot goes on; a dropped connection ends the
message under way and leaves the rest not begun; a 421 closes; a silent server times out; and a
session taken over after STARTTLS and AUTH delivers."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import Engine, select

from flowbuilder.config import Settings
from flowbuilder.mail.relay import Relay
from flowbuilder.mail.sender import Sender, SenderOptions, SendStats
from flowbuilder.mail.smtp import (
    Dropped,
    Outcome,
    Refused,
    Session,
    envelope_address,
    payload,
    read_reply,
)
from tests.mail.conftest import NOW, Box, BoxHandler, add_lead, free_port, queue, row, serving

SENDER = envelope_address("bounce+1-abc@bounces.acme.example")
T = TypeVar("T")


def message(subject: str, body: bytes = b"Hello.\r\n") -> bytes:
    return b"Subject: " + subject.encode() + b"\r\nTo: x@example.com\r\n\r\n" + body


async def session(port: int, timeout: float = 5.0, pipelining: bool = True) -> Session:
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=timeout)
    await smtp.connect()
    await smtp.ehlo()
    return Session.over(smtp, timeout, pipelining=pipelining)


async def send(
    port: int, mails: list[tuple[str, bytes]], timeout: float = 5.0, pipelining: bool = True
) -> list[Outcome]:
    s = await session(port, timeout, pipelining)
    try:
        return await s.send([(SENDER, envelope_address(to), payload(data)) for to, data in mails])
    finally:
        await s.quit()


@pytest.fixture(params=[True, False], ids=["pipelining", "one-command-at-a-time"])
def relay(request: pytest.FixtureRequest) -> Iterator[tuple[Box, int]]:
    """An aiosmtpd server that announces PIPELINING, or one that does not."""
    box = Box(pipelining=request.param)
    with serving(BoxHandler(box)) as port:
        yield box, port


def test_a_lot_goes_out_with_the_bytes_aiosmtplib_sends(relay: tuple[Box, int]) -> None:
    box, port = relay
    tricky = message("tricky", b".leading dot\r\nlone\nLF, lone\rCR\r\n..two\r\nno line end")
    mails = [("ann@example.com", message("one")), ("bob@example.com", tricky)]
    outcomes = asyncio.run(send(port, mails))
    assert outcomes == [(250, "OK queued"), (250, "OK queued")]
    ours = [(e.rcpt_tos, e.original_content) for e in box.messages]
    box.messages.clear()

    async def theirs() -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await smtp.connect()
        for to, data in mails:
            await smtp.sendmail("bounce+1-abc@bounces.acme.example", [to], data)
        await smtp.quit()

    asyncio.run(theirs())
    assert ours == [(e.rcpt_tos, e.original_content) for e in box.messages]
    assert [e.mail_from for e in box.messages] == ["bounce+1-abc@bounces.acme.example"] * 2


def test_a_refused_recipient_is_reset_and_the_lot_goes_on(relay: tuple[Box, int]) -> None:
    box, port = relay
    box.refuse["gone@example.org"] = "550 5.1.1 No such user"
    box.refuse["busy@example.net"] = "451 4.7.1 Try again later"
    outcomes = asyncio.run(
        send(
            port,
            [
                ("ann@example.com", message("1")),
                ("gone@example.org", message("2")),
                ("busy@example.net", message("3")),
                ("bob@example.com", message("4")),
            ],
        )
    )
    assert outcomes[0] == outcomes[3] == (250, "OK queued")
    refused = outcomes[1:3]
    assert all(isinstance(r, Refused) and r.stage == "rcpt" for r in refused)
    assert [(r.code, r.message) for r in refused] == [  # type: ignore[union-attr]
        (550, "5.1.1 No such user"),
        (451, "4.7.1 Try again later"),
    ]
    assert [e.rcpt_tos for e in box.messages] == [["ann@example.com"], ["bob@example.com"]]


def test_a_refused_sender_is_reset_and_the_lot_goes_on(relay: tuple[Box, int]) -> None:
    """A refused MAIL FROM is the message's outcome; the RCPT TO and DATA a pipelining client
    sent with it are refused in turn (no transaction) and only read."""
    box, port = relay
    box.refuse_mail = "451 4.3.0 Try again"
    first, second = asyncio.run(
        send(port, [("ann@example.com", message("1")), ("bob@example.com", message("2"))])
    )
    for outcome in (first, second):
        assert isinstance(outcome, Refused), outcome
        assert (outcome.stage, outcome.code, outcome.message) == ("mail", 451, "4.3.0 Try again")
    box.refuse_mail = None
    assert asyncio.run(send(port, [("ann@example.com", message("3"))])) == [(250, "OK queued")]
    assert [e.rcpt_tos for e in box.messages] == [["ann@example.com"]]


def test_a_refused_payload_ends_its_transaction_and_the_lot_goes_on(
    relay: tuple[Box, int],
) -> None:
    box, port = relay
    box.refuse_data["spam@example.com"] = "554 5.7.1 Message rejected"
    outcomes = asyncio.run(
        send(
            port,
            [
                ("ann@example.com", message("1")),
                ("spam@example.com", message("2")),
                ("bob@example.com", message("3")),
            ],
        )
    )
    assert outcomes[0] == outcomes[2] == (250, "OK queued")
    refused = outcomes[1]
    assert isinstance(refused, Refused) and (refused.stage, refused.code) == ("payload", 554)
    assert [e.rcpt_tos for e in box.messages] == [["ann@example.com"], ["bob@example.com"]]


def test_a_connection_dropped_after_data_ends_the_message_and_leaves_the_rest(
    relay: tuple[Box, int],
) -> None:
    box, port = relay
    box.drop_after_data = True

    async def go() -> tuple[list[Outcome], bool]:
        s = await session(port)
        mails = [
            (SENDER, envelope_address(f"r{i}@example.com"), payload(message("x"))) for i in range(3)
        ]
        outcomes = await s.send(mails)
        return outcomes, s.is_open

    outcomes, still_open = asyncio.run(go())
    first, *rest = outcomes
    assert isinstance(first, Dropped) and first.stage == "payload" and first.after_data
    assert rest == [None, None] and not still_open


class Closing(BoxHandler):
    """421 at RCPT for one address: the server says it closes the channel."""

    async def handle_RCPT(self, server, session, envelope, address, options):  # type: ignore[no-untyped-def]
        if address == "shut@example.com":
            return "421 4.3.2 Shutting down"
        return await super().handle_RCPT(server, session, envelope, address, options)


@pytest.mark.parametrize("pipelining", [True, False])
def test_a_421_ends_the_session_and_leaves_the_rest_not_begun(pipelining: bool) -> None:
    box = Box(pipelining=pipelining)
    port = free_port()
    controller = Controller(Closing(box), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        outcomes = asyncio.run(
            send(
                port,
                [
                    ("ann@example.com", message("1")),
                    ("shut@example.com", message("2")),
                    ("bob@example.com", message("3")),
                ],
            )
        )
    finally:
        controller.stop()
    assert outcomes[0] == (250, "OK queued") and outcomes[2] is None
    assert isinstance(outcomes[1], Refused) and outcomes[1].code == 421
    assert len(box.messages) == 1


def test_a_server_that_stops_answering_times_out_before_data() -> None:
    async def go() -> list[Outcome]:
        writers: list[asyncio.StreamWriter] = []

        async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)
            writer.write(b"220 mute ESMTP\r\n")
            await reader.readline()  # EHLO
            writer.write(b"250-mute\r\n250 8BITMIME\r\n")
            await reader.read()  # and never a word more

        server = await asyncio.start_server(mute, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            mails = [("a@example.com", message("1")), ("b@example.com", message("2"))]
            return await send(port, mails, timeout=0.2)
        finally:
            for w in writers:
                w.close()
            server.close()
            await server.wait_closed()

    first, second = asyncio.run(go())
    assert isinstance(first, Dropped) and first.stage == "mail" and not first.after_data
    assert "no reply within 0.2 s" in str(first) and second is None


class Strict:
    """A server that announces PIPELINING (when `announce`) and answers no command of a
    transaction before it has all three (MAIL FROM, RCPT TO, DATA), and no payload but the
    last of `count` before the next message's MAIL FROM: a client that waits for each reply
    gets none."""

    def __init__(self, announce: bool, count: int) -> None:
        self.announce, self.count = announce, count
        self.payloads: list[bytes] = []
        self.writers: list[asyncio.StreamWriter] = []

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        writer.write(b"220 strict ESMTP\r\n")
        await reader.readline()  # EHLO
        writer.write(b"250-strict\r\n250 PIPELINING\r\n" if self.announce else b"250 strict\r\n")
        line = await reader.readline()
        while line.startswith(b"MAIL FROM:"):
            rest = [await reader.readline(), await reader.readline()]
            assert [c[:5] for c in rest] == [b"RCPT ", b"DATA\r"], rest
            writer.write(b"250 sender ok\r\n250 recipient ok\r\n354 go on\r\n")
            body = b""
            while (part := await reader.readline()) != b".\r\n":
                body += part
            self.payloads.append(body)
            if len(self.payloads) < self.count:
                line = await reader.readline()  # the next MAIL FROM
                writer.write(b"250 queued\r\n")
            else:
                writer.write(b"250 queued\r\n")
                line = await reader.readline()  # QUIT
        if line.startswith(b"QUIT"):
            writer.write(b"221 bye\r\n")
        writer.close()

    async def run(self, client: Callable[[int], Awaitable[T]]) -> T:
        server = await asyncio.start_server(self, "127.0.0.1", 0)
        try:
            return await client(server.sockets[0].getsockname()[1])
        finally:
            for w in self.writers:
                w.close()
            server.close()
            await server.wait_closed()


def test_a_pipelining_server_gets_each_transaction_at_once_and_the_payload_with_the_next() -> None:
    mails = [(f"r{i}@example.com", message(str(i))) for i in range(3)]
    strict = Strict(announce=True, count=3)
    outcomes = asyncio.run(strict.run(lambda port: send(port, mails, timeout=0.5)))
    assert outcomes == [(250, "queued")] * 3
    assert strict.payloads == [message(str(i)) for i in range(3)]
    for client_pipelines, announce in ((True, False), (False, True)):
        strict = Strict(announce=announce, count=3)

        async def client(port: int, pipelining: bool = client_pipelines) -> list[Outcome]:
            return await send(port, mails, timeout=0.5, pipelining=pipelining)

        first, *rest = asyncio.run(strict.run(client))
        assert isinstance(first, Dropped) and first.stage == "mail" and rest == [None, None]


def test_the_relay_url_can_turn_pipelining_off(store: Engine, settings: Settings) -> None:
    """`?pipelining=no`: the sender waits for each reply even where PIPELINING is announced."""
    queue(store, add_lead(store, "ann@example.com", {}), "welcome_email")

    async def drain(url: str) -> SendStats:
        options = SenderOptions(timeout=0.5, max_attempts=1)
        sender = Sender(store, settings, Relay.parse(url), clock=lambda: NOW, options=options)
        try:
            return await sender.drain()
        finally:
            await sender.close()

    turned_off = Strict(announce=True, count=1)
    stats = asyncio.run(
        turned_off.run(lambda port: drain(f"smtp://127.0.0.1:{port}?pipelining=no"))
    )
    assert (stats.sent, turned_off.payloads) == (0, [])


def test_replies_are_read_whole_across_reads() -> None:
    buffer = bytearray(b"250-acme.example\r\n250-SIZE 1000")
    assert read_reply(buffer) is None
    buffer += b"\r\n250 8BITMIME\r\n354 go"
    assert read_reply(buffer) == (250, "acme.example\nSIZE 1000\n8BITMIME")
    assert read_reply(buffer) is None and bytes(buffer) == b"354 go"
    with pytest.raises(ValueError, match="not an SMTP reply"):
        read_reply(bytearray(b"hello there\r\n"))


def test_payload_and_envelope_addresses_match_aiosmtplib() -> None:
    from aiosmtplib.email import quote_address
    from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings

    for data in (b"a\r\nb", b".a\nb\r\r\n.", b"x\r\n", b"\r\n.\r\n", b"plain\r\nlines\r\n"):
        expected = PERIOD_REGEX.sub(b"..", normalize_message_line_endings(data)) + b".\r\n"
        assert payload(data) == expected
    for address in ("ann@example.com", "Ann <ann@example.com>", "o'neil+x@example.com"):
        assert envelope_address(address) == quote_address(address).encode("ascii")


# -- STARTTLS and AUTH: the session is taken over from aiosmtplib once they are done ------------


@pytest.fixture
def tls_files(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    yield tmp_path / "cert.pem", tmp_path / "key.pem"


def test_the_sender_takes_over_sessions_opened_with_starttls_and_auth(
    tls_files: tuple[Path, Path], store: Engine, settings: Settings
) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*tls_files)
    logins: list[bytes] = []

    def authenticator(server, session, envelope, mechanism, auth_data):  # type: ignore[no-untyped-def]
        assert isinstance(auth_data, LoginPassword)
        logins.append(auth_data.login)
        return AuthResult(success=auth_data.password == b"secret")

    box = Box()
    port = free_port()
    controller = Controller(
        BoxHandler(box),
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        authenticator=authenticator,
    )
    controller.start()
    ids = [
        queue(store, add_lead(store, f"r{i}@example.com", {}), "welcome_email") for i in range(3)
    ]
    relay = Relay.parse(f"smtp://mailer:secret@127.0.0.1:{port}?starttls=yes&verify=no")

    async def go() -> SendStats:
        sender = Sender(store, settings, relay, clock=lambda: NOW)
        try:
            return await sender.drain()
        finally:
            await sender.close()

    try:
        stats = asyncio.run(go())
    finally:
        controller.stop()
    assert stats.sent == 3 and {row(store, i).state for i in ids} == {"sent"}
    assert logins and set(logins) == {b"mailer"}
    assert sorted(e.rcpt_tos[0] for e in box.messages) == [f"r{i}@example.com" for i in range(3)]


def test_quit_returns_once_a_tls_connection_is_closed(tls_files: tuple[Path, Path]) -> None:
    """Closing a TLS connection takes an exchange with the server: `quit` waits for it, so no
    socket is left open when the event loop ends."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*tls_files)
    port = free_port()
    controller = Controller(BoxHandler(Box()), hostname="127.0.0.1", port=port, tls_context=context)
    controller.start()

    async def go() -> tuple[bool, bool]:
        client = ssl.create_default_context()
        client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, tls_context=client)
        await smtp.connect()  # STARTTLS, as the server offers it
        s = Session.over(smtp, 5.0)
        assert s.transport is not None and s.transport.get_extra_info("sslcontext") is not None
        await s.quit()
        return s.transport is None, s.is_open

    try:
        gone, still_open = asyncio.run(go())
    finally:
        controller.stop()
    assert gone and not still_open


def test_a_connection_lost_or_silent_at_data_is_dropped_before_the_message_went_out() -> None:
    """Before the 354 the payload has not left (RFC 5321 §3.3): such a drop is not `after_data`."""

    async def go(silent: bool) -> list[Outcome]:
        writers: list[asyncio.StreamWriter] = []

        async def at_data(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)
            writer.write(b"220 rude ESMTP\r\n")
            while line := await reader.readline():
                if line[:4].upper() == b"EHLO":
                    writer.write(b"250-rude\r\n250 8BITMIME\r\n")
                elif line[:4].upper() == b"DATA":
                    if silent:
                        await reader.read()
                    break
                else:
                    writer.write(b"250 OK\r\n")
            writer.close()

        server = await asyncio.start_server(at_data, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            mails = [("a@example.com", message("1")), ("b@example.com", message("2"))]
            return await send(port, mails, timeout=0.3)
        finally:
            for w in writers:
                w.close()
            server.close()
            await server.wait_closed()

    for silent in (False, True):
        first, second = asyncio.run(go(silent))
        assert isinstance(first, Dropped) and first.stage == "data", first
        assert not first.after_data and second is None


def test_envelope_addresses_that_are_not_ascii() -> None:
    from flowbuilder.mail.smtp import NeedsSmtpUtf8

    assert envelope_address("user@bücher.example") == b"<user@xn--bcher-kva.example>"
    assert envelope_address("지민@한국.kr", utf8=True) == "<지민@xn--3e0b707e.kr>".encode()
    with pytest.raises(NeedsSmtpUtf8, match="non-ASCII local part and the relay does not offer"):
        envelope_address("지민@한국.kr")
    with pytest.raises(ValueError, match="not an address"):
        envelope_address("지민@", utf8=True)


def test_the_built_in_sink_announces_pipelining_and_captures_pipelined_mail(store: Engine) -> None:
    from flowbuilder.mail.sink import SinkHandler, serve
    from flowbuilder.store.schema import CapturedMessage

    async def go() -> tuple[bool, list[Outcome]]:
        server = await serve(SinkHandler(store, clock=lambda: NOW), "127.0.0.1", 0)
        try:
            s = await session(server.sockets[0].getsockname()[1])
            mails = [(f"r{i}@example.com", message(f"m{i}")) for i in range(3)]
            outcomes = await s.send([(SENDER, envelope_address(t), payload(d)) for t, d in mails])
            await s.quit()
            return s.pipelining, outcomes
        finally:
            server.close()
            await server.wait_closed()

    pipelining, outcomes = asyncio.run(go())
    assert pipelining and outcomes == [(250, "OK captured")] * 3
    with store.connect() as conn:
        captured = conn.execute(
            select(CapturedMessage.rcpt_tos, CapturedMessage.subject).order_by(CapturedMessage.id)
        ).all()
    assert [(list(r), s) for r, s in captured] == [
        ([f"r{i}@example.com"], f"m{i}") for i in range(3)
    ]
