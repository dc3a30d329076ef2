"""Night specs simulated for ``make bench`` (written as TOML into the bench's temporary folder).

Two nights:

``podi``
    full-size pODI (13 OTAs): 3 biases, 3 odi_r dome flats and ``n_science`` odi_r exposures (300 s, 31.4 s
    apart, so the two exposures before one lie in its 600 s persistency window): the night of issue 24.
``night``
    the test instrument (pODI layout): 3 biases, 2 darks, 3 odi_r dome flats and ``n_science`` odi_r
    exposures, for the optional scheduling item.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["NIGHTS", "night_spec", "write_spec"]

_FIELD = """
[[field]]
name = "bench-field"
ra = "22:15:30.0"
dec = "+15:30:00"
"""

_CALS = ("""
[[sequence]]
type = "bias"
count = {}
""", """
[[sequence]]
type = "dark"
count = {}
exptime = 300.0
""", """
[[sequence]]
type = "dflat"
filter = "odi_r"
count = {}
""")

_SCIENCE = """
[[sequence]]
type = "object"
field = "bench-field"
filter = "odi_r"
count = {count}
exptime = 300.0
dither = "5point"
dither_step = 1.0
pointing_error = 1.0
rotator_offset = 0.2
seeing = [0.8, 0.9]
airmass = [1.10, 1.14]
"""

#: name -> (instrument, UT start, calibration frame counts (bias, dark, flat) or None, seed)
NIGHTS = {
    "podi": ("full", "2013-10-05T01:30:00", (3, 0, 3), 104),
    "night": ("test", "2013-10-05T01:30:00", (3, 2, 3), 103),
}


def night_spec(name: str, n_science: int) -> str:
    """The TOML text of bench night ``name`` with ``n_science`` science exposures.

    Parameters
    ----------
    name : str
        A key of ``NIGHTS``.
    n_science : int
        Number of odi_r science exposures (300 s, 5-point dithers).

    Returns
    -------
    str
        The night spec (docs/simulator.md).
    """
    instrument, start, cals, seed = NIGHTS[name]
    text = (f'[night]\nname = "bench-{name}"\nstart = "{start}"\ninstrument = "{instrument}"\n'
            f"binning = 1\nseed = {seed}\nstar_density = 3000.0\n" + _FIELD)
    for template, count in zip(_CALS, cals or ()):
        text += template.format(count) if count else ""
    return text + _SCIENCE.format(count=n_science)


def write_spec(name: str, n_science: int, folder: Path) -> Path:
    """Write the spec of :func:`night_spec` to ``folder/<name>.toml`` and return its path."""
    path = Path(folder) / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(night_spec(name, n_science))
    return path
