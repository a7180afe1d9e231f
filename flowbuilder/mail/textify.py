"""The plain-text part of an email, derived from its HTML when the template has no text file.

Paragraphs and headings become blocks separated by a blank line, `<br>` a line break, list items
`- ` lines, links `text (url)`; `<head>`, `<style>`, `<script>` and hidden elements (the preheader)
are left out.

A template without a text file gets its text part as a template of its own, derived once from
the HTML source (`text_template`): Jinja2 tags are set aside while the markup is converted and put
back afterwards, so a link to `{{ unsubscribe_url }}` becomes `Unsubscribe ({{ unsubscribe_url }})`
and every message renders its text part instead of converting its HTML.

    >>> html_to_text('<p>Hi <b>Ann</b></p><p><a href="https://a.example/x">Read</a></p>')
    'Hi Ann\\n\\nRead (https://a.example/x)\\n'
    >>> print(text_template('<p>Hi {{ name }}</p><a href="{{ url }}">Leave</a>'), end="")
    Hi {{ name }}
    <BLANKLINE>
    Leave ({{ url }})
"""

from __future__ import annotations

import html as html_lib
import re

_DROP = re.compile(
    r"<(head|style|script|title)\b.*?</\1\s*>|<!--.*?-->"
    r"|<(div|span|p|td|table)\b[^>]*display\s*:\s*none[^>]*>.*?</\2\s*>",
    re.I | re.S,
)
_LINK = re.compile(
    r"""<a\b[^>]*?\bhref\s*=\s*(?:"([^"]*)"|'([^']*)')[^>]*>(.*?)</a\s*>""", re.I | re.S
)
_BREAK = re.compile(r"<br\b[^>]*>", re.I)
_ITEM = re.compile(r"<li\b[^>]*>", re.I)
_BLOCK = re.compile(r"</?(p|div|h[1-6]|table|tr|ul|ol|section|blockquote|hr)\b[^>]*>", re.I)
_TAG = re.compile(r"<[^>]+>")
_SPACES = re.compile(r"[ \t\r\f\v]+")
_LINES = re.compile(r" *\n *")
_BLANKS = re.compile(r"\n{3,}")
# Jinja2 tags, set aside as `\x00<n>\x00` while a template's markup is converted.
_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
_HIDDEN = re.compile(r"\x00(\d+)\x00")


def _link(m: re.Match[str]) -> str:
    href = html_lib.unescape(m.group(1) if m.group(1) is not None else m.group(2) or "")
    text = m.group(3)
    shown = _TAG.sub("", text).strip()
    if href.startswith(("http://", "https://", "\x00")) and href != html_lib.unescape(shown):
        return f"{text} ({href})"
    return text


def html_to_text(html: str) -> str:
    text = _DROP.sub("", html)
    text = _SPACES.sub(" ", text.replace("\n", " "))
    text = _LINK.sub(_link, text)
    text = _BREAK.sub("\n", text)
    text = _ITEM.sub("\n- ", text)
    text = _BLOCK.sub("\n\n", text)
    text = html_lib.unescape(_TAG.sub("", text))
    return tidy(text)


def tidy(text: str) -> str:
    """Spaces collapsed, no space around line ends, at most one blank line, one final newline.

    Each pass runs only when the text needs it: substring tests cost far less than a regular
    expression over text that is mostly tidy already."""
    if "  " in text or "\t" in text or "\r" in text or "\f" in text or "\v" in text:
        text = _SPACES.sub(" ", text)
    if " \n" in text or "\n " in text:
        text = _LINES.sub("\n", text)
    if "\n\n\n" in text:
        text = _BLANKS.sub("\n\n", text)
    return text.strip() + "\n"


def text_template(source: str) -> str:
    """The text part's template, derived from an HTML template's source (see the module
    docstring). Its output goes through `tidy`, as `html_to_text`'s does."""
    tags: dict[str, int] = {}

    def hide(m: re.Match[str]) -> str:
        # The same tag twice is the same placeholder: `<a href="{{ u }}">{{ u }}</a>` shows once.
        return f"\x00{tags.setdefault(m.group(0), len(tags))}\x00"

    converted = html_to_text(_JINJA.sub(hide, source))
    shown = {n: tag for tag, n in tags.items()}
    return _HIDDEN.sub(lambda m: shown[int(m.group(1))], converted)
