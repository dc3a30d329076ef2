"""The headers of a raw OTA file, read fast by walking its 2880-byte blocks, and its structure checked.

A raw OTA file has a primary and 64 cell HDUs; checking every header of a night this way costs
about two milliseconds per file (astropy needs tens; a card's value is parsed only when read), so the night
index can check every file before anything runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from astropy.io import fits

from ..errors import RawFormatError

__all__ = ["Cards", "walk_headers", "walk_hdus", "hdu_extent", "check_extent", "check_count"]


def check_extent(path: Path, needed: int) -> None:
    """Raise :class:`RawFormatError` if ``path`` is shorter than the ``needed`` bytes its headers describe."""
    size = path.stat().st_size
    if needed > size:
        raise RawFormatError(f"{path}: truncated FITS file ({size} bytes, its headers need {needed})")


def check_count(path: Path, n: int) -> None:
    """Raise :class:`RawFormatError` if a raw OTA file has fewer than its 65 HDUs."""
    if n < 65:
        raise RawFormatError(f"{path}: only {n} HDU(s); a raw ODI OTA file has a primary and 64 cells xy00..xy77")


_BLOCK = 2880
_END_CARD = b"END" + b" " * 77
_CARD_VALUE = re.compile(r"\s*(?:'((?:[^']|'')*)'|([^/]*))")
#: One 80-character card: a value card's keyword field and value field, or (empty, empty) for any other card.
_CARD = re.compile(r"(.{8})= (.{70})|.{80}", re.DOTALL)


def _card_value(text: str):
    """The value of one header card's value field (after ``= ``): str, bool, int, float or raw text."""
    if text.lstrip().startswith("'"):
        m = _CARD_VALUE.match(text)
        if m[1] is not None:
            return m[1].replace("''", "'").rstrip()
    raw = text.partition("/")[0].strip()  # a number, T/F or raw text: up to the comment
    if raw in ("T", "F"):
        return raw == "T"
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


class Cards(Mapping):
    """``keyword -> value`` of a header's value cards, each value parsed (:func:`_card_value`) when first read.

    A raw OTA file has 64 cell headers of which a reader looks at a few cards each: parsing only those
    keeps the night index's scan cheap. Keys are in card order; a repeated keyword keeps its first value.
    """

    __slots__ = ("_fields", "_values")

    def __init__(self, fields: dict):
        self._fields = fields  # keyword -> value field text (after "= ")
        self._values = {}

    def __getitem__(self, key):
        values = self._values
        if key not in values:
            values[key] = _card_value(self._fields[key])
        return values[key]

    def get(self, key, default=None):
        """The value of ``key``, ``default`` without such a card (as ``dict.get``, without its exception)."""
        return self[key] if key in self._fields else default

    def __contains__(self, key) -> bool:
        return key in self._fields

    def __iter__(self):
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        return f"Cards({dict(self)!r})"


def _has_end_card(block: bytes) -> bool:
    """True if one of the 36 cards of a 2880-byte block is ``END``."""
    at = block.find(_END_CARD)
    while at >= 0 and at % 80:
        at = block.find(_END_CARD, at + 1)
    return at >= 0


def _header_text(fh, path: Path) -> bytes | None:
    """The next header's blocks up to its END card; None at the end of the file."""
    chunks = []
    while True:
        block = fh.read(_BLOCK)
        if not block and not chunks:
            return None
        if len(block) < _BLOCK:
            raise RawFormatError(f"{path}: truncated FITS file (a header ends without END)")
        chunks.append(block)
        if _has_end_card(block):
            return b"".join(chunks)


def _quick_header(text: bytes) -> Cards:
    """``keyword -> value`` of the value cards of a header (no comments, no long strings), parsed lazily."""
    pairs = [(key.rstrip(), value) for key, value in _CARD.findall(text.decode("ascii", errors="replace")) if value]
    fields = dict(pairs)
    if len(fields) < len(pairs):  # a repeated keyword: its first card counts
        fields = {}
        for key, value in pairs:
            fields.setdefault(key, value)
    return Cards(fields)


def _data_size(hdr) -> int:
    """Bytes of an HDU's data section, padded to whole blocks."""
    naxis = int(hdr.get("NAXIS", 0))
    n = 1
    for i in range(1, naxis + 1):
        n *= int(hdr.get(f"NAXIS{i}", 0))
    per_group = int(hdr.get("PCOUNT", 0)) + (n if naxis else 0)
    size = abs(int(hdr.get("BITPIX", 8))) // 8 * int(hdr.get("GCOUNT", 1)) * per_group
    return -(-size // _BLOCK) * _BLOCK


def _walk(path: Path, *, astropy_primary: bool = True) -> tuple[list, list, int]:
    """Headers, data offsets and the end of the last HDU's data (bytes) of a FITS file, walked block by block.

    The primary is an ``astropy.io.fits.Header`` with ``astropy_primary``, else :class:`Cards` like the others.

    Raises
    ------
    RawFormatError
        Empty, not FITS, a header without END, or a corrupt header.
    """
    if path.stat().st_size == 0:
        raise RawFormatError(f"{path}: empty file (0 bytes)")
    headers, offsets, end = [], [], 0
    with open(path, "rb", buffering=_BLOCK) as fh:  # one block per read: the rest of an HDU is skipped
        if fh.read(9) != b"SIMPLE  =":
            raise RawFormatError(f"{path}: not a readable FITS file (it does not start with SIMPLE =)")
        fh.seek(0)
        while (text := _header_text(fh, path)) is not None:
            try:
                full = astropy_primary and not headers
                hdr = fits.Header.fromstring(text.decode("ascii")) if full else _quick_header(text)
            except (ValueError, UnicodeDecodeError) as exc:
                raise RawFormatError(f"{path}: corrupt FITS header ({exc})") from None
            headers.append(hdr)
            offsets.append(fh.tell())
            end = fh.tell() + _data_size(hdr)
            fh.seek(end)
    return headers, offsets, end


def walk_hdus(path: Path) -> tuple[list, list]:
    """Every header of a FITS file and the byte offset of each HDU's data, read by walking its blocks.

    The primary is an ``astropy.io.fits.Header``; the others are :class:`Cards` (``keyword -> value`` of the
    value cards only, parsed when read). About 30 times faster than astropy for the 65 HDUs of a raw OTA file.

    Returns
    -------
    headers : list
        One per HDU, in file order.
    offsets : list of int
        Byte offset of each HDU's data section in the file.

    Raises
    ------
    RawFormatError
        Empty, not FITS, truncated, or fewer than 65 HDUs.
    """
    headers, offsets, end = _walk(path)
    check_extent(path, end)
    check_count(path, len(headers))
    return headers, offsets


def hdu_extent(path: Path) -> tuple[Cards, int, int]:
    """The primary header's values, the number of HDUs and the bytes the headers describe, of any FITS file.

    Only the headers are read (a few blocks per HDU, no astropy card parsing), so this costs well under a
    millisecond whatever the data size.

    Returns
    -------
    primary : Cards
        ``keyword -> value`` of the primary's value cards.
    n_hdus : int
    needed : int
        Bytes from the start of the file to the end of the last HDU's (padded) data.

    Raises
    ------
    RawFormatError
        Empty, not FITS, a header without END, or a corrupt header.
    """
    headers, _, end = _walk(path, astropy_primary=False)
    return headers[0], len(headers), end


def walk_headers(path: Path) -> list:
    """Every header of a FITS file (the first list of :func:`walk_hdus`).

    Raises
    ------
    RawFormatError
        Empty, not FITS, truncated, or fewer than 65 HDUs.
    """
    return walk_hdus(path)[0]
