"""Reference catalogues behind one interface (docs/astrometry.md, 'Reference catalogues').

Every reader returns an astropy Table with the fixed column contract :data:`REFCAT_COLUMNS`:

============= ==========================================================================
``ra, dec``   position at ``epoch``, degrees (ICRS)
``epoch``     Julian epoch of the position, years (per row)
``pmra``      proper motion ``mu_alpha cos(delta)``, mas/yr (NaN if unknown)
``pmdec``     proper motion ``mu_delta``, mas/yr (NaN if unknown)
``ra_error``  position error along ``alpha cos(delta)``, mas (NaN if unknown)
``dec_error`` position error along ``delta``, mas
``mag_<b>``   SDSS-system magnitude in band ``b`` of ``ugriz`` (NaN where missing)
``err_<b>``   its error, mag
============= ==========================================================================

Sources:

- a single local FITS (first table extension) or ECSV table, e.g. the simulator's ``refcat/refcat.fits``
  (:func:`read_table`);
- a folder of sky-sharded files indexed by QuickReduce's ``SkyTable.fits``: the primary header lists the
  columns to read (``NSELECT``, ``SELECT01``...), the ``SKY_REGION`` table gives each file's ``NAME`` and
  box ``R_MIN, R_MAX, D_MIN, D_MAX`` in degrees (:func:`read_skytable`, :func:`write_skytable_shards`);
- an online service through astroquery/VizieR (:func:`query_online`: Gaia DR3, SDSS DR12, Pan-STARRS DR1,
  2MASS), only when the caller passes ``allow_network=True``, with an explicit row limit and time-out.

:func:`load_reference` dispatches on the source, cuts a cone and applies the proper motions to the
observation epoch (:func:`propagate`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.table import Table, vstack

from ..astrometry import unit_vectors, wcs2odi
from ..errors import PodiflowError

__all__ = [
    "BANDS",
    "REFCAT_COLUMNS",
    "ONLINE_PROVIDERS",
    "NetworkDisabledError",
    "normalize",
    "read_table",
    "read_skytable",
    "write_skytable_shards",
    "query_online",
    "cone",
    "propagate",
    "load_reference",
    "stars_in_field",
    "ReferenceOutcome",
]

BANDS = ("u", "g", "r", "i", "z")
REFCAT_COLUMNS = ("ra", "dec", "epoch", "pmra", "pmdec", "ra_error", "dec_error") + tuple(
    name for b in BANDS for name in (f"mag_{b}", f"err_{b}")
)
SKYTABLE = "SkyTable.fits"

#: Accepted input names per contract column (case-insensitive; single-letter band names exact).
_ALIASES = {
    "ra": ("ra", "raj2000", "ra_icrs", "ra_deg", "alpha_j2000"),
    "dec": ("dec", "dej2000", "decj2000", "de_icrs", "dec_deg", "delta_j2000"),
    "epoch": ("epoch", "ref_epoch"),
    "pmra": ("pmra", "pm_ra"),
    "pmdec": ("pmdec", "pmde", "pm_dec"),
    "ra_error": ("ra_error", "ra_err", "e_ra_icrs", "e_raj2000"),
    "dec_error": ("dec_error", "dec_err", "e_de_icrs", "e_dej2000"),
    **{f"mag_{b}": (f"mag_{b}", b, f"{b}mag", f"{b}_mag") for b in BANDS},
    **{f"err_{b}": (f"err_{b}", f"{b}_err", f"e_{b}mag", f"magerr_{b}") for b in BANDS},
}
_UNITS = {"ra": u.deg, "dec": u.deg, "epoch": u.yr, "pmra": u.mas / u.yr, "pmdec": u.mas / u.yr,
          "ra_error": u.mas, "dec_error": u.mas}

#: VizieR catalogues: provider -> (catalogue, {contract column: VizieR column}, epoch of the positions).
ONLINE_PROVIDERS = {
    "gaia": ("I/355/gaiadr3", {"ra": "RA_ICRS", "dec": "DE_ICRS", "pmra": "pmRA", "pmdec": "pmDE",
                               "ra_error": "e_RA_ICRS", "dec_error": "e_DE_ICRS"}, 2016.0),
    "sdss": ("V/147/sdss12", {"ra": "RA_ICRS", "dec": "DE_ICRS",
                              **{f"mag_{b}": f"{b}mag" for b in BANDS},
                              **{f"err_{b}": f"e_{b}mag" for b in BANDS}}, 2005.0),
    "panstarrs": ("II/349/ps1", {"ra": "RAJ2000", "dec": "DEJ2000",
                                 **{f"mag_{b}": f"{b}mag" for b in BANDS[1:]},
                                 **{f"err_{b}": f"e_{b}mag" for b in BANDS[1:]}}, 2012.0),
    "2mass": ("II/246/out", {"ra": "RAJ2000", "dec": "DEJ2000"}, 2000.0),
}


class NetworkDisabledError(PodiflowError, RuntimeError):
    """An online catalogue was asked for while network access is off."""


def _find_column(table: Table, target: str) -> str | None:
    names = {name.lower(): name for name in table.colnames if len(name) > 1}
    for alias in _ALIASES[target]:
        if len(alias) == 1:
            if alias in table.colnames:
                return alias
        elif alias in names:
            return names[alias]
    return None


def normalize(table: Table, *, epoch: float | None = None) -> Table:
    """Map a catalogue onto the column contract :data:`REFCAT_COLUMNS`.

    Parameters
    ----------
    table : astropy.table.Table
        Any table with recognisable RA/Dec columns (see ``_ALIASES``); columns with units are converted
        (positions to deg, errors to mas, proper motions to mas/yr); unitless ones are taken as given.
    epoch : float, optional
        Epoch for rows of a table without an epoch column; default the table's ``EPOCH`` meta, else 2000.0.

    Returns
    -------
    astropy.table.Table
        Exactly the contract columns, float64, NaN where missing.

    Raises
    ------
    KeyError
        Without RA/Dec columns.
    """
    n = len(table)
    out = Table()
    for name in REFCAT_COLUMNS:
        src = _find_column(table, name)
        if src is None:
            if name in ("ra", "dec"):
                raise KeyError(f"reference catalogue has no {name} column (columns: {table.colnames})")
            values = np.full(n, np.nan)
            if name == "epoch":
                values[:] = epoch if epoch is not None else float(table.meta.get("EPOCH", 2000.0))
        else:
            col = table[src]
            values = np.ma.filled(np.ma.asarray(col, dtype=float), np.nan)
            unit = getattr(col, "unit", None)
            if unit is not None and name in _UNITS and unit.is_equivalent(_UNITS[name]):
                values = (values * unit).to_value(_UNITS[name])
        out[name] = np.asarray(values, float)
        if name in _UNITS:
            out[name].unit = _UNITS[name]
        elif name.startswith(("mag_", "err_")):
            out[name].unit = u.mag
    out["ra"] = out["ra"] % 360.0
    out.meta["NSOURCE"] = n
    return out


def read_table(path, *, epoch: float | None = None) -> Table:
    """Read a local catalogue: ``.ecsv`` (ECSV) or FITS (the first table extension); contract columns."""
    path = Path(path)
    if path.suffix.lower() == ".ecsv":
        return normalize(Table.read(path, format="ascii.ecsv"), epoch=epoch)
    with fits.open(path, memmap=False) as hdul:
        for hdu in hdul:
            if isinstance(hdu, (fits.BinTableHDU, fits.TableHDU)):
                table = Table.read(hdu)
                break
        else:
            raise ValueError(f"{path}: no table extension")
    return normalize(table, epoch=epoch)


def cone(catalog: Table, ra: float, dec: float, radius_deg: float) -> Table:
    """Rows of ``catalog`` (contract columns) within ``radius_deg`` of ``(ra, dec)`` (degrees)."""
    cos_sep = unit_vectors(catalog["ra"], catalog["dec"]) @ unit_vectors(ra, dec)
    return catalog[cos_sep >= math.cos(math.radians(radius_deg))]


def _ra_overlaps(lo, hi, ra_lo, ra_hi) -> np.ndarray:
    """Whether RA intervals ``[lo, hi]`` overlap ``[ra_lo, ra_hi]`` modulo 360 (degrees)."""
    return np.any([(lo <= ra_hi + k) & (hi >= ra_lo + k) for k in (-360.0, 0.0, 360.0)], axis=0)


def read_skytable(folder, ra: float, dec: float, radius_deg: float, *, epoch: float | None = None) -> Table:
    """Cone search in a folder of sky-sharded catalogue files indexed by ``SkyTable.fits``.

    Files whose ``SKY_REGION`` box overlaps the box around the cone (RA half-width
    ``radius / cos(max |dec|)``; all RA when the cone reaches a pole; RA wrap handled) are read (first
    table extension, the ``SELECTnn`` columns), and their rows inside the cone are kept.

    Parameters
    ----------
    folder : path-like
        Folder holding ``SkyTable.fits`` and the files it names (names relative to the folder; a name
        without a suffix also matches ``NAME.fits``).
    ra, dec, radius_deg : float
        Cone, degrees.
    epoch : float, optional
        See :func:`normalize`.

    Returns
    -------
    astropy.table.Table
        Contract columns.
    """
    folder = Path(folder)
    with fits.open(folder / SKYTABLE, memmap=False) as hdul:
        primary = hdul[0].header
        select = [str(primary[f"SELECT{k:02d}"]) for k in range(1, int(primary.get("NSELECT", 0)) + 1)]
        regions = Table.read(hdul["SKY_REGION"])
    d_lo, d_hi = dec - radius_deg, dec + radius_deg
    near = (np.asarray(regions["D_MAX"]) >= d_lo) & (np.asarray(regions["D_MIN"]) <= d_hi)
    cos_max = math.cos(math.radians(min(max(abs(d_lo), abs(d_hi)), 90.0)))
    if d_lo > -90.0 and d_hi < 90.0 and radius_deg < 180.0 * cos_max:
        half = radius_deg / cos_max
        near &= _ra_overlaps(np.asarray(regions["R_MIN"]), np.asarray(regions["R_MAX"]), ra - half, ra + half)
    parts = []
    for name in regions["NAME"][near]:
        path = folder / str(name).strip()
        if not path.exists() and not path.suffix:
            path = path.with_suffix(".fits")
        with fits.open(path, memmap=False) as hdul:
            hdu = next(h for h in hdul if isinstance(h, (fits.BinTableHDU, fits.TableHDU)))
            table = Table.read(hdu)
        if select:
            table = table[[c for c in select if c in table.colnames]]
        parts.append(cone(normalize(table, epoch=epoch), ra, dec, radius_deg))
    if not parts:
        return normalize(Table({"ra": np.zeros(0), "dec": np.zeros(0)}), epoch=epoch)
    return vstack(parts, metadata_conflicts="silent")


def write_skytable_shards(table: Table, folder, *, shard_deg: float, prefix: str = "shard") -> list[Path]:
    """Write a catalogue as sky shards with a ``SkyTable.fits`` index (QuickReduce's layout).

    Shards are ``shard_deg`` bands in Dec cut into ``shard_deg`` bins in RA; empty shards are not written.

    Parameters
    ----------
    table : astropy.table.Table
        Catalogue with ``ra``/``dec`` (contract or any :func:`normalize`-able names); all its columns are
        written, and listed as ``SELECTnn`` in the index.
    folder : path-like
        Output folder (created).
    shard_deg : float
        Shard size, degrees.
    prefix : str, optional
        File-name prefix.

    Returns
    -------
    list of pathlib.Path
        The shard files written, then ``SkyTable.fits``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pos = normalize(table)
    n_ra = max(1, int(math.ceil(360.0 / shard_deg)))
    i_dec = np.clip(np.floor((np.asarray(pos["dec"]) + 90.0) / shard_deg), 0, None).astype(int)
    i_ra = np.clip(np.floor(np.asarray(pos["ra"]) / shard_deg), 0, n_ra - 1).astype(int)
    written, rows = [], []
    for key in sorted(set(zip(i_dec.tolist(), i_ra.tolist()))):
        sel = (i_dec == key[0]) & (i_ra == key[1])
        name = f"{prefix}_{key[0]:04d}_{key[1]:04d}.fits"
        path = folder / name
        fits.HDUList([fits.PrimaryHDU(), fits.table_to_hdu(table[sel])]).writeto(path, overwrite=True)
        written.append(path)
        d_min = -90.0 + key[0] * shard_deg
        r_min = key[1] * shard_deg
        rows.append((name, r_min, min(r_min + shard_deg, 360.0), d_min, min(d_min + shard_deg, 90.0)))
    index = Table(rows=rows or None, names=("NAME", "R_MIN", "R_MAX", "D_MIN", "D_MAX"),
                  dtype=("U64", "f8", "f8", "f8", "f8"))
    primary = fits.PrimaryHDU()
    primary.header["NSELECT"] = len(table.colnames)
    for k, col in enumerate(table.colnames, start=1):
        primary.header[f"SELECT{k:02d}"] = col
    region = fits.table_to_hdu(index)
    region.header["EXTNAME"] = "SKY_REGION"
    fits.HDUList([primary, region]).writeto(folder / SKYTABLE, overwrite=True)
    return written + [folder / SKYTABLE]


def query_online(
    provider: str,
    ra: float,
    dec: float,
    radius_deg: float,
    *,
    allow_network: bool = False,
    row_limit: int = 50000,
    timeout: float = 60.0,
) -> Table:
    """Cone search of an online catalogue through astroquery's VizieR service.

    Parameters
    ----------
    provider : str
        A key of :data:`ONLINE_PROVIDERS` (``gaia``, ``sdss``, ``panstarrs``, ``2mass``).
    ra, dec, radius_deg : float
        Cone, degrees.
    allow_network : bool
        Must be True (``[podiflow] allow_network``); otherwise :class:`NetworkDisabledError` is raised
        before anything is imported or contacted.
    row_limit : int, optional
        Maximum rows returned.
    timeout : float, optional
        Time-out of the query, s.

    Returns
    -------
    astropy.table.Table
        Contract columns.
    """
    if not allow_network:
        raise NetworkDisabledError(f"online catalogue {provider!r} requested but network access is disabled "
                                   "([podiflow] allow_network)")
    if provider not in ONLINE_PROVIDERS:
        raise ValueError(f"unknown online catalogue {provider!r}; known: {sorted(ONLINE_PROVIDERS)}")
    from astropy.coordinates import SkyCoord
    from astroquery.vizier import Vizier

    catalog, columns, epoch = ONLINE_PROVIDERS[provider]
    vizier = Vizier(columns=list(columns.values()), row_limit=row_limit, timeout=timeout)
    result = vizier.query_region(SkyCoord(ra, dec, unit="deg"), radius=radius_deg * u.deg, catalog=catalog)
    if len(result) == 0:
        return normalize(Table({"ra": np.zeros(0), "dec": np.zeros(0)}), epoch=epoch)
    raw = result[0]
    renamed = Table({name: raw[col] for name, col in columns.items() if col in raw.colnames})
    return normalize(renamed, epoch=epoch)


def propagate(table: Table, epoch: float) -> Table:
    """Move the positions of a contract table to ``epoch`` with its proper motions.

    The motion is applied along the local East and North unit vectors on the sphere
    (``p' = p + dt (mu_alpha* e + mu_delta n)``, renormalised), which stays valid at the poles and across
    RA = 0. Rows with NaN proper motion or epoch keep their position; every row gets ``epoch``.

    Parameters
    ----------
    table : astropy.table.Table
        Contract columns (``pmra`` = ``mu_alpha cos(delta)``, mas/yr).
    epoch : float
        Julian epoch of the observation, years.

    Returns
    -------
    astropy.table.Table
        A copy with ``ra``, ``dec`` and ``epoch`` updated.
    """
    out = table.copy()
    dt = float(epoch) - np.asarray(table["epoch"], float)
    rad_per_mas = math.radians(1.0 / 3.6e6)
    mu_a = np.nan_to_num(np.asarray(table["pmra"], float) * dt) * rad_per_mas
    mu_d = np.nan_to_num(np.asarray(table["pmdec"], float) * dt) * rad_per_mas
    a, d = np.radians(np.asarray(table["ra"], float)), np.radians(np.asarray(table["dec"], float))
    p = unit_vectors(table["ra"], table["dec"])
    east = np.stack([-np.sin(a), np.cos(a), np.zeros_like(a)], axis=-1)
    north = np.stack([-np.sin(d) * np.cos(a), -np.sin(d) * np.sin(a), np.cos(d)], axis=-1)
    q = p + mu_a[:, None] * east + mu_d[:, None] * north
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    out["ra"] = np.degrees(np.arctan2(q[:, 1], q[:, 0])) % 360.0
    out["dec"] = np.degrees(np.arcsin(np.clip(q[:, 2], -1.0, 1.0)))
    out["epoch"] = np.full(len(out), float(epoch))
    return out


def load_reference(
    source,
    ra: float,
    dec: float,
    radius_deg: float,
    *,
    epoch: float,
    allow_network: bool = False,
    row_limit: int = 50000,
    timeout: float = 60.0,
) -> Table:
    """The reference stars around a field at the observation epoch.

    Parameters
    ----------
    source : path-like or str
        A catalogue file, a folder with ``SkyTable.fits``, or an online provider name
        (:data:`ONLINE_PROVIDERS`, needs ``allow_network``).
    ra, dec, radius_deg : float
        Cone, degrees (QuickReduce: 0.8 deg + the maximum pointing error).
    epoch : float
        Julian epoch of the observation, years.
    allow_network, row_limit, timeout
        See :func:`query_online`.

    Returns
    -------
    astropy.table.Table
        Contract columns, positions at ``epoch``; ``meta['REFCAT']`` names the source and, for a single
        catalogue file, ``meta['NTOTAL']`` is its number of rows (all of the sky it covers).
    """
    if isinstance(source, str) and source.lower() in ONLINE_PROVIDERS and not os.path.exists(source):
        table = query_online(source.lower(), ra, dec, radius_deg, allow_network=allow_network,
                             row_limit=row_limit, timeout=timeout)
    elif Path(source).is_dir():
        table = read_skytable(source, ra, dec, radius_deg)
    else:
        whole = read_table(source)
        table = cone(whole, ra, dec, radius_deg)
        table.meta["NTOTAL"] = len(whole)
    out = propagate(table, epoch)
    out.meta["REFCAT"] = str(source)
    return out


def stars_in_field(ra, dec, headers_by_ota: dict) -> int:
    """How many reference stars fall on an OTA of the focal plane where the headers place it.

    Parameters
    ----------
    ra, dec : array-like
        Reference positions, degrees, shape ``(n,)``.
    headers_by_ota : dict
        OTA number -> header with its (canned) WCS and ``NAXIS1/2``: the field as pointed.

    Returns
    -------
    int
        Stars on an OTA (gaps and the outside excluded).
    """
    if len(ra) == 0:
        return 0
    ota, _, _ = wcs2odi(headers_by_ota, ra, dec)
    return int(np.count_nonzero(ota >= 0))


@dataclass(frozen=True)
class ReferenceOutcome:
    """What the reference catalogue gave one exposure's astrometric calibration.

    Attributes
    ----------
    catalogue : str
        The catalogue as configured: a file, a ``SkyTable.fits`` folder or an online provider.
    center : tuple of float
        ``(ra, dec)`` of the pointing, degrees.
    n_cutout : int
        Stars within the cut-out radius of the pointing.
    n_field : int
        Stars on the focal plane as pointed (:func:`stars_in_field`).
    n_matched : int
        Stars matched by the accepted solution (0 without one).
    solved : bool
        An astrometric solution was accepted (``WCSCAL``).
    n_total : int or None
        Rows of the whole catalogue file, None when not known (folders, online services).
    """

    catalogue: str
    center: tuple
    n_cutout: int
    n_field: int
    n_matched: int
    solved: bool
    n_total: int | None = None

    def summary(self) -> str:
        """One line for the run log: stars in the field and matched, and the catalogue."""
        return (f"{self.n_field} reference stars in the field ({self.n_cutout} in the cut-out), "
                f"{self.n_matched} matched; catalogue {self.catalogue}")

    def problem(self) -> str | None:
        """What went wrong, in one line; None when a solution was accepted."""
        if self.solved:
            return None
        where = f"RA {self.center[0]:.4f}, Dec {self.center[1]:+.4f}"
        if self.n_field == 0:
            held = "" if self.n_total is None else f"; the file holds {self.n_total} stars"
            return (f"reference catalogue {self.catalogue} has 0 stars in the field at {where} "
                    f"({self.n_cutout} in the cut-out{held}): no astrometric solution (WCSCAL = F)")
        return (f"no astrometric solution (WCSCAL = F): {self.n_field} reference stars of {self.catalogue} in "
                f"the field at {where}, none matched")

    def cards(self) -> list:
        """``(keyword, value, comment)`` header cards: ``ASTRMCAT``, ``WCSNREF``, ``WCSNMTCH``."""
        return [("ASTRMCAT", Path(str(self.catalogue)).name[:68], "astrometric reference catalogue"),
                ("WCSNREF", self.n_field, "reference stars in the field"),
                ("WCSNMTCH", self.n_matched, "reference stars matched")]
