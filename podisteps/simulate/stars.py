"""The star population of a night and the reference catalogue drawn from it.

Population (one per night, drawn from the night seed and cached on the ``Night``):

- positions uniform on the sky in a cap around each science field's optical axis, radius = the layout's
  field radius + the largest dither and pointing error + 25' (stars of a later field that fall inside an
  earlier field's cap are dropped, so overlapping fields keep one uniform density);
- r magnitudes with ``dN/dm ~ 10^(0.25 m)``, 12 < r < 23.5, normalised so that the cap holds
  ``star_density`` stars per deg^2 on average;
- SDSS colours along a stellar locus: g-r from a two-population mixture (turn-off stars near 0.45, M dwarfs
  near 1.25) in 0.2-1.5, and u-g, r-i, i-z interpolated from ``LOCUS`` with 0.02 mag scatter;
- proper motions ``pmra`` (= mu_alpha cos delta) and ``pmdec`` normal with sigma 4 mas/yr;
- positions at the catalogue epoch ``REFCAT_EPOCH`` (2016.0); ``at_epoch`` moves them linearly.

Reference catalogue (``refcat_table``): the stars with r <= 21.5, with per-star errors applied as
Gaussian noise to the true values: positions ``15 + 35 ((r - 12)/9.5)^2`` mas per axis (20-70 mas in two
dimensions), magnitudes ``0.01 + 0.02 ((r - 12)/9.5)^2`` mag, proper motions 0.5 mas/yr.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from astropy.table import Table

from . import distortion
from .nightspec import pointing_error_radius
from .randomness import rng_for

__all__ = ["StarPopulation", "population_for_night", "draw_population", "refcat_table", "REFCAT_EPOCH",
           "BANDS", "LOCUS", "MAG_RANGE", "REFCAT_MAG_LIMIT"]

#: Epoch of the population positions and of the reference catalogue, Julian years.
REFCAT_EPOCH = 2016.0
#: SDSS bands, in catalogue order.
BANDS = ("u", "g", "r", "i", "z")
#: r-band range of the population.
MAG_RANGE = (12.0, 23.5)
#: Faintest r of the reference catalogue.
REFCAT_MAG_LIMIT = 21.5
#: Stellar locus: columns g-r, u-g, r-i, i-z (SDSS main sequence, approximate).
LOCUS = np.array([
    [0.20, 0.85, 0.05, 0.00],
    [0.40, 1.05, 0.13, 0.05],
    [0.60, 1.40, 0.21, 0.10],
    [0.80, 1.95, 0.30, 0.15],
    [1.00, 2.35, 0.40, 0.21],
    [1.20, 2.55, 0.60, 0.32],
    [1.40, 2.65, 1.00, 0.50],
    [1.50, 2.70, 1.35, 0.68],
])
#: Margin of the population beyond every science field, deg.
FIELD_MARGIN = 25.0 / 60.0


@dataclass
class StarPopulation:
    """Stars at ``REFCAT_EPOCH``; all arrays have shape ``(n,)``.

    Attributes
    ----------
    id : numpy.ndarray of int64
        Star identifier (unique in the night).
    ra, dec : numpy.ndarray
        Position at ``REFCAT_EPOCH``, deg.
    pmra, pmdec : numpy.ndarray
        Proper motion, mas/yr (``pmra`` = mu_alpha cos delta).
    mags : dict
        SDSS band -> magnitudes.
    """

    id: np.ndarray
    ra: np.ndarray
    dec: np.ndarray
    pmra: np.ndarray
    pmdec: np.ndarray
    mags: dict

    def __len__(self) -> int:
        return int(self.id.size)

    def at_epoch(self, epoch: float) -> tuple[np.ndarray, np.ndarray]:
        """Positions ``(ra, dec)`` in deg at Julian ``epoch`` (linear proper motion)."""
        dt = float(epoch) - REFCAT_EPOCH
        dec = self.dec + self.pmdec * dt / 3.6e6
        ra = (self.ra + self.pmra * dt / 3.6e6 / np.cos(np.radians(self.dec))) % 360.0
        return ra, dec

    def subset(self, keep: np.ndarray) -> StarPopulation:
        """The stars selected by a boolean or index array."""
        return StarPopulation(self.id[keep], self.ra[keep], self.dec[keep], self.pmra[keep], self.pmdec[keep],
                              {b: m[keep] for b, m in self.mags.items()})

    @staticmethod
    def concatenate(parts: list) -> StarPopulation:
        """Join populations."""
        cat = np.concatenate
        return StarPopulation(cat([p.id for p in parts]), cat([p.ra for p in parts]), cat([p.dec for p in parts]),
                              cat([p.pmra for p in parts]), cat([p.pmdec for p in parts]),
                              {b: cat([p.mags[b] for p in parts]) for b in BANDS})


def _separation(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Great-circle distance in deg (haversine)."""
    r1, d1, r2, d2 = (np.radians(v) for v in (ra1, dec1, ra2, dec2))
    h = np.sin((d2 - d1) / 2) ** 2 + np.cos(d1) * np.cos(d2) * np.sin((r2 - r1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0, 1))))


def _cap_positions(rng, n: int, ra0: float, dec0: float, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """``n`` positions uniform on the sphere within ``radius`` deg of (ra0, dec0)."""
    cos_t = rng.uniform(math.cos(math.radians(radius)), 1.0, n)
    phi = rng.uniform(0.0, 2 * math.pi, n)
    sin_t = np.sqrt(1.0 - cos_t**2)
    # point around the pole, then rotate the pole to (ra0, dec0)
    v = np.stack([sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t])
    a, d = math.radians(ra0), math.radians(dec0)
    ry = np.array([[math.sin(d), 0, math.cos(d)], [0, 1, 0], [-math.cos(d), 0, math.sin(d)]])
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    x, y, z = rz @ ry @ v
    return np.degrees(np.arctan2(y, x)) % 360.0, np.degrees(np.arcsin(np.clip(z, -1, 1)))


def _r_magnitudes(rng, n: int) -> np.ndarray:
    """Magnitudes with dN/dm ~ 10^(0.25 m) in MAG_RANGE (inverse of the cumulative distribution)."""
    lo, hi = (10.0 ** (0.25 * m) for m in MAG_RANGE)
    return 4.0 * np.log10(lo + rng.uniform(0.0, 1.0, n) * (hi - lo))


def _colours(rng, n: int) -> dict:
    """SDSS magnitudes offsets from r along the locus: returns band -> (m_band - r)."""
    dwarf = rng.uniform(0.0, 1.0, n) < 0.4
    gr = np.where(dwarf, rng.normal(1.25, 0.2, n), rng.normal(0.45, 0.15, n))
    gr = np.clip(gr, 0.2, 1.5)
    ug, ri, iz = (np.interp(gr, LOCUS[:, 0], LOCUS[:, k]) + rng.normal(0.0, 0.02, n) for k in (1, 2, 3))
    return {"u": gr + ug, "g": gr, "r": np.zeros(n), "i": -ri, "z": -ri - iz}


def draw_population(*, seed: int, label: str, ra: float, dec: float, radius: float, density: float,
                    first_id: int = 0) -> StarPopulation:
    """Draw the stars of one cap.

    Parameters
    ----------
    seed : int
        Night seed.
    label : str
        Name of the cap (keys the random stream).
    ra, dec, radius : float
        Cap centre and radius, deg.
    density : float
        Mean stars per deg^2 within MAG_RANGE.
    first_id : int, optional
        Identifier of the first star.
    """
    rng = rng_for(seed, "stars", label)
    area = 2 * math.pi * (1 - math.cos(math.radians(radius))) * (180 / math.pi) ** 2
    n = int(rng.poisson(density * area))
    sra, sdec = _cap_positions(rng, n, ra, dec, radius)
    r = _r_magnitudes(rng, n)
    mags = {b: r + off for b, off in _colours(rng, n).items()}
    pm = rng.normal(0.0, 4.0, (2, n))
    return StarPopulation(np.arange(first_id, first_id + n, dtype=np.int64), sra, sdec, pm[0], pm[1], mags)


def population_for_night(night) -> StarPopulation:
    """The star population covering every science field of ``night`` (a ``nightspec.Night``) with margin."""
    extra = pointing_error_radius(night) + FIELD_MARGIN
    caps = []
    for name in sorted({e.field for e in night.exposures if e.field is not None}):
        layouts = {e.layout for e in night.exposures if e.field == name}
        f = night.fields[name]
        layout = sorted(layouts)[0]
        ra, dec = distortion.axis_position(layout, f.ra, f.dec)
        radius = max(distortion.field_radius(lo) for lo in layouts) + extra
        caps.append((name, ra, dec, radius))
    parts = []
    next_id = 1
    for i, (name, ra, dec, radius) in enumerate(caps):
        pop = draw_population(seed=night.seed, label=name, ra=ra, dec=dec, radius=radius,
                              density=night.star_density, first_id=next_id)
        keep = np.ones(len(pop), bool)
        for _, ra2, dec2, r2 in caps[:i]:
            keep &= _separation(pop.ra, pop.dec, ra2, dec2) > r2
        parts.append(pop.subset(keep))
        next_id += len(pop)
    if not parts:
        empty = np.zeros(0)
        return StarPopulation(np.zeros(0, np.int64), empty, empty, empty, empty, {b: empty for b in BANDS})
    return StarPopulation.concatenate(parts)


def refcat_table(pop: StarPopulation, *, seed: int) -> Table:
    """The reference catalogue: the population's stars with r <= REFCAT_MAG_LIMIT, with errors.

    Columns: ``id``, ``ra``, ``dec`` (deg at ``epoch``), ``ra_error``, ``dec_error`` (mas; ``ra_error`` is
    on alpha cos delta), ``epoch`` (yr), ``pmra`` (mu_alpha cos delta), ``pmdec`` (mas/yr), ``u..z``, ``u_err..z_err``.
    """
    sel = pop.subset(pop.mags["r"] <= REFCAT_MAG_LIMIT)
    n = len(sel)
    rng = rng_for(seed, "refcat")
    t = ((sel.mags["r"] - MAG_RANGE[0]) / (REFCAT_MAG_LIMIT - MAG_RANGE[0])).clip(0, 1) ** 2
    pos_err = 15.0 + 35.0 * t
    mag_err = 0.01 + 0.02 * t
    dra, ddec = rng.normal(0.0, 1.0, (2, n)) * pos_err / 3.6e6
    table = Table()
    table["id"] = sel.id
    table["ra"] = (sel.ra + dra / np.cos(np.radians(sel.dec))) % 360.0
    table["dec"] = sel.dec + ddec
    table["ra_error"] = pos_err
    table["dec_error"] = pos_err
    table["epoch"] = np.full(n, REFCAT_EPOCH)
    table["pmra"] = sel.pmra + rng.normal(0.0, 0.5, n)
    table["pmdec"] = sel.pmdec + rng.normal(0.0, 0.5, n)
    for b in BANDS:
        table[b] = sel.mags[b] + rng.normal(0.0, 1.0, n) * mag_err
    for b in BANDS:
        table[f"{b}_err"] = mag_err
    units = {"ra": "deg", "dec": "deg", "ra_error": "mas", "dec_error": "mas", "epoch": "yr", "pmra": "mas / yr",
             "pmdec": "mas / yr", **{b: "mag" for b in BANDS}, **{f"{b}_err": "mag" for b in BANDS}}
    for col, unit in units.items():
        table[col].unit = unit
    table.meta["EPOCH"] = REFCAT_EPOCH
    table.meta["MAGLIM"] = REFCAT_MAG_LIMIT
    return table
