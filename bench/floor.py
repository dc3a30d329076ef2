"""The floor: the least work any pipeline does to one raw exposure, in plain numpy/astropy/sep.

Per OTA: read the raw cell file, subtract each cell's overscan median, paste the cells into the OTA frame,
subtract the master bias, divide by the master flat, estimate the background and extract sources with sep
(6 sigma, the thresholds of podiflow's ``OTACatalog``), and write the OTA (float32 SCI) and its catalogue.
No crosstalk, non-linearity, masks, persistency, WCS or final MEF: ``make bench`` reports podiflow's time
as a multiple of this.

Usage: ``python -m bench.floor EXPOSURE_DIR CALS_DIR OUT_DIR [--procs N]`` where ``CALS_DIR`` holds
``bias_bin1.fits`` and ``dflat_odi_r_bin1.fits`` (podiflow's master MEFs, ``OTAxy.SCI`` extensions).
With ``--procs 2`` the OTAs are shared between two processes (``multiprocessing.Pool``, one OTA per task).
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
from pathlib import Path

import numpy as np
import sep
from astropy.io import fits
from astropy.table import Table

from podisteps.instrument import geometry

__all__ = ["reduce_ota", "reduce_exposure", "main"]


def _master_ota(path: Path, ota: int) -> np.ndarray:
    with fits.open(path, memmap=True) as hdul:
        return np.array(hdul[f"OTA{ota:02d}.SCI"].data, dtype=np.float32)


def reduce_ota(raw: Path, cals: Path, out: Path, filtername: str = "odi_r") -> int:
    """Reduce one raw OTA file minimally and write ``<out>/<raw stem>.fits``; return the number of sources.

    Parameters
    ----------
    raw : Path
        Raw OTA file (``<obsid>.<OTA>.fits``: a primary header and 64 ``xy<cx><cy>`` cell extensions).
    cals : Path
        Folder with ``bias_bin1.fits`` and ``dflat_<filter>_bin1.fits``.
    out : Path
        Output folder.
    filtername : str
        Filter of the flat.
    """
    stem = raw.name.removesuffix(".fz").removesuffix(".fits")
    ota = int(stem.split(".")[-1])
    with fits.open(raw, memmap=False) as hdul:
        cells = [(h.name.lower(), h.data) for h in hdul[1:]]
    ny = cells[0][1].shape[0]
    geo = geometry("full" if ny > 200 else "test", 1)
    sci = np.full((geo.ota_size, geo.ota_size), np.nan, dtype=np.float32)
    data_rows, data_cols = geo.data_section()
    for name, cell in cells:
        cx, cy = int(name[2]), int(name[3])
        over = np.median(cell[geo.overscan_section(cell.shape)])
        rows, cols = geo.target_region(cx, cy)
        sci[rows, cols] = cell[data_rows, data_cols].astype(np.float32) - np.float32(over)
    sci -= _master_ota(cals / "bias_bin1.fits", ota)
    sci /= _master_ota(cals / f"dflat_{filtername}_bin1.fits", ota)
    bad = ~np.isfinite(sci)
    bkg = sep.Background(sci, mask=bad, bw=64, bh=64, fw=3, fh=3)
    sub = sci - bkg.back()
    sub[bad] = 0.0
    sep.set_extract_pixstack(max(sep.get_extract_pixstack(), sub.size // 10))
    objs = sep.extract(sub, 6.0, err=bkg.rms(), mask=bad, minarea=3)
    out.mkdir(parents=True, exist_ok=True)
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(sci, name=f"OTA{ota:02d}.SCI"),
                  fits.BinTableHDU(Table(objs), name="CAT")]).writeto(out / f"{stem}.fits", overwrite=True)
    return len(objs)


def _reduce_args(args):
    return reduce_ota(*args)


def reduce_exposure(exposure: Path, cals: Path, out: Path, procs: int = 1) -> int:
    """Reduce every OTA file of ``exposure`` with :func:`reduce_ota`; return the total number of sources."""
    jobs = [(raw, cals, out) for raw in sorted(Path(exposure).glob("*.fits*"))]
    if procs <= 1:
        return sum(map(_reduce_args, jobs))
    with multiprocessing.get_context("fork").Pool(procs) as pool:
        return sum(pool.imap_unordered(_reduce_args, jobs))


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("exposure", type=Path)
    parser.add_argument("cals", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--procs", type=int, default=1)
    args = parser.parse_args(argv)
    n = reduce_exposure(args.exposure, args.cals, args.out, args.procs)
    print(f"floor: {n} sources in {args.exposure.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
