"""Where things go in an HTML part: after `<body …>` (the preheader), before `</body>` (the
footer and the open pixel).

Every message is searched for both, so the usual lower-case tags are found by a plain string
search; a regular expression without a literal prefix to look for costs many times more, and
only runs when the plain search finds nothing (`<BODY>`, `</body >`).

    >>> html = "<html><BODY class=x><p>Hi</p></body ></html>"
    >>> html[body_start(html):body_end(html)]
    '<p>Hi</p>'
"""

from __future__ import annotations

import re

_BODY = re.compile(r"<body\b[^>]*>", re.I)
_BODY_END = re.compile(r"</body\s*>", re.I)


def body_start(html: str) -> int | None:
    """Where the body's content begins (after the first `<body …>` tag); None without one."""
    at = html.find("<body")
    if at >= 0 and html[at + 5 : at + 6] in (">", " ", "\t", "\n", "\r"):
        end = html.find(">", at)
        if end >= 0:
            return end + 1
    match = _BODY.search(html)
    return None if match is None else match.end()


def body_end(html: str) -> int | None:
    """Where the last `</body>` tag begins; None without one."""
    at = html.rfind("</body>")
    if at >= 0 and _BODY_END.search(html, at + 7) is None:  # nothing after it but the tail
        return at
    found = None
    for found in _BODY_END.finditer(html, max(at, 0)):  # noqa: B007 - the last match is wanted
        pass
    return None if found is None else found.start()
