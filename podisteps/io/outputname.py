"""The final MEF's file name (docs/formats.md, 'Output file name', ``format_filename``)."""

from __future__ import annotations

import re
from pathlib import Path

from astropy.io import fits

__all__ = ["format_filename", "output_path", "safe_component"]

_TOKEN = re.compile(r"%([A-Z0-9_-]+)")
_SPECIAL = ("OBSID", "OBJECT", "FILTER", "EXPTIME", "OBSSEQ")


def safe_component(value: str) -> str:
    """``value`` made safe as (part of) one path component: characters outside ``[A-Za-z0-9_.+-]`` become '_',
    and a value of dots only (``.``, ``..``) becomes underscores, so a header value never adds a folder level
    or leaves its folder."""
    value = re.sub(r"[^A-Za-z0-9_.+-]", "_", value)
    return "_" * len(value) if value and set(value) == {"."} else value


def _text(key: str, header: fits.Header) -> str:
    if key == "OBSSEQ":  # OBSID up to its first '.' (20131005T014745.1 -> 20131005T014745)
        return safe_component(str(header.get("OBSID", "")).strip().partition(".")[0])
    if key == "EXPTIME":
        return f"{float(header.get('EXPTIME', 0.0)):.1f}"
    return safe_component(str(header.get(key, "")).strip())


def format_filename(template: str, header: fits.Header) -> str:
    """Replace ``%OBSID``, ``%OBJECT``, ``%FILTER``, ``%EXPTIME``, ``%OBSSEQ`` and any ``%KEYWORD`` in ``template``.

    Parameters
    ----------
    template : str
        Output name, e.g. ``out/%OBJECT/%OBSID.%FILTER.fits``.
    header : astropy.io.fits.Header
        The raw primary header of the exposure.

    Returns
    -------
    str
        Every header value through :func:`safe_component` (characters outside ``[A-Za-z0-9_.+-]`` replaced
        by '_', dots-only values by underscores: no value adds or leaves a folder);
        ``%EXPTIME`` as ``%.1f`` seconds; a token is the longest of these or of the header's keywords that
        the text after '%' starts with, the rest stays literal; ``%OBSSEQ`` OBSID up to its first '.'; a keyword not in the header becomes an empty string.
    """
    def replace(match: re.Match) -> str:
        word = match.group(1)  # the longest known token or header keyword it starts with ('%OBSID_%FILTER')
        key = next((word[:n] for n in range(len(word), 0, -1) if word[:n] in _SPECIAL or word[:n] in header), word)
        return _text(key, header) + word[len(key):]

    return _TOKEN.sub(replace, template)


def output_path(name: str, *, fpack: bool) -> Path:
    """The output file for a command-line OUTPUT: a folder (or a name ending in '/') gets
    ``collectcells.fits``; ``.fits`` (``.fits.fz`` with ``fpack``) is appended when missing."""
    path = Path(name).expanduser()
    if name.endswith("/") or path.is_dir():
        path = path / "collectcells.fits"
    suffix = ".fits.fz" if fpack else ".fits"
    if fpack and path.name.endswith(".fits"):
        path = path.with_name(path.name + ".fz")
    if not path.name.endswith(suffix):
        path = path.with_name(path.name + suffix)
    return path.resolve()
