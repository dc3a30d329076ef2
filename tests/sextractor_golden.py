"""Run Debian's ``source-extractor`` (SExtractor 2.25) on a detrended OTA, for the golden test.

The configuration is written into a scratch folder by :func:`run_sextractor`; it mirrors podiflow's own
detection (:mod:`podisteps.catalog.detect`): ``DETECT_THRESH 6``, ``DETECT_MINAREA 3``, no filter,
``DEBLEND_NTHRESH 32``, ``DEBLEND_MINCONT 0.1``, cleaning, ``BACK_SIZE 64``, ``BACK_FILTERSIZE 3``,
``MAG_ZEROPOINT 0``, the header's ``GAIN``, a 3" diameter aperture (``PHOT_APERTURES`` in pixels from the
nominal scale), and the MASK plane as a weight map (weight 0 where MASK != 0 or the pixel is NaN,
``WEIGHT_TYPE MAP_WEIGHT``). Output columns: windowed and isophotal positions (1-based), ``MAG_APER``,
``MAGERR_APER``, ``FLUX_RADIUS``, ``FLAGS``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

#: The binary's name in Debian (``apt-get install source-extractor``).
SEXTRACTOR = "source-extractor"

PARAMS = ("NUMBER", "XWIN_IMAGE", "YWIN_IMAGE", "X_IMAGE", "Y_IMAGE", "MAG_APER", "MAGERR_APER", "FLUX_RADIUS",
          "FLAGS")


def sextractor_binary() -> str | None:
    """The path of ``source-extractor``, or None when it is not installed."""
    return shutil.which(SEXTRACTOR)


def run_sextractor(data: np.ndarray, mask: np.ndarray, *, gain: float, aperture_px: float, folder: Path) -> Table:
    """SExtractor's catalogue of ``data`` (ADU, NaN where undefined) with ``mask`` (nonzero = bad).

    Parameters
    ----------
    data, mask : numpy.ndarray
        Image and mask, shape ``(ny, nx)``.
    gain : float
        e-/ADU.
    aperture_px : float
        Aperture diameter, pixels.
    folder : pathlib.Path
        Scratch folder for the images, configuration and catalogue.

    Returns
    -------
    astropy.table.Table
        The :data:`PARAMS` columns, one row per source.
    """
    folder.mkdir(parents=True, exist_ok=True)
    bad = (np.asarray(mask) != 0) | ~np.isfinite(data)
    fits.writeto(folder / "sci.fits", np.where(bad, 0.0, data).astype(np.float32), overwrite=True)
    fits.writeto(folder / "weight.fits", (~bad).astype(np.float32), overwrite=True)
    (folder / "golden.param").write_text("\n".join(PARAMS) + "\n")
    config = {
        "CATALOG_NAME": str(folder / "golden.cat"), "CATALOG_TYPE": "FITS_1.0",
        "PARAMETERS_NAME": str(folder / "golden.param"), "DETECT_TYPE": "CCD", "DETECT_MINAREA": "3",
        "DETECT_THRESH": "6", "ANALYSIS_THRESH": "6", "FILTER": "N", "DEBLEND_NTHRESH": "32",
        "DEBLEND_MINCONT": "0.1", "CLEAN": "Y", "CLEAN_PARAM": "1.0", "MASK_TYPE": "CORRECT",
        "WEIGHT_TYPE": "MAP_WEIGHT", "WEIGHT_IMAGE": str(folder / "weight.fits"), "WEIGHT_GAIN": "N",
        "PHOT_APERTURES": f"{aperture_px:.4f}", "SATUR_LEVEL": "60000", "MAG_ZEROPOINT": "0", "GAIN": f"{gain}",
        "PIXEL_SCALE": "0", "BACK_SIZE": "64", "BACK_FILTERSIZE": "3", "BACKPHOTO_TYPE": "GLOBAL",
        "VERBOSE_TYPE": "QUIET", "CHECKIMAGE_TYPE": "NONE", "MEMORY_PIXSTACK": "3000000",
        "MEMORY_BUFSIZE": "4096", "MEMORY_OBJSTACK": "30000",
    }
    args = [sextractor_binary() or SEXTRACTOR, str(folder / "sci.fits"), "-c", "/dev/null"]
    for key, value in config.items():
        args += [f"-{key}", value]
    subprocess.run(args, check=True, capture_output=True, cwd=folder)
    return Table.read(folder / "golden.cat", hdu=1)
