"""Text files of unknown encoding: which encoding a file is in, and where it stops being one.

Spreadsheets export CSV in several encodings: UTF-8 (with or without a byte-order mark), UTF-16
("Unicode text"), and on Korean Windows CP949, the superset of EUC-KR. `detect` decides from the
bytes alone, in this order, and reads the whole file once (in chunks, so memory stays small) to be
sure the encoding it names decodes every byte:

1. a byte-order mark: UTF-8, UTF-16 LE/BE or UTF-32 LE/BE;
2. UTF-16 without a mark, recognised by the zero bytes of ASCII text in every other position;
3. UTF-8, when every byte decodes;
4. CP949 (EUC-KR), when every byte decodes.

A file that decodes in none raises `EncodingProblem` naming, for each encoding tried, the byte
offset, line and value of the first byte that does not decode.

    >>> import io
    >>> detect(io.BytesIO("email\\n".encode("utf-8-sig"))).name
    'UTF-8 with BOM'
    >>> detect(io.BytesIO("이메일\\n".encode("cp949"))).name
    'CP949 (EUC-KR)'
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import BinaryIO

CHUNK = 1 << 20
SAMPLE = 4096


@dataclass(frozen=True)
class Encoding:
    codec: str  # the Python codec that decodes the file (and skips its byte-order mark)
    name: str  # what people call it


UTF8 = Encoding("utf-8", "UTF-8")
UTF8_BOM = Encoding("utf-8-sig", "UTF-8 with BOM")
CP949 = Encoding("cp949", "CP949 (EUC-KR)")
_BOMS = (
    # UTF-32 first: its little-endian mark starts with UTF-16's.
    (codecs.BOM_UTF32_LE, Encoding("utf-32", "UTF-32 LE with BOM")),
    (codecs.BOM_UTF32_BE, Encoding("utf-32", "UTF-32 BE with BOM")),
    (codecs.BOM_UTF8, UTF8_BOM),
    (codecs.BOM_UTF16_LE, Encoding("utf-16", "UTF-16 LE with BOM")),
    (codecs.BOM_UTF16_BE, Encoding("utf-16", "UTF-16 BE with BOM")),
)


@dataclass(frozen=True)
class BadByte:
    """Where a file stops being text in one encoding."""

    encoding: str
    offset: int  # bytes from the start of the file, counting from 0
    line: int
    value: bytes
    reason: str

    def describe(self) -> str:
        shown = " ".join(f"0x{b:02x}" for b in self.value[:4])
        return f"byte {self.offset:,} (line {self.line}) is {shown}: {self.reason}"


class EncodingProblem(ValueError):
    """The file is not text in the encoding given, or in any encoding `detect` tries."""

    def __init__(self, message: str, bad: list[BadByte]) -> None:
        super().__init__(message)
        self.bad = bad


def codec_for(name: str) -> Encoding:
    """The encoding a person named (`--encoding euc-kr`); ValueError for an unknown name."""
    try:
        info = codecs.lookup(name)
    except LookupError:
        raise ValueError(
            f"unknown encoding `{name}`; use a name such as utf-8, utf-16, cp949 or euc-kr"
        ) from None
    if info.name == "utf-8":  # a mark at the start of a UTF-8 file is not part of its text
        return Encoding("utf-8-sig", "UTF-8")
    return Encoding(info.name, info.name.upper().replace("_", "-"))


def first_bad_byte(stream: BinaryIO, encoding: Encoding) -> BadByte | None:
    """The first byte of `stream` that does not decode in `encoding`, reading it all in chunks."""
    stream.seek(0)
    decoder = codecs.getincrementaldecoder(encoding.codec)(errors="strict")
    consumed = 0
    lines = 1
    while True:
        chunk = stream.read(CHUNK)
        final = not chunk
        pending = len(decoder.getstate()[0])
        try:
            text = decoder.decode(chunk, final=final)
        except UnicodeDecodeError as e:
            offset = consumed - pending + e.start
            before = e.object[: e.start].decode(encoding.codec, errors="replace")
            return BadByte(
                encoding.name,
                offset,
                lines + before.count("\n"),
                bytes(e.object[e.start : max(e.end, e.start + 1)]),
                str(e.reason),
            )
        lines += text.count("\n")
        consumed += len(chunk)
        if final:
            return None


def _utf16_without_bom(sample: bytes) -> Encoding | None:
    """ASCII text in UTF-16 has a zero byte in every other position."""
    pairs = len(sample) // 2
    if pairs < 2:
        return None
    even = sum(1 for i in range(0, pairs * 2, 2) if sample[i] == 0)
    odd = sum(1 for i in range(1, pairs * 2, 2) if sample[i] == 0)
    if odd >= pairs * 0.4 and even <= pairs * 0.05:
        return Encoding("utf-16-le", "UTF-16 LE")
    if even >= pairs * 0.4 and odd <= pairs * 0.05:
        return Encoding("utf-16-be", "UTF-16 BE")
    return None


def detect(stream: BinaryIO, given: str | None = None) -> Encoding:
    """The encoding of a seekable binary stream (see the module's docstring for the order).

    With `given`, only that encoding is tried. Leaves the stream at its start."""
    try:
        if given is not None:
            encoding = codec_for(given)
            bad = first_bad_byte(stream, encoding)
            if bad is not None:
                raise EncodingProblem(
                    f"it is not {encoding.name} text: {bad.describe()}; check the encoding "
                    "it was saved in",
                    [bad],
                )
            return encoding
        stream.seek(0)
        sample = stream.read(SAMPLE)
        for mark, encoding in _BOMS:
            if sample.startswith(mark):
                return _checked(stream, [encoding])
        utf16 = _utf16_without_bom(sample)
        if utf16 is not None:
            return _checked(stream, [utf16])
        return _checked(stream, [UTF8, CP949])
    finally:
        stream.seek(0)


def _checked(stream: BinaryIO, candidates: list[Encoding]) -> Encoding:
    bad: list[BadByte] = []
    for encoding in candidates:
        problem = first_bad_byte(stream, encoding)
        if problem is None:
            return encoding
        bad.append(problem)
    tried = "; ".join(f"not {b.encoding}: {b.describe()}" for b in bad)
    raise EncodingProblem(
        f"it decodes in none of the encodings tried ({tried}); save it as UTF-8 (in Excel: "
        "CSV UTF-8) or name its encoding with --encoding",
        bad,
    )
