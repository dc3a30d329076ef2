"""Golden test (as sep does against SExtractor): podiflow's catalogue of one detrended full-size OTA against
Debian's ``source-extractor`` 2.25 run on the same pixels with the configuration of
:mod:`tests.sextractor_golden` (podiflow's detection settings, the MASK plane as a zero-weight map).

Per-column tolerances, on SExtractor's clean sources with S/N > 50 in the 3" aperture whose centre pixel is
unmasked (SExtractor's ``FLAGS`` does not report weight-map holes, and a star centred in a cell gap has
no measurable centre): >= 98 % found by
podiflow within 1 px; windowed positions (podiflow ``X``/``Y`` against ``XWIN_IMAGE``/``YWIN_IMAGE``) median
difference <= 0.01 px; 3" magnitudes (``MAG_D30`` against ``MAG_APER``, complete apertures) median
|difference| <= 0.005 mag overall and below a third of the magnitude error in each S/N decade; rows with
another row within 1.5 px <= 0.5 % of podiflow's catalogue. Skips where the binary is missing.
"""

import tomllib

import luigi
import numpy as np
import pytest
from astropy.io import fits
from scipy.spatial import cKDTree

from podisteps.detect import source_catalog
from podisteps.packagedata import configs_dir
from podisteps.simulate import load_night, simulate_night
from workflows.detrend import DetrendOTA, detrend_options
from workflows.options import ReductionOptions

from .sextractor_golden import run_sextractor, sextractor_binary

pytestmark = [pytest.mark.fullsize,
              pytest.mark.skipif(sextractor_binary() is None,
                                 reason="source-extractor is not installed (apt-get install source-extractor)")]

#: The compared OTA (central) and the field's star density (stars per square degree, for >= 50 bright stars).
OTA, STAR_DENSITY = 33, 40000.0


def _duplicate_fraction(x, y) -> float:
    xy = np.column_stack([x, y])
    d, _ = cKDTree(xy).query(xy, k=2)
    return float((d[:, 1] < 1.5).mean())


def test_catalogue_against_sextractor(tmp_path, podiflow_config):
    spec = tomllib.loads((configs_dir() / "nights" / "demo.toml").read_text())
    spec["night"]["star_density"] = STAR_DENSITY
    exposure = [e for e in load_night(spec).exposures if e.obstype == "OBJECT"][1]  # odi_r, 300 s, 0.9"
    simulate_night(spec, tmp_path / "sim", only=[exposure.dirname])
    podiflow_config(raw_dir=tmp_path / "sim" / "raw", mastercals_dir=tmp_path / "sim" / "mastercals")
    task = DetrendOTA(obsid=exposure.dirname, ota=OTA, options=detrend_options(ReductionOptions()))
    assert luigi.build([task], local_scheduler=True, log_level="WARNING")
    with fits.open(task.output().path) as hdul:
        header, data, mask = hdul[1].header, hdul[1].data.astype(np.float32), hdul[2].data
    gain = float(header["GAIN"])
    ours = source_catalog(data, header, ota=OTA, mask=mask, gain=gain)
    theirs = run_sextractor(data, mask, gain=gain, aperture_px=3.0 / ours.meta["APERSCL"], folder=tmp_path / "sex")

    snr = 1.0857 / np.asarray(theirs["MAGERR_APER"], float)
    centre = mask[np.rint(theirs["YWIN_IMAGE"] - 1.0).astype(int).clip(0, mask.shape[0] - 1),
                  np.rint(theirs["XWIN_IMAGE"] - 1.0).astype(int).clip(0, mask.shape[1] - 1)]
    ref = theirs[(snr > 50) & (theirs["FLAGS"] == 0) & (centre == 0)]  # FLAGS does not report weight-map holes
    snr = 1.0857 / np.asarray(ref["MAGERR_APER"], float)
    dist, row = cKDTree(np.column_stack([ours["X"], ours["Y"]])).query(np.column_stack([ref["XWIN_IMAGE"],
                                                                                         ref["YWIN_IMAGE"]]))
    found = dist < 1.0
    dpos = np.median(dist[found])
    dmag = np.asarray(ours["MAG_D30"], float)[row] - np.asarray(ref["MAG_APER"], float)
    complete = found & (np.asarray(ours["MASKFRAC_D30"])[row] == 0)
    print(f"SExtractor S/N>50: {len(ref)}, found {found.mean():.3f}; position median {dpos:.5f} px; "
          f"3\" mag median |d| {np.median(np.abs(dmag[complete])):.5f} over {complete.sum()}; duplicates "
          f"{_duplicate_fraction(ours['X'], ours['Y']):.4f} (SExtractor "
          f"{_duplicate_fraction(theirs['XWIN_IMAGE'], theirs['YWIN_IMAGE']):.4f})")
    assert len(ref) >= 50
    assert found.mean() >= 0.98
    assert dpos <= 0.01
    assert np.median(np.abs(dmag[complete])) <= 0.005
    for low, high in ((50, 100), (100, 1000), (1000, np.inf)):
        band = complete & (snr > low) & (snr <= high)
        if band.sum() >= 5:
            assert np.median(np.abs(dmag[band])) <= np.median(1.0857 / snr[band]) / 3.0, (low, high)
    assert _duplicate_fraction(ours["X"], ours["Y"]) <= 0.005
