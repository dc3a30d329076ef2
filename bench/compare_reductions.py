"""Compare two reductions of the same night: every final MEF's pixels, tables, WCS and header cards.

Usage::

    python bench/compare_reductions.py BEFORE AFTER [--night 20131004] [--merged-stage STAGE ...]

``BEFORE`` and ``AFTER`` are folders reduced with ``podiflow reduce`` (``out/<night>/<obsid>/<obsid>.fits``).
Pixels and table cells must be identical (NaN equal to NaN); header cards must have the same values after
two normalisations that only say where a reduction ran: the folder (``BEFORE``/``AFTER`` -> ``<root>``) and
product identities (10 hex digits in file names -> ``<id>``). Cards that record when or with which code a
file was written (:data:`TIME_CARDS`) are not compared. Exit 0 when everything matches, 1 otherwise; one
line per difference.

``--merged-stage STAGE`` compares across a change of checkpoint layout in which the per-OTA checkpoints of
``STAGE`` (``<obsid>.<OTA>.<stage>.<id>.fits``) became one per exposure (``<obsid>.<stage>.<id>.fits``): the
names of those intermediate files, in provenance cards and in the ``ASSOCIATIONS`` table, are then compared
without the OTA, and the table's rows once each (the 13 rows of one exposure's per-OTA files become one).
Only file names of intermediate products are relaxed; pixels, catalogues, WCS and every other card are not.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
from astropy.io import fits

#: Cards that say when or with which code version a file was made: allowed to differ.
TIME_CARDS = {"DATE", "IRAF-TLM", "PLVER", "PLVERSIO", "PFVERS", "CHECKSUM", "DATASUM"}
#: Product identities in file names (``workflows.base.ID_LENGTH`` hex digits) and per-input checksums.
IDENTITY_RE = re.compile(r"(?<![0-9a-f])[0-9a-f]{10}(?![0-9a-f])")


class Normaliser:
    """What two reductions may differ in: their folders (``roots``), product identities and, with ``merged``
    (:func:`merged_stages`), the OTA in the names of the merged stages' files."""

    def __init__(self, roots: tuple[str, ...], merged: re.Pattern | None = None):
        self.roots, self.merged = roots, merged

    def __call__(self, value):
        if isinstance(value, bytes):
            value = value.decode(errors="replace")
        if not isinstance(value, str):
            return value
        for root in self.roots:
            value = value.replace(root, "<root>")
        value = IDENTITY_RE.sub("<id>", value.strip())
        return self.merged.sub(r".\1.", value) if self.merged is not None else value


def merged_stages(stages) -> re.Pattern | None:
    """The pattern of per-OTA file names (``.<OTA>.<stage>.``) of ``stages`` (None without any)."""
    if not stages:
        return None
    return re.compile(r"\.\d\d\.(" + "|".join(re.escape(s) for s in stages) + r")\.")


def _cards(header: fits.Header, norm: Normaliser) -> list:
    """Comparable ``(keyword, value)`` pairs; provenance checksums (``PFSUMnnn``, ``PFID``) are identities.

    HISTORY and COMMENT count as one text each: a long path wraps onto the next card at a place that depends
    on the folder's length. With merged stages the ``ASSOCIATIONS`` table's shape (row count, row width, string
    column widths) is left to the comparison of its rows.
    """
    skip = TIME_CARDS | {"HISTORY", "COMMENT", "PFID"}
    if norm.merged is not None and header.get("EXTNAME") == "ASSOCIATIONS":
        skip = skip | {"NAXIS1", "NAXIS2"} | {k for k in header if k.startswith("TFORM")}
    cards = [(c.keyword, norm(c.value)) for c in header.cards
             if c.keyword not in skip and not c.keyword.startswith("PFSUM")]
    for key in ("HISTORY", "COMMENT"):
        text = "".join(str(c.value) for c in header.cards if c.keyword == key)
        cards.append((key, norm(text)))
    return cards


def _same_array(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind == "f":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def _distinct_rows(table, norm: Normaliser) -> list:
    """The rows of ``table`` normalised, each once, in their order."""
    rows = [tuple(norm(v) if isinstance(v, (str, bytes)) else np.asarray(v).item() for v in row) for row in table]
    return list(dict.fromkeys(rows))


def _compare_table(name: str, a, b, norm: Normaliser) -> list:
    if norm.merged is not None and name.endswith("[ASSOCIATIONS]"):
        ra, rb = _distinct_rows(a, norm), _distinct_rows(b, norm)
        return [] if ra == rb else [f"{name}: rows differ ({len(ra)} vs {len(rb)} distinct)"]
    if a.columns.names != b.columns.names or len(a) != len(b):
        return [f"{name}: columns or rows differ ({a.columns.names} x {len(a)} vs {b.columns.names} x {len(b)})"]
    out = []
    for col in a.columns.names:
        x, y = a[col], b[col]
        if np.asarray(x).dtype.kind in "SUO":
            same = [norm(u) for u in x] == [norm(v) for v in y]
        else:
            same = _same_array(x, y)
        if not same:
            out.append(f"{name}: column {col} differs")
    return out


def compare_mef(before: Path, after: Path, norm: Normaliser) -> list:
    """Differences between two final MEFs, one line each (empty: identical up to the allowed cards)."""
    out = []
    with fits.open(before) as a, fits.open(after) as b:
        names_a, names_b = [h.name for h in a], [h.name for h in b]
        if names_a != names_b:
            return [f"{after.name}: extensions {names_b} instead of {names_a}"]
        for ha, hb in zip(a, b):
            where = f"{after.name}[{ha.name}]"
            ca, cb = _cards(ha.header, norm), _cards(hb.header, norm)
            if ca != cb:
                diff = sorted(set(ca) ^ set(cb), key=str)[:6]
                out.append(f"{where}: header cards differ, e.g. {diff}")
            if isinstance(ha, fits.BinTableHDU):
                out += _compare_table(where, ha.data, hb.data, norm)
            elif not _same_array(ha.data, hb.data):
                out.append(f"{where}: pixels differ")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--night", default="20131004")
    parser.add_argument("--merged-stage", action="append", default=[], metavar="STAGE",
                        help="per-OTA checkpoints of STAGE became one per exposure (see the module docstring)")
    args = parser.parse_args(argv)
    norm = Normaliser((str(args.before.resolve()), str(args.after.resolve())), merged_stages(args.merged_stage))
    mefs = sorted((args.before / "out" / args.night).glob("*/o*.fits"))
    if not mefs:
        print(f"no final MEFs under {args.before / 'out' / args.night}")
        return 1
    problems = []
    for mef in mefs:
        twin = args.after / mef.relative_to(args.before)
        problems += compare_mef(mef, twin, norm) if twin.exists() else [f"{twin}: missing"]
    for line in problems:
        print(line)
    print(f"{len(mefs)} final MEF(s) compared: {'identical' if not problems else f'{len(problems)} difference(s)'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
