"""The block-walking header reader: lazy card values, END found only on a card boundary."""

import io
from pathlib import Path

import pytest
from astropy.io import fits

from podisteps.errors import RawFormatError
from podisteps.io import rawheaders


def _block(*cards: str) -> bytes:
    """Card images (each padded to 80 characters) as one or more 2880-byte header blocks."""
    text = "".join(card.ljust(80) for card in cards)
    return (text + " " * (-len(text) % 2880)).encode("ascii")


def test_values_match_astropys_and_the_first_repeated_card_wins():
    hdr = fits.Header()
    hdr["NAXIS"] = (2, "a comment / with a slash")
    hdr["GAIN"] = 1.25
    hdr["FLAG"] = False
    hdr["NAME"] = "it''s/a path"
    hdr["EMPTY"] = ""
    cards = [c.image for c in hdr.cards] + [fits.Card("GAIN", 9.5).image, "END"]
    parsed = rawheaders._quick_header(_block(*cards))
    assert isinstance(parsed, rawheaders.Cards) and list(parsed) == ["NAXIS", "GAIN", "FLAG", "NAME", "EMPTY"]
    assert dict(parsed) == dict(hdr) and parsed["NAXIS"] == 2 and parsed["GAIN"] == 1.25
    assert parsed.get("FLAG") is False and parsed.get("MISSING", 7) == 7 and "MISSING" not in parsed
    with pytest.raises(KeyError):
        parsed["MISSING"]


def test_end_counts_only_on_a_card_boundary():
    # "END" closing a comment card, then a blank card: END + 77 blanks, but not a card of its own.
    fake = "COMMENT " + "x" * 69 + "END"
    text = _block("SIMPLE  =                    T", fake, "", "NAXIS   =                    0", "END")
    walked = rawheaders._header_text(io.BytesIO(text + b"\0" * 10), Path("f.fits"))
    assert walked == text and rawheaders._quick_header(walked)["NAXIS"] == 0
    with pytest.raises(RawFormatError, match=r"f\.fits: truncated FITS file \(a header ends without END\)"):
        rawheaders._header_text(io.BytesIO(_block("SIMPLE  =                    T", fake, "")), Path("f.fits"))
