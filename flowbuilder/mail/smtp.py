"""Mail transactions over an open SMTP session, answered from the protocol's own callbacks.

aiosmtplib opens the session — the connection, TLS or STARTTLS, EHLO (HELO where EHLO is
refused), AUTH — and `Session.over` then takes over its transport. Each transaction (MAIL FROM,
RCPT TO, DATA, the payload) runs as a small state machine: a reply is read in `data_received`
and the next command written there and then, the next message's MAIL FROM included, and one
future tells how each message of the lot ended. aiosmtplib spends a future, a timer and two
turns of the event loop on every command: sending the bench's messages to a local server took
it about 190 µs of CPU a message, against 55 here.

A server that announces PIPELINING (RFC 2920), as production relays do, gets a transaction's
MAIL FROM, RCPT TO and DATA in one write, and once it asks for the payload (354), the payload
with the next message's three commands: one round trip a message instead of four. Every reply
is still read, in order, and the first refusal is the message's outcome. A server that does not
announce it gets each command once the last one's reply came (RFC 5321 §4.2). The payload is
sent as aiosmtplib sends it (CRLF line ends, a final CRLF, leading dots doubled, the `.` line).

    >>> envelope_address("bounce+7-ab12@bounces.acme.example")
    b'<bounce+7-ab12@bounces.acme.example>'
    >>> envelope_address("user@bücher.example")
    b'<user@xn--bcher-kva.example>'
    >>> payload(b"Subject: x\\r\\n\\r\\n.hidden\\nend")
    b'Subject: x\\r\\n\\r\\n..hidden\\r\\nend\\r\\n.\\r\\n'
    >>> reply = bytearray(b"250-first\\r\\n250 second\\r\\n354")
    >>> read_reply(reply), bytes(reply)
    ((250, 'first\\nsecond'), b'354')
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Literal

import aiosmtplib
from aiosmtplib.email import quote_address
from aiosmtplib.protocol import normalize_message_line_endings

from flowbuilder.mail.mime import mailbox

Stage = Literal["mail", "rcpt", "data", "payload", "rset", "command"]

_PLAIN_ADDRESS = re.compile(r"[!#-;=?-~]+@[!#-;=?-~]+")  # printable ASCII, no `<`, `>` or space
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
_LEADING_DOT = re.compile(rb"(?m)^\.")
_TRANSACTION = ("mail", "rcpt", "data", "payload")
MAX_REPLY = 8192 * 4  # as aiosmtplib: a reply longer than this is not SMTP


class Refused(Exception):
    """The server answered a step of the transaction with another code than the step needs."""

    def __init__(self, stage: Stage, code: int, message: str) -> None:
        super().__init__(f"{code} {message}".strip())
        self.stage = stage
        self.code = code
        self.message = message


class Dropped(Exception):
    """The session ended (closed by the server, timed out, or an answer that is not SMTP)
    before the reply to a step came."""

    def __init__(self, stage: Stage, why: str) -> None:
        super().__init__(why)
        self.stage = stage

    @property
    def after_data(self) -> bool:
        """The server had asked for the message (354 to DATA) and its payload was going out:
        from there on it is taken as possibly delivered (its outbox row was marked before).
        Until the 354 nothing of the message was transferred (RFC 5321 §3.3, §4.1.1.4): a
        session that ends then leaves it not sent."""
        return self.stage == "payload"


class NeedsSmtpUtf8(ValueError):
    """An address whose local part is not ASCII, for a server that does not offer SMTPUTF8."""

    def __init__(self, address: str) -> None:
        super().__init__(
            f"the address {address} has a non-ASCII local part and the relay does not offer "
            "SMTPUTF8"
        )
        self.address = address


def envelope_address(address: str, *, utf8: bool = False) -> bytes:
    """`<address>` as MAIL FROM and RCPT TO take it. Addresses the store holds are checked at
    intake (email-validator): plain ones go as they are, an internationalized domain in its
    ASCII form (IDNA), anything else is quoted as aiosmtplib quotes it. A local part that is
    not ASCII goes in UTF-8 when the server offers SMTPUTF8 (`utf8`, RFC 6531), else raises
    `NeedsSmtpUtf8`; an address that is not one raises ValueError."""
    if _PLAIN_ADDRESS.fullmatch(address):
        return b"<" + address.encode("ascii") + b">"
    if not address.isascii():
        box = mailbox(address)
        if box.utf8 and not utf8:
            raise NeedsSmtpUtf8(address)
        address = box.smtp
    quoted = quote_address(address).encode("utf-8")
    if _CONTROL.search(quoted):
        raise ValueError("an envelope address with a control character")
    return quoted


def payload(data: bytes) -> bytes:
    """The message as it goes after DATA: the bytes aiosmtplib's `data` sends."""
    # The builder writes CRLF line ends and few lines start with a dot: count before rewriting.
    crlf = data.count(b"\r\n")
    if data.count(b"\r") != crlf or data.count(b"\n") != crlf:
        data = normalize_message_line_endings(data)
    elif not data.endswith(b"\r\n"):
        data += b"\r\n"
    if data.startswith(b".") or b"\n." in data:
        data = _LEADING_DOT.sub(b"..", data)
    return data + b".\r\n"


def read_reply(buffer: bytearray) -> tuple[int, str] | None:
    """Take one whole reply (its lines joined) off the front of `buffer`; None while it is
    incomplete. Raises ValueError on a line that is not an SMTP reply."""
    start = 0
    lines: list[bytes] = []
    while True:
        end = buffer.find(b"\n", start)
        if end < 0:
            return None
        line = bytes(buffer[start : end + 1])
        start = end + 1
        lines.append(line[4:].strip(b" \t\r\n"))
        if line[3:4] != b"-":
            break
    code = line[:3]
    if len(code) != 3 or not code.isdigit():
        raise ValueError(f"not an SMTP reply: {line[:80]!r}")
    del buffer[:start]
    return int(code), b"\n".join(lines).decode("utf-8", "surrogateescape")


Outcome = tuple[int, str] | Refused | Dropped | None
"""How one message of `Session.send` ended: the reply to its payload (accepted), `Refused`,
`Dropped`, or None when it was never begun (the session ended before its turn)."""


class Session(asyncio.Protocol):
    """One SMTP session: `send` messages, one transaction after the other, and `quit` at the
    end. `timeout` bounds the wait for every reply."""

    def __init__(
        self,
        transport: asyncio.Transport,
        timeout: float,
        extensions: frozenset[str] = frozenset(),
    ) -> None:
        self.transport: asyncio.Transport | None = transport
        self.timeout = timeout
        self.extensions = extensions  # what the server announced in its EHLO reply, lower case
        self._loop = asyncio.get_running_loop()
        self._buffer = bytearray()
        self._waiter: asyncio.Future[list[Outcome]] | None = None
        self._stage: Stage = "command"
        self._messages: Sequence[tuple[bytes, bytes, bytes]] = ()
        self._outcomes: list[Outcome] = []
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._lost: asyncio.Future[None] = self._loop.create_future()
        # RFC 2920: the server announced PIPELINING, so a transaction's commands go out at once.
        self.pipelining = "pipelining" in extensions
        self._refused: Refused | None = None  # the first refusal of a pipelined transaction

    @classmethod
    def over(cls, smtp: aiosmtplib.SMTP, timeout: float, *, pipelining: bool = True) -> Session:
        """Take over the transport of `smtp`, connected and greeted (and logged in); `smtp`
        is done with and must not be used again. Commands are pipelined where the server
        announced PIPELINING, unless `pipelining` is false."""
        protocol = smtp.protocol
        transport = protocol.transport if protocol is not None else None
        if transport is None or transport.is_closing():
            raise aiosmtplib.SMTPServerDisconnected("the connection closed while opening")
        extensions = frozenset(k.lower() for k in smtp.esmtp_extensions)
        session = cls(transport, timeout, extensions)  # type: ignore[arg-type]
        session.pipelining = session.pipelining and pipelining
        transport.set_protocol(session)
        return session

    @property
    def smtputf8(self) -> bool:
        """The server offers SMTPUTF8 (RFC 6531)."""
        return "smtputf8" in self.extensions

    def envelope(self, mail_from: str, rcpt: str) -> tuple[bytes, bytes]:
        """The MAIL FROM and RCPT TO arguments of one message, as `send` takes them: with the
        SMTPUTF8 parameter (and BODY=8BITMIME where offered, as aiosmtplib does) when an address
        needs it. Raises `NeedsSmtpUtf8` when one does and the server does not offer it, and
        ValueError for an address SMTP cannot carry."""
        sender = envelope_address(mail_from, utf8=self.smtputf8)
        recipient = envelope_address(rcpt, utf8=self.smtputf8)
        if sender.isascii() and recipient.isascii():
            return sender, recipient
        eight = b" BODY=8BITMIME" if "8bitmime" in self.extensions else b""
        return sender + b" SMTPUTF8" + eight, recipient

    @property
    def is_open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def send(self, messages: Sequence[tuple[bytes, bytes, bytes]]) -> asyncio.Future[list[Outcome]]:
        """Send each message — (MAIL FROM argument, RCPT TO argument, payload), the arguments as
        `envelope` gives them and the payload as `payload` does — in its own
        transaction; the future gives the `Outcome` of each, in order.

        The next transaction begins as the reply that ends the last one is read. A refusal is
        followed by RSET, and the session goes on with the next message; a session that ends
        (dropped, timed out, a reply other than 250 to RSET or one that is not SMTP, or a 421)
        leaves the messages after the one under way not begun."""
        if self._waiter is not None:
            raise RuntimeError("one `send` at a time on an SMTP session")
        waiter = self._waiter = self._loop.create_future()
        self._messages, self._outcomes = messages, []
        if not messages:
            self._end()
        elif not self.is_open:
            self._stage = "mail"
            self._drop(Dropped("mail", "not connected"))
        else:
            self._begin()
        return waiter

    async def quit(self) -> None:
        """QUIT, and close the connection: returns once it is closed (over TLS, once the
        closing exchange is done), aborting it if that takes longer than `timeout`."""
        if self.is_open and self._waiter is None:
            self._messages, self._outcomes = (), []
            waiter = self._waiter = self._loop.create_future()
            self._stage = "command"
            self._write(b"QUIT\r\n")
            await waiter
        self.close()
        if self.transport is not None and not self._lost.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._lost), self.timeout)
            except TimeoutError:
                if self.transport is not None:
                    self.transport.abort()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # -- the state machine -----------------------------------------------------------------------

    def _begin(self) -> None:
        self._stage = "mail"
        if self.pipelining:
            self._write(self._commands(len(self._outcomes)))
        else:
            self._write(b"MAIL FROM:" + self._messages[len(self._outcomes)][0] + b"\r\n")

    def _commands(self, i: int) -> bytes:
        """Message `i`'s MAIL FROM, RCPT TO and DATA as one group (RFC 2920 §3.1)."""
        sender, recipient, _ = self._messages[i]
        return b"MAIL FROM:" + sender + b"\r\nRCPT TO:" + recipient + b"\r\nDATA\r\n"

    def _next(self, outcome: Outcome) -> None:
        self._outcomes.append(outcome)
        if len(self._outcomes) >= len(self._messages):
            self._end()
        elif self.pipelining:
            self._stage = "mail"  # its commands went out with the last payload
        else:
            self._begin()

    def _end(self) -> None:
        waiter, self._waiter = self._waiter, None
        outcomes = self._outcomes + [None] * (len(self._messages) - len(self._outcomes))
        self._messages, self._outcomes = (), []
        if waiter is not None and not waiter.done():
            waiter.set_result(outcomes)

    def _drop(self, error: Dropped) -> None:
        """The session is over: the transaction under way ends with `error`, the messages
        after it are not begun."""
        if self._waiter is not None:
            if self._stage in _TRANSACTION and len(self._outcomes) < len(self._messages):
                self._outcomes.append(self._refused or error)
            self._refused = None
            self._end()
        self.close()

    def _write(self, data: bytes) -> None:
        assert self.transport is not None
        self._deadline = self._loop.time() + self.timeout
        if self._timer is None:
            self._timer = self._loop.call_at(self._deadline, self._check_time)
        self.transport.write(data)

    def _check_time(self) -> None:
        """One timer per session, moved on lazily: a reply that came in time costs no timer."""
        self._timer = None
        if self._waiter is None:
            return
        if self._loop.time() < self._deadline:
            self._timer = self._loop.call_at(self._deadline, self._check_time)
            return
        self._drop(Dropped(self._stage, f"no reply within {self.timeout:g} s"))

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            return  # nothing was asked: an unsolicited line must not answer the next command
        buffer = self._buffer
        buffer += data
        while self._waiter is not None:
            try:
                reply = read_reply(buffer)
            except ValueError as e:
                self._drop(Dropped(self._stage, str(e)))
                break
            if reply is None:
                if len(buffer) > MAX_REPLY:
                    self._drop(Dropped(self._stage, "a reply too long to be SMTP"))
                    break
                return
            self._answer(*reply)
        buffer.clear()

    def _answer(self, code: int, message: str) -> None:
        stage = self._stage
        if self.pipelining and stage in ("mail", "rcpt", "data"):
            self._answer_group(stage, code, message)
            return
        if stage == "mail":
            if code == 250:
                self._stage = "rcpt"
                self._write(b"RCPT TO:" + self._messages[len(self._outcomes)][1] + b"\r\n")
                return
        elif stage == "rcpt":
            if code in (250, 251):
                self._stage = "data"
                self._write(b"DATA\r\n")
                return
        elif stage == "data":
            if code == 354:
                self._stage = "payload"
                self._write(self._messages[len(self._outcomes)][2])
                return
        elif stage == "payload":
            if code == 250:
                self._next((code, message))
                return
        elif stage == "rset":
            if code == 250 and len(self._outcomes) < len(self._messages):
                self._begin()
            else:
                self._end()
                if code != 250:
                    self.close()
            return
        else:  # "command": QUIT
            self._end()
            return
        # A refusal: the server keeps the session unless it says it closes it (421).
        refused = Refused(stage, code, message)
        if code == 421 or (code < 400 and stage in ("data", "payload")):
            self._outcomes.append(refused)
            self._end()
            self.close()
            return
        if self.pipelining:  # a refused payload ends its transaction; the next one is under way
            self._next(refused)
            return
        self._outcomes.append(refused)
        self._stage = "rset"
        self._write(b"RSET\r\n")

    def _answer_group(self, stage: Stage, code: int, message: str) -> None:
        """A reply to one of a pipelined transaction's commands: every one is read, and the
        first refusal is the message's outcome (RFC 2920 §3.1). Once DATA is answered with 354,
        the payload goes out with the next message's commands."""
        good = code == 250 if stage == "mail" else code in (250, 251) if stage == "rcpt" else False
        if stage == "data" and code == 354 and self._refused is None:
            i = len(self._outcomes)
            self._stage = "payload"
            data = self._messages[i][2]
            self._write(data + self._commands(i + 1) if i + 1 < len(self._messages) else data)
            return
        if not good and self._refused is None:
            self._refused = Refused(stage, code, message)
        if code == 421 or (stage == "data" and code < 400):
            # The server closes, or asked for a message it has no recipient for (or answered
            # DATA with a success that is not 354): the session cannot go on.
            self._drop(Dropped(stage, f"{code} {message}".strip()))
            return
        if stage != "data":
            self._stage = "rcpt" if stage == "mail" else "data"
            self._deadline = self._loop.time() + self.timeout  # `timeout` bounds each reply
            return
        refused, self._refused = self._refused, None
        assert refused is not None
        self._outcomes.append(refused)
        self._stage = "rset"
        self._write(b"RSET\r\n")

    def eof_received(self) -> bool:
        self._drop(Dropped(self._stage, "the server closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._drop(Dropped(self._stage, f"connection lost: {exc}" if exc else "connection lost"))
        self.transport = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._lost.done():
            self._lost.set_result(None)
