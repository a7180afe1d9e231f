"""Building one outgoing message: render, comply, guard, track, headers, MIME, DKIM.

Headers every message carries:

- `Message-ID` derived from the outbox idempotency key, so a retried message keeps its id;
- `List-Unsubscribe` with an HTTPS URL and a `mailto:`, and `List-Unsubscribe-Post:
  List-Unsubscribe=One-Click` (RFC 8058), both inside the DKIM signature when a key is set;
- `List-Id` (the template's topic, else the flow), `Feedback-ID` (flow, step, workspace) and
  `Precedence: bulk` (which also keeps out-of-office robots from answering);
- an envelope sender (the `Return-Path` the receiving server records) that names the message,
  `bounce+<id>-<mac>@<bounce domain>` (VERP), so every bounce is attributed to its message.

A `Composer` builds the messages of one template set: what all messages of a template, flow,
step and sender share (the encoded `From`, `List-Id`, `Feedback-ID` …) is worked out once, so a
message costs its render, its tokens, its checks and its bytes.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from email.utils import format_datetime, parseaddr
from functools import lru_cache
from typing import Any

from dsl import ir
from flowbuilder.mail import compliance, mime
from flowbuilder.mail.guard import check_parts, known_fields
from flowbuilder.mail.personalize import BUILT_IN_FIELDS, Identity, LeadView, Links, merge_fields
from flowbuilder.mail.sandbox import RenderError
from flowbuilder.mail.signing import SIGNED_HEADERS, DkimKey, Unsigned
from flowbuilder.mail.templates import TemplateSet
from flowbuilder.mail.tracking import Link, Tokens, Urls, add_pixel, rewrite_links

__all__ = ["SIGNED_HEADERS", "Composer", "MailConfig", "Outgoing", "Spec", "compose"]


@dataclass(frozen=True)
class MailConfig:
    """Everything message building needs that is not the template or the lead."""

    public_url: str
    secret: str
    bounce_domain: str | None = None
    reply_domain: str | None = None
    dkim: DkimKey | None = None

    @property
    def tokens(self) -> Tokens:
        return Tokens(self.secret)

    @property
    def urls(self) -> Urls:
        return Urls(self.public_url)

    def mac(self, outbox_id: int) -> str:
        mac = _verp_key(self.secret).copy()
        mac.update(f"verp:{outbox_id}".encode())
        return mac.hexdigest()[:10]

    def verp(self, outbox_id: int, sender: str) -> str:
        domain = self.bounce_domain or sender.rpartition("@")[2]
        return f"bounce+{outbox_id}-{self.mac(outbox_id)}@{domain}"

    def read_verp(self, address: str) -> int | None:
        """The outbox id a VERP address names, when its MAC is right."""
        local = address.partition("@")[0].lower()
        if not local.startswith("bounce+"):
            return None
        ident, _, mac = local.removeprefix("bounce+").partition("-")
        if not ident.isdigit() or not hmac.compare_digest(mac, self.mac(int(ident))):
            return None
        return int(ident)


@dataclass(frozen=True)
class Spec:
    """One message to build: an outbox row's facts."""

    outbox_id: int
    key: str
    template: str
    flow: str
    step: str | None = None
    subject: str | None = None
    preheader: str | None = None
    sender: str | None = None
    test: bool = False


@dataclass(frozen=True)
class Outgoing:
    """A built message, ready for SMTP once `unsigned` is None (see `Composer.sign`)."""

    outbox_id: int
    mail_from: str
    rcpt: str
    data: bytes
    message_id: str
    subject: str
    links: list[Link] = field(default_factory=list)
    # What a DKIM signature still to be made covers: (headers, body, timestamp).
    unsigned: tuple[list[tuple[str, str]], bytes, int] | None = field(
        default=None, repr=False, compare=False
    )


@lru_cache(maxsize=16)
def _verp_key(secret: str) -> hmac.HMAC:
    return hmac.new(secret.encode(), digestmod="sha256")


def message_id(key: str, domain: str) -> str:
    """`<hash@domain>`: the same outbox key always gives the same Message-ID."""
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


@dataclass(frozen=True)
class _Frame:
    """What every message of one template, flow, step and sender shares."""

    template: ir.Template
    sender_name: str
    sender_addr: str
    domain: str
    from_header: str
    mailto_domain: str
    ad: bool
    after: tuple[tuple[str, str], ...]  # the headers after List-Unsubscribe, encoded


class Composer:
    """Builds the messages of one template set with one configuration (see the module
    docstring); the sender keeps one per publication."""

    def __init__(self, templates: TemplateSet, config: MailConfig) -> None:
        self.templates = templates
        self.config = config
        self.ws = templates.ws
        self.identity = Identity.of(templates.ws)
        self.tokens = config.tokens
        self.urls = config.urls
        self._frames: dict[tuple[str, str | None, str, str | None, bool], _Frame] = {}
        self._date: tuple[datetime, str] | None = None
        self._known_base = known_fields(BUILT_IN_FIELDS, templates.ws.attributes)
        self._known_by_keys: dict[frozenset[str], frozenset[str]] = {}

    def compose(
        self,
        spec: Spec,
        lead: LeadView,
        now: datetime,
        *,
        to: str | None = None,
        settings: Mapping[str, Any] | None = None,
        sign: bool = True,
    ) -> Outgoing:
        """Build the message `spec` for `lead` (sent to `to`, default the lead's address).

        With a DKIM key configured the message is signed, unless `sign` is false: then
        `Composer.sign` signs it later (the sender does so in a worker thread, where OpenSSL
        signs RSA without holding the interpreter).

        Raises `RenderError` with the reason when the template cannot be rendered or still
        holds an unfilled tag: such a message is never sent."""
        frame = self._frame(spec)
        template = frame.template
        config, urls, tokens = self.config, self.urls, self.tokens
        reader = tokens.reader(spec.outbox_id)
        links = Links(urls.unsubscribe(reader), urls.preferences(reader))
        fields = merge_fields(
            lead,
            links,
            self.identity,
            settings=self.ws.settings if settings is None else settings,
            topic=template.topic,
        )
        rendered = self.templates.render(
            spec.template, fields, subject=spec.subject, preheader=spec.preheader
        )
        subject = compliance.ad_subject(
            rendered.subject, region=self.ws.policy.region, message_class=template.message_class
        )
        html, text = compliance.with_footer(
            rendered.html,
            rendered.text,
            self.identity,
            links.unsubscribe_url,
            links.preferences_url,
            ad=frame.ad,
        )
        check_parts(
            {
                "subject": subject,
                "preheader": rendered.preheader,
                "HTML part": html,
                "text part": text,
            },
            self._known(lead),
        )
        found: list[Link] = []
        if html is not None:
            keep = {links.unsubscribe_url, links.preferences_url}
            html, found = rewrite_links(
                html,
                lambda n: urls.click(tokens.click(spec.outbox_id, n)),
                keep.__contains__,
            )
            html = add_pixel(html, urls.open(tokens.open(spec.outbox_id)))
        mid = message_id(spec.key, frame.domain)
        recipient = to or lead.email
        try:
            rcpt = mime.mailbox(recipient)
        except ValueError as e:
            raise RenderError(f"the recipient {e}") from None
        headers = [
            ("From", frame.from_header),
            ("To", rcpt.header),
            ("Subject", mime.header_text(subject)),
            ("Date", self._date_header(now)),
            ("Message-ID", mid),
        ]
        if config.reply_domain:
            reply = f"reply+{spec.outbox_id}-{config.mac(spec.outbox_id)}@{config.reply_domain}"
            headers.append(("Reply-To", mime.address(frame.sender_name, reply)))
        headers.append(
            (
                "List-Unsubscribe",
                f"<{links.unsubscribe_url}>,\r\n <mailto:unsubscribe+{reader}@{frame.mailto_domain}?subject=unsubscribe>",
            )
        )
        headers += frame.after
        boundary = "=_fb_" + hashlib.sha256(f"{spec.key}/boundary".encode()).hexdigest()[:24]
        content, payload = mime.body(text, html, boundary)
        headers += [("MIME-Version", "1.0"), *content]
        data = mime.lines(headers, utf8=rcpt.utf8) + b"\r\n" + payload
        out = Outgoing(
            outbox_id=spec.outbox_id,
            mail_from=config.verp(spec.outbox_id, frame.sender_addr),
            rcpt=recipient,
            data=data,
            message_id=mid,
            subject=subject,
            links=found,
            unsigned=None if config.dkim is None else (headers, payload, int(now.timestamp())),
        )
        return self.sign(out) if sign else out

    def sign(self, out: Outgoing) -> Outgoing:
        """`out` with its DKIM signature on top (as it is when there is nothing to sign)."""
        if out.unsigned is None or self.config.dkim is None:
            return out
        headers, body, timestamp = out.unsigned
        signature = self.config.dkim.header(headers, body, timestamp=timestamp)
        return replace(out, data=signature + out.data, unsigned=None)

    def unsigned(self, out: Outgoing) -> Unsigned | None:
        """The DKIM header of `out` but its key operation (`DkimKey.unsigned`), None when there
        is nothing to sign: `signed(out, u.header(key.signature(u.data)))` is `sign(out)`."""
        if out.unsigned is None or self.config.dkim is None:
            return None
        headers, body, timestamp = out.unsigned
        return self.config.dkim.unsigned(headers, body, timestamp=timestamp)

    @staticmethod
    def signed(out: Outgoing, header: bytes) -> Outgoing:
        """`out` with the DKIM-Signature header line `header` on top."""
        # Made field by field: `dataclasses.replace` looks the fields up again for every message.
        return Outgoing(
            out.outbox_id,
            out.mail_from,
            out.rcpt,
            header + out.data,
            out.message_id,
            out.subject,
            out.links,
        )

    def _frame(self, spec: Spec) -> _Frame:
        key = (spec.template, spec.sender, spec.flow, spec.step, spec.test)
        frame = self._frames.get(key)
        if frame is None:
            template = self.templates.declared(spec.template)
            name, addr = _sender(spec.sender or template.sender, self.identity)
            try:
                box = mime.mailbox(addr)
            except ValueError as e:
                raise RenderError(f"the sender {e}") from None
            if box.utf8:
                raise RenderError(
                    f"the sender address `{addr}` has a non-ASCII local part; use an ASCII one"
                )
            addr = box.smtp  # an internationalized domain in its ASCII form
            domain = addr.rpartition("@")[2] or "localhost"
            label = template.topic or spec.flow
            after = [
                ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
                ("Precedence", "bulk"),
                (
                    "List-Id",
                    mime.followed_by(
                        mime.header_text(template.title or label),
                        f"<{label.replace('_', '-')}.{domain}>",
                    ),
                ),
                (
                    "Feedback-ID",
                    f"{spec.step or 'test'}:{spec.flow}:{self.ws.name or 'flowbuilder'}:flowbuilder",
                ),
            ]
            if spec.test:
                after.append(("X-Flowbuilder-Test", "yes"))
            frame = self._frames[key] = _Frame(
                template=template,
                sender_name=name,
                sender_addr=addr,
                domain=domain,
                from_header=mime.address(name, addr),
                mailto_domain=self.config.reply_domain or self.config.bounce_domain or domain,
                ad=compliance.is_ad(self.ws.policy.region, template.message_class),
                after=tuple(after),
            )
        return frame

    def _known(self, lead: LeadView) -> frozenset[str]:
        """The field names the unfilled-tag guard knows for this lead: the built-in fields, the
        declared attributes and the lead's own."""
        keys = frozenset(lead.attributes)
        known = self._known_by_keys.get(keys)
        if known is None:
            if len(self._known_by_keys) > 1024:
                self._known_by_keys.clear()
            known = self._known_by_keys[keys] = self._known_base | known_fields(keys)
        return known

    def _date_header(self, now: datetime) -> str:
        # A batch is built at one `now`: its Date header is formatted once.
        if self._date is None or self._date[0] != now:
            self._date = (now, format_datetime(now))
        return self._date[1]


def compose(
    templates: TemplateSet,
    config: MailConfig,
    spec: Spec,
    lead: LeadView,
    now: datetime,
    *,
    to: str | None = None,
    settings: Mapping[str, Any] | None = None,
) -> Outgoing:
    """Build one message (`Composer.compose`); for many, keep a `Composer`."""
    return Composer(templates, config).compose(spec, lead, now, to=to, settings=settings)


def _sender(raw: str | None, identity: Identity) -> tuple[str, str]:
    if raw:
        name, addr = parseaddr(raw)
        if "@" not in addr:
            raise RenderError(f"the sender `{raw}` is not `Name <address>`")
        return name, addr
    if not identity.sender_address:
        raise RenderError(
            'the workspace has no `sender "Name" "address"` and the template no `from`'
        )
    return identity.sender_name, identity.sender_address
