"""What an inbound message is: a bounce, a complaint, a reply, an auto-reply, or something else.

- **Bounces** are delivery status notifications (RFC 3464, `multipart/report;
  report-type=delivery-status`): a `failed` action with a 5.x.x status is *hard* when the status
  says the address will never work (5.1.x bad mailbox or domain, 5.2.1 disabled, 5.0.0 with a
  "no such user" diagnostic), *soft* otherwise (4.x.x, a full mailbox, a policy or content block).
  `delayed` notices are only noted. flufl.bounce reads the message too, as a second opinion, and is
  the only opinion for bounces that do not follow RFC 3464 (old qmail, Exim, Postfix formats).
- **Complaints** are ARF feedback reports (RFC 5965, `report-type=feedback-report`) of type
  `abuse`, `fraud`, `virus` or `other`.
- **Replies** name one of our messages in `In-Reply-To` or `References`; **auto-replies**
  (`Auto-Submitted`, `X-Autoreply`, `Precedence: auto_reply`, out-of-office subjects in several
  languages) are not replies.

    >>> bounce_kind("5.1.1"), bounce_kind("4.2.2"), bounce_kind("5.7.1")
    ('hard', 'soft', 'soft')
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesHeaderParser

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_MSGID = re.compile(r"<[^<>\s]+@[^<>\s]+>")
_NO_SUCH_USER = re.compile(
    r"no such (user|mailbox|recipient)|user unknown|unknown user|does not exist|invalid recipient|"
    r"recipient (address )?rejected|mailbox (unavailable|not found)|account (is )?disabled|"
    r"address rejected|not a valid mailbox",
    re.I,
)
_OOO_SUBJECT = re.compile(
    r"^\s*[\[(]?\s*(out of (the )?office|automatic reply|auto[- ]?reply|autoreply|auto:|away from|"
    r"on vacation|vacation reply|abwesenheit|réponse automatique|risposta automatica|"
    r"respuesta automática|자동\s*회신|자동\s*응답|부재\s*중|부재중|不在|自動返信|自动回复)",
    re.I,
)
COMPLAINT_TYPES = frozenset({"abuse", "fraud", "virus", "other"})


def enhanced_status(text: str | None) -> str | None:
    """The first enhanced status code (`5.1.1`) in a text, if any."""
    match = _STATUS.search(text or "")
    return ".".join(match.groups()) if match else None


def bounce_kind(status: str, diagnostic: str = "") -> str:
    """`hard` when the address will never work, `soft` for everything that may pass later."""
    klass, subject, detail = (int(x) for x in status.split("."))
    if klass != 5:
        return "soft"
    if subject == 1 or (subject == 2 and detail == 1):
        return "hard"
    if subject == 0 and _NO_SUCH_USER.search(diagnostic):
        return "hard"
    return "soft"


@dataclass
class Classification:
    """What a message is, and what it says about which recipient and which of our messages."""

    kind: str  # bounce / delayed / complaint / reply / auto_reply / other
    recipient: str | None = None  # the address that bounced or complained
    status: str | None = None
    bounce: str | None = None  # hard / soft
    diagnostic: str | None = None
    feedback_type: str | None = None
    refers_to: list[str] = field(default_factory=list)  # our Message-IDs it names
    subject: str | None = None
    second_opinion: str | None = None  # flufl.bounce: permanent / temporary / none
    reason: str = ""

    def detail(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, [], "")}


def parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def _ids(value: str | None) -> list[str]:
    return _MSGID.findall(value or "")


def _original_ids(msg: Message) -> list[str]:
    """The Message-ID (and References) of the message a report quotes."""
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, Message):
                return _ids(inner.get("Message-ID"))
        if ctype in ("text/rfc822-headers", "text/rfc822-header"):
            text = part.get_payload(decode=True) or b""
            headers = email.message_from_bytes(text if isinstance(text, bytes) else b"")
            return _ids(headers.get("Message-ID"))
    return []


def _report(msg: Message, report_type: str) -> Message | None:
    for part in msg.walk():
        if part.get_content_type() == "multipart/report" and (
            str(part.get_param("report-type") or "").lower() == report_type
        ):
            return part
    return None


_DAEMON = re.compile(r"mailer-daemon|postmaster|mail delivery|mail administrator", re.I)
_FAILURE_SUBJECT = re.compile(r"fail|undeliver|returned|delivery status|not delivered", re.I)


def _looks_like_bounce(msg: Message, subject: str) -> bool:
    sender = str(msg.get("From") or "")
    return bool(_DAEMON.search(sender) or msg.get("X-Failed-Recipients")) or bool(
        _FAILURE_SUBJECT.search(subject) and str(msg.get("Return-Path") or "").strip() == "<>"
    )


def _second_opinion(raw: bytes) -> tuple[str, set[str], set[str]]:
    from flufl.bounce import all_failures

    # flufl.bounce reads headers as text, so the message is parsed from text for it.
    msg = email.message_from_string(raw.decode("utf-8", "replace"))
    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # a detector that trips on a malformed message gives no opinion
        return "none", set(), set()
    perm = {a.decode("utf-8", "replace").lower() for a in permanent}
    temp = {a.decode("utf-8", "replace").lower() for a in temporary}
    return ("permanent" if perm else "temporary" if temp else "none"), perm, temp


def _subject(raw: bytes) -> str:
    headers = BytesHeaderParser(policy=email.policy.default).parsebytes(raw)
    try:
        return str(headers.get("Subject") or "")
    except (ValueError, LookupError):  # a malformed encoded word: keep what can be read
        return str(parse(raw).get("Subject") or "")


def classify(raw: bytes) -> Classification:
    msg = parse(raw)
    subject = _subject(raw)
    dsn = _report(msg, "delivery-status")
    if dsn is not None:
        return _dsn(msg, dsn, subject, _second_opinion(raw)[0])
    arf = _report(msg, "feedback-report")
    if arf is not None:
        return _arf(msg, arf, subject)
    opinion, permanent, temporary = (
        _second_opinion(raw) if _looks_like_bounce(msg, subject) else ("none", set(), set())
    )
    if permanent or temporary:
        address = sorted(permanent or temporary)[0]
        hard = bool(permanent)
        return Classification(
            "bounce",
            recipient=address,
            status="5.0.0" if hard else "4.0.0",
            bounce="hard" if hard else "soft",
            refers_to=_original_ids(msg) or _ids(msg.get("In-Reply-To")),
            subject=subject,
            second_opinion=opinion,
            reason="a non-standard bounce, read by flufl.bounce",
        )
    refers = _ids(msg.get("In-Reply-To")) + _ids(msg.get("References"))
    auto = _auto_reply(msg, subject)
    if auto is not None:
        return Classification("auto_reply", refers_to=refers, subject=subject, reason=auto)
    if refers:
        return Classification(
            "reply",
            refers_to=refers,
            subject=subject,
            reason="In-Reply-To/References name a message",
        )
    return Classification(
        "other", subject=subject, reason="neither a report nor a reply to a known message"
    )


def _dsn(msg: Message, report: Message, subject: str, opinion: str) -> Classification:
    fields: list[Message] = []
    for part in report.walk():
        if part.get_content_type() == "message/delivery-status":
            payload = part.get_payload()
            if isinstance(payload, list):
                fields = [p for p in payload if isinstance(p, Message)]
            elif isinstance(payload, str):
                fields = [
                    email.message_from_string(b)
                    for b in re.split(r"\r?\n\r?\n", payload)
                    if b.strip()
                ]
    recipients = [f for f in fields if f.get("Action") or f.get("Final-Recipient")]
    chosen = next(
        (f for f in recipients if (f.get("Action") or "").strip().lower() == "failed"), None
    )
    chosen = chosen or (recipients[0] if recipients else None)
    refers = _original_ids(msg)
    if chosen is None:
        return Classification(
            "bounce",
            bounce="soft",
            status="4.0.0",
            refers_to=refers,
            subject=subject,
            second_opinion=opinion,
            reason="a delivery report without recipient fields",
        )
    action = (chosen.get("Action") or "failed").strip().lower()
    final = str(chosen.get("Final-Recipient") or chosen.get("Original-Recipient") or "")
    address = final.split(";", 1)[-1].strip().strip("<>").lower() or None
    diagnostic = " ".join(str(chosen.get("Diagnostic-Code") or "").split())
    status = (
        enhanced_status(str(chosen.get("Status") or "")) or enhanced_status(diagnostic) or "5.0.0"
    )
    if action in ("delayed", "delivered", "relayed", "expanded"):
        kind = "delayed" if action == "delayed" else "other"
        return Classification(
            kind,
            recipient=address,
            status=status,
            diagnostic=diagnostic,
            refers_to=refers,
            subject=subject,
            second_opinion=opinion,
            reason=f"a delivery report with Action: {action}",
        )
    bounce = bounce_kind(status, diagnostic)
    return Classification(
        "bounce",
        recipient=address,
        status=status,
        bounce=bounce,
        diagnostic=diagnostic or None,
        refers_to=refers,
        subject=subject,
        second_opinion=opinion,
        reason=f"RFC 3464 report: {action} {status}",
    )


def _arf(msg: Message, report: Message, subject: str) -> Classification:
    feedback: Message | None = None
    for part in report.walk():
        if part.get_content_type() == "message/feedback-report":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                feedback = payload[0]
            elif isinstance(payload, str):
                feedback = email.message_from_string(payload)
    ftype = str((feedback.get("Feedback-Type") if feedback else None) or "abuse").strip().lower()
    rcpt = (
        str((feedback.get("Original-Rcpt-To") if feedback else None) or "")
        .strip()
        .strip("<>")
        .lower()
    )
    kind = "complaint" if ftype in COMPLAINT_TYPES else "other"
    return Classification(
        kind,
        recipient=rcpt or None,
        feedback_type=ftype,
        refers_to=_original_ids(msg),
        subject=subject,
        reason=f"RFC 5965 feedback report of type {ftype}",
    )


def _auto_reply(msg: Message, subject: str) -> str | None:
    auto = str(msg.get("Auto-Submitted") or "").strip().lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}"
    for name in ("X-Autoreply", "X-Autorespond", "X-Auto-Reply"):
        if msg.get(name):
            return f"{name} header"
    if str(msg.get("Precedence") or "").strip().lower() in ("auto_reply", "bulk", "junk"):
        return f"Precedence: {msg.get('Precedence')}"
    if str(msg.get("X-Auto-Response-Suppress") or "").strip() and _OOO_SUBJECT.search(subject):
        return "an Exchange automatic reply"
    if _OOO_SUBJECT.search(subject):
        return "an out-of-office subject"
    return None
