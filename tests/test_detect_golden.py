"""Catalogue fidelity on one detrended full-size OTA (odi_r, 300 s, 0.9" seeing, a dense field), detrended
as a real reduction is: with the master bias and dark that ``-masters=bias,dark`` builds from the night's 3
biases and 2 darks (of this OTA only, to keep the simulation short).

Against the simulator's truth: rows with another row within 1.5 px <= 0.5 %; no true star with S/N > 20
found twice; true stars with S/N > 50 found >= 99 % and with a valid (possibly partial) 3" magnitude
>= 99 %; the point sources' median ``FWHM_WORLD`` (the seeing of the psf and seeing QA plots) and the
``SEEING`` of the photometric calibration (the final MEF's keyword: :func:`podisteps.photometry.photcalib`
against the simulated reference catalogue, positions through the true WCS) within 5 % of the truth.

Golden test (as sep does against SExtractor): the same pixels through Debian's ``source-extractor`` 2.25
with the configuration of :mod:`tests.sextractor_golden` (podiflow's detection settings, the MASK plane
as a zero-weight map). Per-column tolerances, on SExtractor's clean sources with S/N > 50 in the 3"
aperture whose centre pixel is unmasked (SExtractor's ``FLAGS`` does not report weight-map holes, and a
star centred in a cell gap has no measurable centre): >= 98 % found by podiflow within 1 px; windowed
positions (``X``/``Y`` against ``XWIN_IMAGE``/``YWIN_IMAGE``) median difference <= 0.01 px; 3" magnitudes
(``MAG_D30`` against ``MAG_APER``, complete apertures) median |difference| <= 0.005 mag overall and below
a third of the magnitude error in each S/N decade. Skips where the binary is missing.
"""

import json
import math
import tomllib

import luigi
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from scipy.spatial import cKDTree

from podisteps.astrometry import header_wcs
from podisteps.catalog import refcat
from podisteps.catalog.detect import point_sources, source_catalog
from podisteps.instrument.packagedata import configs_dir
from podisteps.photometry import photcalib
from podisteps.simulate import load_night, render_exposure, simulate_night
from podisteps.simulate.night import write_exposure
from workflows.detrend import DetrendOTA, detrend_options
from workflows.options import ReductionOptions
from workflows.paths import night_of

from .sextractor_golden import run_sextractor, sextractor_binary

pytestmark = pytest.mark.fullsize

#: The compared OTA (central) and the field's star density (stars per square degree, for >= 50 bright stars).
OTA, STAR_DENSITY = 33, 40000.0


@pytest.fixture(scope="module")
def detrended(tmp_path_factory):
    """The detrended OTA: ``(header, data, mask, truth stars on it, truth exposure, simulation folder)``;
    night master bias and dark subtracted (asserted through the ``_BIAS``/``_DARK`` provenance cards)."""
    root = tmp_path_factory.mktemp("fidelity")
    spec = tomllib.loads((configs_dir() / "nights" / "demo.toml").read_text())
    spec["night"]["star_density"] = STAR_DENSITY
    night = load_night(spec)
    exposure = [e for e in night.exposures if e.obstype == "OBJECT"][1]  # odi_r, 300 s, 0.9"
    simulate_night(spec, root / "sim", only=[exposure.dirname])
    for frame in (e for e in night.exposures if e.obstype in ("BIAS", "DARK")):  # this OTA of the night's cals
        write_exposure(render_exposure(frame, night, otas=[OTA]), root / "sim")
    cfg = luigi.configuration.get_config()
    saved = dict(cfg.items("podiflow"))
    for key, folder in (("raw_dir", "sim/raw"), ("mastercals_dir", "sim/mastercals"), ("work_dir", "work")):
        cfg.set("podiflow", key, str(root / folder))
    try:
        task = DetrendOTA(obsid=exposure.dirname, ota=OTA,
                          options=detrend_options(ReductionOptions().replace(masters=("bias", "dark"))))
        assert luigi.build([task], local_scheduler=True, log_level="WARNING")
        path = task.output().path
    finally:
        for key, value in saved.items():
            cfg.set("podiflow", key, value)
    with fits.open(path) as hdul:
        header, data, mask = hdul[1].header, hdul[1].data.astype(np.float32), hdul[2].data
    assert header["_BIAS"] == header["_DARK"] == "successful"
    truth_dir = root / "sim" / "truth" / night_of(exposure.dirname) / exposure.dirname
    stars = Table.read(truth_dir / "stars.fits")
    return (header, data, mask, stars[stars["ota"] == OTA], json.loads((truth_dir / "exposure.json").read_text()),
            root / "sim")


def _duplicate_fraction(x, y) -> float:
    xy = np.column_stack([x, y])
    d, _ = cKDTree(xy).query(xy, k=2)
    return float((d[:, 1] < 1.5).mean())


def _true_snr(stars: Table, *, sky_adu: float, gain: float, scale: float) -> np.ndarray:
    """S/N of the true stars in a 3" aperture (source and sky Poisson noise)."""
    npix = math.pi * (1.5 / scale) ** 2
    signal = np.asarray(stars["flux_adu"], float) * gain
    return signal / np.sqrt(signal + npix * sky_adu * gain)


def _mef_seeing(cat: Table, truth: dict, sim) -> float:
    """``SEEING`` as the photometric calibration writes it, with RA/DEC from the OTA's true WCS."""
    cat = cat.copy()
    with fits.open(sim / "truth" / night_of(truth["dirname"]) / truth["dirname"] / "wcs.fits") as hdul:
        cat["RA"], cat["DEC"] = header_wcs(hdul[f"OTA{OTA:02d}.SCI"].header).all_pix2world(cat["X"], cat["Y"], 1)
    ref = refcat.load_reference(sim / "refcat" / "refcat.fits", float(np.median(cat["RA"])),
                                float(np.median(cat["DEC"])), 0.2, epoch=truth["epoch"])
    result = photcalib(cat, ref, filtername=truth["filter"], exptime=truth["exptime"], airmass=truth["airmass"])
    assert result.seeing_n >= 20
    return result.seeing


def test_catalogue_against_the_truth(detrended):
    header, data, mask, stars, truth, sim = detrended
    cat = source_catalog(data, header, ota=OTA, mask=mask, gain=float(header["GAIN"]))
    ny, nx = data.shape
    x, y = np.asarray(stars["x"], float), np.asarray(stars["y"], float)
    ix, iy = np.rint(x).astype(int).clip(0, nx - 1), np.rint(y).astype(int).clip(0, ny - 1)
    usable = ((x > 20) & (x < nx - 20) & (y > 20) & (y < ny - 20) & (mask[iy, ix] == 0)
              & np.asarray(stars["on_cell"], bool))
    snr = _true_snr(stars, sky_adu=float(np.median(cat["BACKGROUND"])), gain=float(header["GAIN"]),
                    scale=truth["pixel_scale_arcsec"])
    tree = cKDTree(np.column_stack([cat["X"] - 1.0, cat["Y"] - 1.0]))
    rows_near = np.array([len(r) for r in tree.query_ball_point(np.column_stack([x, y]), 1.5)])
    dist, row = tree.query(np.column_stack([x, y]))
    bright = usable & (snr > 50)
    valid = bright & (dist < 1.0) & (np.asarray(cat["MAG_D30"])[row] < 90)
    seeing, mef_seeing = float(np.median(cat["FWHM_WORLD"][point_sources(cat)])), _mef_seeing(cat, truth, sim)
    print(f"rows {len(cat)}, duplicates {_duplicate_fraction(cat['X'], cat['Y']):.4f}; S/N>50: {bright.sum()}, "
          f"found {(bright & (dist < 1.0)).sum()}, valid 3\" {valid.sum()}; seeing {seeing:.3f}, SEEING {mef_seeing:.3f} "
          f"(truth {truth['psf']['fwhm_arcsec']})")
    assert bright.sum() >= 50
    assert _duplicate_fraction(cat["X"], cat["Y"]) <= 0.005
    assert not (usable & (snr > 20) & (rows_near > 1)).any()
    assert (dist[bright] < 1.0).mean() >= 0.99 and valid.sum() >= 0.99 * bright.sum()
    partial = valid & (np.asarray(cat["MASKFRAC_D30"])[row] > 0)
    assert (np.asarray(cat["FLAGS"])[row][partial] & 32).all()
    assert abs(seeing / truth["psf"]["fwhm_arcsec"] - 1.0) <= 0.05
    assert abs(mef_seeing / truth["psf"]["fwhm_arcsec"] - 1.0) <= 0.05


@pytest.mark.skipif(sextractor_binary() is None,
                    reason="source-extractor is not installed (apt-get install source-extractor)")
def test_catalogue_against_sextractor(detrended, tmp_path):
    header, data, mask, _, _, _ = detrended
    gain = float(header["GAIN"])
    ours = source_catalog(data, header, ota=OTA, mask=mask, gain=gain)
    theirs = run_sextractor(data, mask, gain=gain, aperture_px=3.0 / ours.meta["APERSCL"], folder=tmp_path / "sex")

    snr = 1.0857 / np.asarray(theirs["MAGERR_APER"], float)
    centre = mask[np.rint(theirs["YWIN_IMAGE"] - 1.0).astype(int).clip(0, mask.shape[0] - 1),
                  np.rint(theirs["XWIN_IMAGE"] - 1.0).astype(int).clip(0, mask.shape[1] - 1)]
    ref = theirs[(snr > 50) & (theirs["FLAGS"] == 0) & (centre == 0)]
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
