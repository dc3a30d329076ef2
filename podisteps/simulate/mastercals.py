"""Calibration inputs for the pipeline: the mastercals WCS tree and the reference catalogue.

- ``<outdir>/mastercals/wcs/<layout>/wcs.history`` (``0.0 podiflow_sim_<layout>.fits``) and that file:
  QuickReduce's format (header-only ``OTAxy.SCI`` extensions, CTYPE TAN with TPV PV cards, CRVAL = the
  canned pointing offsets), from the *perturbed* model (``distortion.perturbed_models``: 32-48 mas rms per
  OTA);
- ``<outdir>/truth/wcs/<layout>/distortion_true.fits`` (the unperturbed model, CTYPE TPV) and
  ``perturbation.json`` (rms difference per OTA, mas);
- ``<outdir>/refcat/refcat.fits``: the reference catalogue (``stars.refcat_table``), table ``REFCAT``;
- ``<outdir>/truth/population.fits``: the true star population at the catalogue epoch.
"""

from __future__ import annotations

import json
from pathlib import Path

from astropy.io import fits
from astropy.table import Table

from ..atomic import write_fits_atomic, write_text_atomic
from . import distortion
from .stars import REFCAT_EPOCH, refcat_table

__all__ = ["write_wcs_mastercals", "write_refcat", "write_population", "distortion_filename"]


def distortion_filename(layout: str) -> str:
    """Name of the simulated distortion file of ``layout``."""
    return f"podiflow_sim_{layout}.fits"


def write_wcs_mastercals(outdir, layout: str, *, seed: int) -> Path:
    """Write the perturbed distortion file, its history file and the true model; return the history path."""
    outdir = Path(outdir)
    perturbed, rms = distortion.perturbed_models(layout, seed)
    folder = outdir / "mastercals" / "wcs" / layout
    name = distortion_filename(layout)
    hdul = distortion.distortion_hdulist(layout, perturbed, projection="TAN")
    for hdu in hdul[1:]:
        ota = int(hdu.header["EXTNAME"][3:5])
        hdu.header["ASTRRMS"] = (round(rms[ota] / 1000.0, 4), "[arcsec] rms error of this model (simulated)")
    write_fits_atomic(hdul, folder / name)
    history = write_text_atomic(f"0.0 {name}\n", folder / "wcs.history")
    true_dir = outdir / "truth" / "wcs" / layout
    write_fits_atomic(distortion.distortion_hdulist(layout, distortion.models(layout), projection="TPV"),
                      true_dir / "distortion_true.fits")
    text = json.dumps({"rms_mas": {f"{o:02d}": v for o, v in rms.items()},
                       "method": "random shift, rotation, scale and quadratic PV terms per OTA, scaled to an "
                                 "rms drawn uniformly in 32-48 mas over a 17x17 grid of the OTA"}, indent=1)
    write_text_atomic(text + "\n", true_dir / "perturbation.json")
    return history


def _table_hdu(table: Table, extname: str) -> fits.BinTableHDU:
    hdu = fits.table_to_hdu(table)
    hdu.header["EXTNAME"] = extname
    return hdu


def write_refcat(outdir, population, *, seed: int) -> Path:
    """Write ``<outdir>/refcat/refcat.fits`` from ``population``; return its path."""
    path = Path(outdir) / "refcat" / "refcat.fits"
    return write_fits_atomic(fits.HDUList([fits.PrimaryHDU(), _table_hdu(refcat_table(population, seed=seed),
                                                                          "REFCAT")]), path)


def write_population(outdir, population) -> Path:
    """Write the true population (``truth/population.fits``, table ``POPULATION``); return its path."""
    t = Table()
    t["id"] = population.id
    t["ra"] = population.ra
    t["dec"] = population.dec
    t["pmra"] = population.pmra
    t["pmdec"] = population.pmdec
    for b, m in population.mags.items():
        t[b] = m
    t.meta["EPOCH"] = REFCAT_EPOCH
    path = Path(outdir) / "truth" / "population.fits"
    return write_fits_atomic(fits.HDUList([fits.PrimaryHDU(), _table_hdu(t, "POPULATION")]), path)
