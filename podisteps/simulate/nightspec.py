"""Night specs: a short TOML description of one observing night, expanded into exposures.

Schema (all keys of ``[night]`` except ``start`` are optional; see ``docs/simulator.md``)::

    [night]
    start = "2013-10-05T02:10:00"   # UT start of the first exposure
    instrument = "full"             # "full" (real OTAs) or "test" (8x smaller pixels count)
    binning = 1                     # 1 or 2
    seed = 1                        # default seed (the command line may override it)
    star_density = 3000.0           # stars per deg^2 with 12 < r < 23.5
    overhead = 31.4                 # s between the end of one exposure and the start of the next

    [[field]]                       # science fields (telescope pointing before dithers)
    name = "F1"
    ra = "22:15:30.0"               # hours as a sexagesimal string, or degrees as a number
    dec = "+15:30:00"

    [[sequence]]                    # blocks, in time order
    type = "object"                 # "bias", "dark", "dflat", "tflat" or "object"
    count = 5
    field = "F1"                    # object only
    filter = "odi_r"                # dflat/object; a list repeats the block per filter
    exptime = 300.0
    dither = "5point"               # "none", "3point", "5point", "9point" or a list of [dE, dN] arcmin
    dither_step = 1.0               # arcmin (named patterns only)
    pointing_error = 2.0            # arcmin, random direction per block (+2" jitter per exposure)
    rotator_offset = 0.5            # deg, true sky rotation not in the headers
    rotator = 0.0                   # deg, ROTSTART
    seeing = [0.9, 1.1]             # arcsec FWHM, a number or [first, last] (linear over the block)
    airmass = [1.1, 1.3]            # same
    sky_mag = 21.0                  # optional: override the filter's dark-sky mag/arcsec^2
    start = "2013-10-05T03:00:00"   # optional: start of this block
    bright_star = {mag = 9.0, ota = 43, x = 2000, y = 1500}   # optional: a saturating star (see below)

    [effects]                       # detector and optics effects, all on by default (effects.Effects)
    all = true                      # optional: set every switch first
    crosstalk = true                # ... nonlinearity, saturation, persistence, broken_cells, video_cells,
                                    # bad_pixels, bias_structure, dark_glow, flat_response, cosmic_rays,
                                    # pupil_ghost, fringes
    cosmic_ray_rate = 0.025         # events per cm^2 per s

``bright_star`` puts a star of magnitude ``mag`` (in the block's filter) at full-size bin1 pixel
``(x, y)`` (0-based) of OTA ``ota`` in the block's first exposure; it keeps that sky position in the
block's other exposures and exists only in that block.

The layout follows the date (pODI before MJD 57023, ODI 5x6 after); the night name is the date of
UT - 7 h - 12 h.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import os
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .. import instrument
from ..instrument.packagedata import night_spec_path
from . import photometry
from .effects import Effects
from .randomness import rng_for

__all__ = ["FieldSpec", "ExposureSpec", "Night", "load_night", "night_of", "mjd_of", "DITHER_PATTERNS"]

_MJD0 = datetime(1858, 11, 17)
#: Exposure time of a twilight flat, s (the sky is bright: the level comes from the sky model).
TWILIGHT_FLAT_EXPTIME = 10.0

_OBSTYPES = {"bias": "BIAS", "dark": "DARK", "dflat": "DFLAT", "tflat": "TFLAT", "object": "OBJECT"}

#: Named dither patterns in units of ``dither_step`` (East, North).
DITHER_PATTERNS = {
    "none": ((0.0, 0.0),),
    "3point": ((0.0, 0.0), (1.0, 1.0), (-1.0, -1.0)),
    "5point": ((0.0, 0.0), (1.0, 1.0), (-1.0, 1.0), (-1.0, -1.0), (1.0, -1.0)),
    "9point": ((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0), (-1.0, 1.0), (-1.0, 0.0), (-1.0, -1.0),
               (0.0, -1.0), (1.0, -1.0)),
}

#: Kitt Peak longitude (deg, East positive) and latitude (deg), for the dome pointing of calibrations.
KPNO_LONGITUDE = -111.6003
KPNO_LATITUDE = 31.9633


def mjd_of(t: datetime) -> float:
    """Modified Julian Date of a naive UT datetime."""
    return (t - _MJD0) / timedelta(days=1)


def night_of(t: datetime) -> str:
    """Observing night ``YYYYMMDD`` of a UT datetime: the date of (UT - 7 h - 12 h)."""
    return (t - timedelta(hours=19)).strftime("%Y%m%d")


def _angle(value, *, hours: bool) -> float:
    """Degrees from a number (degrees) or a sexagesimal string (hours for RA)."""
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    sign = -1.0 if text.startswith("-") else 1.0
    parts = [abs(float(p)) for p in text.lstrip("+-").replace(" ", ":").split(":")]
    parts += [0.0] * (3 - len(parts))
    val = parts[0] + parts[1] / 60.0 + parts[2] / 3600.0
    return sign * val * (15.0 if hours else 1.0)


@dataclass(frozen=True)
class FieldSpec:
    """A science field: name and telescope pointing (before dithers), degrees."""

    name: str
    ra: float
    dec: float


@dataclass(frozen=True)
class BrightStar:
    """A saturating star of one block: magnitude in the block's filter, where it was asked for, and its
    sky position (deg) fixed from the block's first exposure."""

    mag: float
    ota: int
    x: float
    y: float
    ra: float
    dec: float


@dataclass(frozen=True)
class ExposureSpec:
    """One exposure of a night, fully specified (all random choices of the spec already drawn).

    Attributes
    ----------
    index : int
        Position in the night (0-based, time order).
    obsid : str
        ``OBSID`` card, e.g. ``20131005T021000.0`` (no prefix letter); the folder is ``"o" + obsid``.
    night : str
        Observing night ``YYYYMMDD``.
    obstype : str
        ``BIAS``, ``DARK``, ``DFLAT``, ``TFLAT`` or ``OBJECT``.
    object : str
        ``OBJECT`` card.
    filter : str
        ODI filter name.
    exptime : float
        Exposure time, s.
    start : datetime.datetime
        UT start (millisecond resolution).
    mjd : float
        MJD of the start.
    layout : str
        ``"podi"`` or ``"odi_5x6"``.
    kind : str
        Detector kind, ``"full"`` or ``"test"``.
    binning : int
        1 or 2.
    ra, dec : float
        Telescope pointing written as the header RA/DEC, deg.
    field : str or None
        Science field name (OBJECT frames).
    pointing_error : tuple of float
        True minus assumed optical-axis position ``(dalpha cos(delta), ddelta)``, arcsec.
    rotator_offset : float
        True sky rotation relative to the canned WCS, deg (positive = CD rotated counter-clockwise).
    rotator : float
        Rotator angle written as ROTSTART, deg.
    seeing : float
        PSF FWHM, arcsec.
    airmass : float
        Airmass.
    sky_mag : float or None
        Sky surface brightness, mag/arcsec^2 (None: the filter's dark-sky value).
    """

    index: int
    obsid: str
    night: str
    obstype: str
    object: str
    filter: str
    exptime: float
    start: datetime
    mjd: float
    layout: str
    kind: str
    binning: int
    ra: float
    dec: float
    field: str | None = None
    pointing_error: tuple[float, float] = (0.0, 0.0)
    rotator_offset: float = 0.0
    rotator: float = 0.0
    seeing: float = 1.0
    airmass: float = 1.0
    sky_mag: float | None = None
    bright_star: "BrightStar | None" = None

    @property
    def dirname(self) -> str:
        """Exposure folder name with its prefix letter, e.g. ``o20131005T021000.0``."""
        return "o" + self.obsid

    @property
    def date_obs(self) -> str:
        """``DATE-OBS`` with fractional seconds, ``%Y-%m-%dT%H:%M:%S.%f`` (milliseconds)."""
        return self.start.strftime("%Y-%m-%dT%H:%M:%S.") + f"{self.start.microsecond // 1000:03d}"

    @property
    def epoch(self) -> float:
        """Julian epoch of the start, years."""
        return 2000.0 + (self.mjd - 51544.5) / 365.25

    @property
    def geometry(self) -> instrument.CellGeometry:
        """Cell geometry of the detector kind and binning."""
        return instrument.geometry(self.kind, self.binning)

    @property
    def otas(self) -> tuple[int, ...]:
        """OTAs present at this exposure's MJD, in processing order."""
        return instrument.layout(self.layout).otas_at(self.mjd)


@dataclass
class Night:
    """A night spec, expanded.

    Attributes
    ----------
    name : str
        Label of the spec (``[night] name``, else the file stem).
    seed : int
        Seed of all random choices.
    kind : str
        Detector kind.
    binning : int
        Binning.
    star_density : float
        Stars per deg^2 with 12 < r < 23.5.
    fields : dict
        Field name -> FieldSpec.
    exposures : list of ExposureSpec
        In time order.
    """

    name: str
    seed: int
    kind: str
    binning: int
    star_density: float
    fields: dict
    exposures: list = field(default_factory=list)
    effects: Effects = field(default_factory=Effects)
    #: Saturated columns per (obsid, ota) of rendered exposures (persistence sources), filled by the renderer.
    saturation_cache: dict = field(default_factory=dict, repr=False, compare=False)

    @functools.cached_property
    def population(self):
        """The night's star population (``stars.StarPopulation``), drawn once and cached."""
        from .stars import population_for_night

        return population_for_night(self)

    @property
    def layouts(self) -> tuple[str, ...]:
        """Layouts used by the night's exposures, sorted."""
        return tuple(sorted({e.layout for e in self.exposures}))

    def exposure(self, obsid: str) -> ExposureSpec:
        """Look an exposure up by OBSID (with or without the prefix letter)."""
        key = obsid[1:] if obsid[:1].isalpha() else obsid
        for e in self.exposures:
            if e.obsid == key:
                return e
        raise KeyError(f"no exposure {obsid!r} in night {self.name}")


def _ramp(value, i: int, n: int) -> float:
    """A number, or ``[first, last]`` interpolated linearly at ``i`` of ``n``."""
    if isinstance(value, (list, tuple)):
        a, b = float(value[0]), float(value[1])
        return a if n <= 1 else a + (b - a) * i / (n - 1)
    return float(value)


def _dither_offsets(block: dict) -> tuple[tuple[float, float], ...]:
    pattern = block.get("dither", "none")
    if isinstance(pattern, str):
        if pattern not in DITHER_PATTERNS:
            raise ValueError(f"unknown dither pattern {pattern!r}; known: {', '.join(DITHER_PATTERNS)}")
        step = float(block.get("dither_step", 1.0))
        return tuple((step * dx, step * dy) for dx, dy in DITHER_PATTERNS[pattern])
    return tuple((float(dx), float(dy)) for dx, dy in pattern)


def _offset_pointing(ra: float, dec: float, east_arcmin: float, north_arcmin: float) -> tuple[float, float]:
    dec2 = dec + north_arcmin / 60.0
    ra2 = (ra + east_arcmin / 60.0 / math.cos(math.radians(dec2))) % 360.0
    return ra2, dec2


def _zenith(t: datetime) -> tuple[float, float]:
    """RA, Dec (deg) of the zenith at Kitt Peak at UT ``t`` (mean sidereal time)."""
    gmst = 280.46061837 + 360.98564736629 * (mjd_of(t) - 51544.5)
    return (gmst + KPNO_LONGITUDE) % 360.0, KPNO_LATITUDE


def _expand_blocks(sequence: list) -> list:
    """Split blocks whose ``filter`` is a list into one block per filter."""
    out = []
    for block in sequence:
        filters = block.get("filter")
        if isinstance(filters, list):
            for i, f in enumerate(filters):
                b = dict(block, filter=f)
                if i > 0:
                    b.pop("start", None)
                out.append(b)
        else:
            out.append(dict(block))
    return out


def load_night(spec: str | os.PathLike | dict, *, seed: int | None = None) -> Night:
    """Read a night spec and expand it into exposures.

    Parameters
    ----------
    spec : path-like or dict
        A TOML file, the name of a shipped spec (``"demo"``, see
        :func:`podisteps.instrument.packagedata.night_spec_path`), or the parsed dict.
    seed : int, optional
        Overrides ``[night] seed``.

    Returns
    -------
    Night

    Raises
    ------
    ValueError
        For an unknown block type, filter, field or dither pattern, a missing ``start``, or two
        exposures starting in the same second.
    """
    if isinstance(spec, dict):
        data, stem = copy.deepcopy(spec), "night"
    else:
        path = night_spec_path(spec)
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
        stem = path.stem
    head = data.get("night", {})
    if "start" not in head:
        raise ValueError("night spec: [night] start (UT of the first exposure) is required")
    night = Night(
        name=str(head.get("name", stem)),
        seed=int(head.get("seed", 1) if seed is None else seed),
        kind=str(head.get("instrument", "full")),
        binning=int(head.get("binning", 1)),
        star_density=float(head.get("star_density", 3000.0)),
        fields={},
        effects=Effects.from_spec(data.get("effects")),
    )
    instrument.geometry(night.kind, night.binning)  # validates kind and binning
    for f in data.get("field", []):
        night.fields[f["name"]] = FieldSpec(f["name"], _angle(f["ra"], hours=True), _angle(f["dec"], hours=False))
    overhead = float(head.get("overhead", 31.4))
    t = datetime.fromisoformat(str(head["start"]))
    seen: dict[str, int] = {}
    for bi, block in enumerate(_expand_blocks(data.get("sequence", []))):
        btype = str(block.get("type", "")).lower()
        if btype not in _OBSTYPES:
            raise ValueError(f"night spec: sequence block {bi}: type {block.get('type')!r} is not one of "
                             f"{', '.join(_OBSTYPES)}")
        if "start" in block:
            t = datetime.fromisoformat(str(block["start"]))
        count = int(block.get("count", 1))
        filt = str(block.get("filter", "odi_r"))
        info = photometry.filter_info(filt)
        default_exptime = {"bias": 0.0, "dark": 300.0, "dflat": info.dome_flat_exptime,
                           "tflat": TWILIGHT_FLAT_EXPTIME, "object": 300.0}[btype]
        exptime = float(block.get("exptime", default_exptime))
        fld = None
        if btype == "object":
            name = block.get("field")
            if name not in night.fields:
                raise ValueError(f"night spec: sequence block {bi}: unknown field {name!r}")
            fld = night.fields[name]
            dithers = _dither_offsets(block)
            perr = float(block.get("pointing_error", 0.0)) * 60.0
            phi = rng_for(night.seed, "pointing-error", bi).uniform(0.0, 2.0 * math.pi)
        for i in range(count):
            start = t.replace(microsecond=(t.microsecond // 1000) * 1000)
            obsid = start.strftime("%Y%m%dT%H%M%S") + ".0"
            if obsid in seen:
                raise ValueError(f"night spec: two exposures start in the same second ({obsid})")
            seen[obsid] = len(night.exposures)
            mjd = mjd_of(start)
            common = dict(
                index=len(night.exposures), obsid=obsid, night=night_of(start), obstype=_OBSTYPES[btype],
                filter=filt, exptime=exptime, start=start, mjd=mjd,
                layout=instrument.layout_for_mjd(mjd).name, kind=night.kind, binning=night.binning,
                rotator=float(block.get("rotator", 0.0)),
            )
            if fld is None:
                ra, dec = _zenith(start)
                label = {"bias": "bias", "dark": "dark", "dflat": f"dome flat {filt}",
                         "tflat": f"twilight flat {filt}"}[btype]
                exp = ExposureSpec(**common, object=str(block.get("object", label)), ra=ra, dec=dec)
            else:
                de, dn = dithers[i % len(dithers)]
                ra, dec = _offset_pointing(fld.ra, fld.dec, de, dn)
                jitter = rng_for(night.seed, "pointing-jitter", obsid).normal(0.0, 2.0, 2)
                exp = ExposureSpec(
                    **common, object=str(block.get("object", fld.name)), ra=ra, dec=dec, field=fld.name,
                    pointing_error=(perr * math.cos(phi) + jitter[0], perr * math.sin(phi) + jitter[1]),
                    rotator_offset=float(block.get("rotator_offset", 0.0)),
                    seeing=_ramp(block.get("seeing", 1.0), i, count),
                    airmass=_ramp(block.get("airmass", 1.2), i, count),
                    sky_mag=None if "sky_mag" not in block else float(block["sky_mag"]),
                )
            if "bright_star" in block and fld is not None:
                if i == 0:
                    bright = _bright_star(block["bright_star"], exp, bi)
                exp = dataclasses.replace(exp, bright_star=bright)
            night.exposures.append(exp)
            t = start + timedelta(seconds=exptime + overhead)
    return night


def _bright_star(spec: dict, exposure: ExposureSpec, block: int) -> BrightStar:
    """Place a block's bright star: full-size pixel (x, y) of an OTA in the block's first exposure."""
    from astropy.wcs import WCS

    from .distortion import true_header

    try:
        mag, ota, x, y = float(spec["mag"]), int(spec["ota"]), float(spec["x"]), float(spec["y"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"night spec: sequence block {block}: bright_star needs mag, ota, x, y") from None
    if ota not in exposure.otas:
        raise ValueError(f"night spec: sequence block {block}: bright_star OTA {ota} is not in the layout")
    scale = exposure.geometry.scale
    ra, dec = WCS(true_header(exposure, ota)).all_pix2world([[x / scale, y / scale]], 0)[0]
    return BrightStar(mag, ota, x, y, float(ra), float(dec))


def pointing_error_radius(night: Night) -> float:
    """Largest pointing error plus dither offset of any science exposure from its field, deg."""
    worst = 0.0
    for e in night.exposures:
        if e.field is None:
            continue
        f = night.fields[e.field]
        d = math.hypot((e.ra - f.ra) * math.cos(math.radians(f.dec)), e.dec - f.dec)
        worst = max(worst, d + math.hypot(*e.pointing_error) / 3600.0)
    return worst

