"""The smallest line edits that turn one text into another, for rename and formatting results.

An editor keeps the cursor, folds and undo history of lines an edit does not touch, so the server
sends the changed runs of lines rather than the whole document. Positions are 0-based lines and
characters (code points); lines end at `\\n`.

>>> line_edits("a\\nb\\nc\\n", "a\\nB\\nc\\n")
[TextEdit(start=(1, 0), end=(2, 0), text='B\\n')]
>>> line_edits("a\\nb", "a\\nb\\n")
[TextEdit(start=(1, 0), end=(1, 1), text='b\\n')]
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass


@dataclass(frozen=True)
class TextEdit:
    """Replace the text from `start` to `end` (0-based line and character) with `text`."""

    start: tuple[int, int]
    end: tuple[int, int]
    text: str


def _lines(text: str) -> list[str]:
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def line_edits(old: str, new: str) -> list[TextEdit]:
    before, after = _lines(old), _lines(new)
    matcher = difflib.SequenceMatcher(a=before, b=after, autojunk=False)
    edits = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        end = (i2, 0)
        if i2 == len(before) and before and not before[-1].endswith("\n"):
            end = (i2 - 1, len(before[-1]))  # the last line has no newline to end at
        edits.append(TextEdit((i1, 0), end, "".join(after[j1:j2])))
    return edits


def apply_edits(text: str, edits: list[TextEdit]) -> str:
    """The text with the edits applied (they must not overlap), as an editor applies them."""
    lines = text.split("\n")
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)

    def offset(position: tuple[int, int]) -> int:
        line, char = position
        if line >= len(lines):
            return len(text)
        return min(offsets[line] + char, len(text))

    for edit in sorted(edits, key=lambda e: e.start, reverse=True):
        text = text[: offset(edit.start)] + edit.text + text[offset(edit.end) :]
    return text
