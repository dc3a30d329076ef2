"""``-photflat``, ``-autophotflat`` and ``-photcatalog`` through the Luigi tasks (issue 8).

- ``-photflat=FILE`` on the test-small night: a QuickReduce-format file of 1.05 on OTA33 and 1 elsewhere
  divides OTA33's detrended pixels by exactly 1.05, leaves OTA34 alone, makes OTA33's catalogue magnitudes
  fainter by 2.5 log10(1.05); the file is in ``ASSOCIATIONS`` (step ``photflat``, applied) and ``_FOTFLAT``; a
  file for another filter is refused naming the file.
- ``-autophotflat`` against truth: one test-instrument exposure without detector effects, reduced with a flat
  field that is wrong by a known 10 % gradient across the focal plane (the stars are then off by it).
  The photometric flat must undo that gradient, the zero-point scatter must drop, and the zero point must stay
  within 0.01 mag of the simulator's.
- ``-photcatalog=FILE``: a copy of the reference catalogue 0.1 mag fainter in every band moves PHOTZP by +0.1.
"""

import json
import math

import luigi
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from podisteps.errors import CalibrationError
from podisteps.photometry.photflat import photflat_filename, photflat_hdulist
from podisteps.simulate import simulate_night
from tests.test_photometry_sim import ELECTRONS, NIGHT, night_spec, pixel_integration_offset
from workflows.astrometry import OTACatalog
from workflows.base import options_param
from workflows.calibrations import resolve_calibrations
from workflows.collect import CollectCells
from workflows.detrend import DetrendOTA, detrend_options
from workflows.options import MEF_FAMILIES, ReductionOptions
from workflows.paths import night_index
from workflows.photometry import AutoPhotCalib, PhotCalib, PhotFlat, PhotReference, photometry_task

FACTOR = 1.05
GRADIENT = 0.1  # peak-to-peak error of the wrong flat across the focal plane


def _build(tasks) -> bool:
    return luigi.build(tasks, local_scheduler=True, log_level="WARNING")


# ---- -photflat=FILE on the test-small night --------------------------------------------------------------


@pytest.fixture()
def small(small_night, podiflow_config):
    """The first odi_r exposure of the test-small night and a photflat file: 1.05 on OTA33, 1 elsewhere."""
    root = podiflow_config(raw_dir=small_night / "raw", mastercals_dir=small_night / "mastercals")
    rec = next(e for e in night_index(NIGHT).select(obstype="OBJECT") if e.filter == "odi_r")
    maps = {ota: np.full((512, 512), FACTOR if ota == 33 else 1.0, np.float32) for ota in rec.otas}  # test OTAs
    folder = root / "pf"
    folder.mkdir()
    photflat_hdulist(maps, filtername="odi_r", binning=1).writeto(folder / photflat_filename("odi_r", 1))
    photflat_hdulist(maps, filtername="odi_i", binning=1).writeto(root / "wrong.fits")
    return rec, folder


def _detrended(rec, ota, **options):
    return DetrendOTA(obsid=rec.obsid, ota=ota, options=detrend_options(ReductionOptions().replace(**options)))


def test_photflat_file_divides_the_pixels_and_shifts_the_magnitudes(small):
    rec, folder = small
    path = str(folder / photflat_filename("odi_r", 1))
    plain = {ota: _detrended(rec, ota) for ota in (33, 34)}
    flat = {ota: _detrended(rec, ota, photflat=path) for ota in (33, 34)}
    catalogs = [OTACatalog(obsid=rec.obsid, ota=33, options=t.options) for t in (plain[33], flat[33])]
    assert _build([*plain.values(), *flat.values(), *catalogs])
    for ota in (33, 34):
        before, after = (fits.getdata(t.output().path, 1) for t in (plain[ota], flat[ota]))
        good = np.isfinite(before)
        assert np.array_equal(good, np.isfinite(after)) and good.mean() > 0.8
        ratio = before[good] / after[good]
        assert np.allclose(ratio, FACTOR if ota == 33 else 1.0, rtol=1e-6, atol=0), ota
    hdr = fits.getheader(flat[33].output().path, 1)
    assert hdr["_FOTFLAT"] == "successful" and fits.getheader(plain[33].output().path, 1)["_FOTFLAT"] == "not selected"
    # sep measures the same sources, each 2.5 log10(1.05) = 0.0530 mag fainter
    cat0, cat1 = (Table(fits.getdata(t.output()["catalog"].path, "CAT.ODI")) for t in catalogs)
    assert len(cat0) == len(cat1) > 20
    good = (cat0["FLAGS"] == 0) & (cat0["MAG_D40"] < 75)
    dmag = np.asarray(cat1["MAG_D40"] - cat0["MAG_D40"])[good]
    print(f"OTA33 catalogue shift {np.median(dmag):.5f} (expected {2.5 * math.log10(FACTOR):.5f}), "
          f"spread {np.ptp(dmag):.2e}")
    assert np.allclose(dmag, 2.5 * math.log10(FACTOR), atol=2e-4)
    assert np.allclose(cat1["X"], cat0["X"], atol=1e-3)


def test_photflat_folder_auto_and_associations(small):
    rec, folder = small
    opts = ReductionOptions().replace(photflat=str(folder))
    assert resolve_calibrations(rec, opts).photflat == folder / photflat_filename("odi_r", 1)
    for name in ("bias_bin1.fits", "dark_yes_bin1.fits", "dflat_odi_r_bin1.fits"):  # -cals: only stats here
        (folder / name).touch()
    auto = resolve_calibrations(rec, opts.replace(photflat="auto", cals=str(folder)))
    assert auto.photflat == folder / photflat_filename("odi_r", 1)
    with pytest.raises(CalibrationError, match=r"-photflat: no photflat_odi_r_bin1.fits in"):
        resolve_calibrations(rec, ReductionOptions().replace(photflat="auto"))
    task = CollectCells(obsid=rec.obsid, options=options_param(opts.replace(singleota=33), MEF_FAMILIES))
    assert _build([task])
    with fits.open(task.output().path) as hdul:
        assoc = Table(hdul["ASSOCIATIONS"].data)
        assert hdul[0].header["_FOTFLAT"] == "successful"
    rows = [(r["filename"], bool(r["applied"])) for r in assoc if r["correction"] == "photflat"]
    assert rows == [(photflat_filename("odi_r", 1), True)]


def test_photflat_for_another_filter_is_refused(small):
    rec, folder = small
    wrong = str(folder.parent / "wrong.fits")
    task = _detrended(rec, 33, photflat=wrong)
    assert _build(luigi.task.flatten(task.requires()))
    with pytest.raises(CalibrationError, match=rf"{wrong}: calibration is for FILTER = 'odi_i', the frame has 'odi_r'"):
        task.run()


# ---- -autophotflat against truth -------------------------------------------------------------------------


def _wrong_flat(path, otas, ota_size: int) -> dict:
    """A master flat 1 + 0.1 (X/W - 1/2) across the focal plane (X: OTA column x size + pixel): OTA -> map."""
    x = np.arange(ota_size, dtype=float)
    width = (max(o // 10 for o in otas) + 1) * ota_size
    maps = {ota: np.tile(1.0 + GRADIENT * ((ota // 10) * ota_size + x) / width - GRADIENT / 2, (ota_size, 1))
            for ota in otas}
    primary = fits.PrimaryHDU()
    primary.header["FILTER"] = "odi_r"
    hdus = [fits.ImageHDU(m.astype(np.float32), header=fits.Header({"FPPOS": f"xy{o:02d}", "EXTNAME": f"OTA{o:02d}.SCI"}))
            for o, m in maps.items()]
    fits.HDUList([primary, *hdus]).writeto(path)
    return maps


@pytest.fixture(scope="module")
def gradient_exposure(tmp_path_factory):
    """One odi_r test-instrument exposure (60 s, dense field, no detector effects) and a wrong flat (maps)."""
    root = tmp_path_factory.mktemp("autophotflat")
    simulate_night(night_spec(1, filters=["odi_r"], exptime=60.0, star_density=60000.0), root / "sim")
    otas = json.loads(next((root / "sim" / "truth" / NIGHT).glob("*/exposure.json")).read_text())["otas"]
    return root, _wrong_flat(root / "dflat_odi_r_bin1.fits", otas, 512)


@pytest.fixture()
def autophot(gradient_exposure, podiflow_config):
    """The exposure's record, the wrong flat and the options (-fixwcs -photcalib -gain=header -flat -autophotflat)."""
    root, maps = gradient_exposure
    podiflow_config(raw_dir=root / "sim" / "raw", mastercals_dir=root / "sim" / "mastercals",
                    work_dir=root / "work", out_dir=root / "out")
    luigi.configuration.get_config().set("podiflow", "refcat", str(root / "sim" / "refcat" / "refcat.fits"))
    rec = night_index(NIGHT).select(obstype="OBJECT")[0]
    opts = ReductionOptions().replace(fixwcs=True, photcalib=True, gain="header",
                                      flat=str(root / "dflat_odi_r_bin1.fits"), autophotflat=True)
    return root, rec, maps, opts


def test_autophotflat_undoes_a_wrong_flat(autophot):
    root, rec, wrong, opts = autophot
    mef = CollectCells(obsid=rec.obsid, options=options_param(opts, MEF_FAMILIES))
    assert _build([mef])
    auto = photometry_task(rec.obsid, opts)
    assert isinstance(auto, AutoPhotCalib)
    init, pf_task = auto.requires()["init"], auto.requires()["photflat"]
    assert isinstance(init, PhotCalib) and isinstance(pf_task, PhotFlat) and pf_task.requires()["photcal"] is init
    ph, ph0 = fits.getheader(auto.output().path), fits.getheader(init.output().path)

    # the flat in QuickReduce's format undoes the gradient: pf x wrong flat is flat
    with fits.open(pf_task.output().path) as hdul:
        assert hdul[0].header["FILTER"] == "odi_r" and hdul[0].header["PHFSTARS"] > 500
        pf = {int(h.name[3:5]): h.data for h in hdul[1:]}
    assert set(pf) == set(rec.otas) and pf[33].shape == (512, 512)
    product = np.concatenate([(pf[o] * wrong[o])[::16, ::16].ravel() for o in pf])
    error = np.concatenate([wrong[o][::16, ::16].ravel() for o in pf])
    resid, injected = np.std(product / product.mean()), np.std(error / error.mean())
    print(f"flat error rms {injected:.4f} -> {resid:.4f} after the photometric flat")
    assert resid < 0.35 * injected

    # zero point: scatter down, still the true one
    truth = json.loads((root / "sim" / "truth" / NIGHT / rec.obsid / "exposure.json").read_text())
    zp_true = (truth["zeropoint"]["aperture_diameter_arcsec_1s"][str(int(ph["MAG0SIZE"]))] + ELECTRONS
               + pixel_integration_offset(truth["psf"], ph["MAG0SIZE"], truth["pixel_scale_arcsec"]))
    print(f"PHOTZPSD {ph0['PHOTZPSD']:.4f} -> {ph['PHOTZPSD']:.4f}; PHOTZP - truth {ph0['PHOTZP'] - zp_true:+.4f} "
          f"-> {ph['PHOTZP'] - zp_true:+.4f}; N {ph0['PHOTZP_N']} -> {ph['PHOTZP_N']}")
    assert ph["PHOTZPSD"] < 0.8 * ph0["PHOTZPSD"]
    assert abs(ph["PHOTZP"] - zp_true) < 0.01
    assert ph["PHZPINIT"] == ph0["PHOTZP"] and ph["PHSDINIT"] == ph0["PHOTZPSD"]

    # the per-star zero points no longer follow the injected offset -2.5 log10(flat error) (slope, mag/mag)
    def slope(table):
        used = table[table["USED4CALIB"]]
        injected = -2.5 * np.log10([wrong[int(o)][int(round(y)) - 1, int(round(x)) - 1]
                                    for o, x, y in zip(used["ODI_OTA"], used["ODI_X"], used["ODI_Y"])])
        return np.polyfit(injected, used["ZP"], 1)[0]

    with fits.open(mef.output().path) as hdul:
        names = [h.name for h in hdul]
        raw, final = Table(hdul["CAT.PHOTCALIB.RAW"].data), Table(hdul["CAT.PHOTCALIB"].data)
        hdr = hdul[0].header
        sky = hdr["SKYLEVEL"]
        mef33 = hdul["OTA33.SCI"].data
        odi = Table(hdul["CAT.ODI"].data)
    s0, s1 = slope(raw), slope(final)
    print(f"ZP slope against the injected error {s0:+.3f} -> {s1:+.3f}")
    assert s0 > 0.7 and abs(s1) < 0.25
    assert names[names.index("WCSCAL.CAT") + 1:names.index("SKYLEVEL")] == ["CAT.PHOTCALIB.RAW", "CAT.PHOTREF",
                                                                         "CAT.PHOTCALIB"]
    assert hdr["_AUTOFOT"] == "successful" and hdr["_PHOTCAL"] == "successful"
    # final pixels: (data - SKYLEVEL) / pf + SKYLEVEL of the detrended OTA
    detrended = fits.getdata(DetrendOTA(obsid=rec.obsid, ota=33,
                                        options=detrend_options(opts)).output().path, 1)
    good = np.isfinite(detrended)
    assert np.allclose(mef33[good], ((detrended - sky) / pf[33] + sky)[good], rtol=1e-5, atol=1e-3)
    # CAT.ODI carries the corrected magnitudes (FixWCS's minus 2.5 log10 pf)
    fix = Table(fits.getdata(auto.requires()["fixwcs"].output().path, "CAT.ODI"))
    sel = (odi["OTA"] == 33) & (odi["MAG_D40"] < 75)
    expect = fix["MAG_D40"][sel] + 2.5 * np.log10(pf[33][np.rint(odi["Y"][sel]).astype(int) - 1,
                                                        np.rint(odi["X"][sel]).astype(int) - 1])
    assert np.allclose(odi["MAG_D40"][sel], expect, atol=1e-4)
    assoc = Table(fits.getdata(mef.output().path, "ASSOCIATIONS"))
    assert [bool(r["applied"]) for r in assoc if r["correction"] == "photflat"] == [True]


def test_photflat_product_feeds_photflat_option(autophot):
    """The PhotFlat product is a valid -photflat file: given back, the first calibration's scatter drops too."""
    root, rec, _, opts = autophot
    pf_path = photometry_task(rec.obsid, opts).requires()["photflat"].output().path
    again = PhotCalib(obsid=rec.obsid, options=options_param(opts.replace(autophotflat=False, photflat=pf_path),
                                                             ["DetrendOTA", "OTACatalog", "FixWCS", "PhotCalib"]))
    assert _build([again])
    init = fits.getheader(photometry_task(rec.obsid, opts).requires()["init"].output().path)
    ph = fits.getheader(again.output().path)
    print(f"-photflat=<PhotFlat product>: PHOTZPSD {init['PHOTZPSD']:.4f} -> {ph['PHOTZPSD']:.4f}")
    assert ph["PHOTZPSD"] < 0.8 * init["PHOTZPSD"]


def test_photcatalog_file_is_used(autophot, tmp_path):
    root, rec, _, opts = autophot
    ref = Table.read(root / "sim" / "refcat" / "refcat.fits")
    for band in "ugriz":
        ref[band] += 0.1
    shifted = tmp_path / "shifted.fits"
    ref.write(shifted)
    base = opts.replace(autophotflat=False)
    tasks = [photometry_task(rec.obsid, base), photometry_task(rec.obsid, base.replace(photcatalog=str(shifted)))]
    assert "refcat" not in tasks[0].requires() and isinstance(tasks[1].requires()["refcat"], PhotReference)
    assert _build(tasks)
    zp0, zp1 = (fits.getval(t.output().path, "PHOTZP") for t in tasks)
    print(f"PHOTZP {zp0:.4f} -> {zp1:.4f} with the catalogue 0.1 mag fainter")
    assert zp1 - zp0 == pytest.approx(0.1, abs=1e-6)
    cut = fits.getheader(tasks[1].requires()["refcat"].output().path)  # the cut-out says where it came from
    assert [v for k, v in cut.items() if k.startswith("PFIN")] == [f"refcat:{shifted.resolve()}"]
