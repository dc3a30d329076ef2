"""QA plots and night summaries as pure functions, on synthetic final-MEF contents (tests/qafactory.py); with
``-autophotflat`` on an exposure whose init zero points and photometric flat have a known trend."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.table import Table
from matplotlib.colors import rgb_to_hsv
from matplotlib.image import imread

from podisteps import qa as qaplots
from podisteps.qa import PLOTS, draw, exposure_qa, nightsummary, plan_plots, qa_filename

from .qafactory import FLAT_SLOPE, IDENT, mef_contents, write_photflat

OTAS = (22, 33, 34, 43)
PER_OTA = [k.name for k in PLOTS if k.per_ota]
AUTO = {"autophotflat"}
AUTO_PLOTS = {"photZP_init", "photZP_map_init", "autophotflat"}


@pytest.fixture(scope="module")
def contents():
    return mef_contents(otas=OTAS, stars_per_ota=30)


@pytest.fixture(scope="module")
def qa(contents):
    primary, sci, tables, headers = contents
    return exposure_qa("o" + IDENT["OBSID"], primary, sci, tables, headers)


def _auto_qa(folder, **kwargs):
    """An -autophotflat exposure with its photometric flat (``kwargs`` for write_photflat)."""
    primary, sci, tables, headers = mef_contents(otas=OTAS, stars_per_ota=30, autophotflat=True)
    write_photflat(folder / "photflat.fits", sci, **kwargs)
    with fits.open(folder / "photflat.fits") as hdul:
        blocks = qaplots.photflat_blocks(hdul)
    return exposure_qa("o" + IDENT["OBSID"], primary, sci, tables, headers, photflat=blocks)


@pytest.fixture(scope="module")
def qa_auto(tmp_path_factory):
    return _auto_qa(tmp_path_factory.mktemp("photflat"))


def _coloured_fraction(png) -> float:
    """Fraction of pixels with a clear colour (not white, grey or black): drawn data, not only frame and text."""
    rgb = imread(png)[..., :3]
    hsv = rgb_to_hsv(rgb)
    return float(np.mean((hsv[..., 1] > 0.25) & (hsv[..., 2] > 0.2)))


@pytest.mark.parametrize("formats, ota_level, subdir, switches", [
    (("png",), True, None, AUTO),
    (("png", "pdf"), False, "QA", ()),
    (("png",), True, "myqa", ()),
    (("png",), False, "QA", AUTO),
])
def test_every_expected_file(qa, qa_auto, tmp_path, formats, ota_level, subdir, switches):
    mef = tmp_path / "o20131005T014745.0" / "o20131005T014745.0.fits"
    exposure = qa_auto if switches else qa
    planned, skipped = plan_plots(exposure, mef, formats=formats, ota_level=ota_level, subdir=subdir,
                                  switches=switches)
    assert not skipped
    files = [p for plot in planned for p in plot.paths]
    assert len(files) == len(set(files))
    for plot in planned:
        draw(exposure, plot)
    assert all(p.is_file() and p.stat().st_size > 1000 for p in files)
    written = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(files)  # nothing else, no temporary files left behind
    wanted = {k.name for k in PLOTS} - (set() if switches else AUTO_PLOTS)
    for name in PER_OTA:
        n = sum(1 for plot in planned if plot.name == name and plot.ota is not None)
        assert n == (len(OTAS) if ota_level and name in wanted else 0), name
    focal = {plot.name for plot in planned if plot.ota is None}
    assert focal == wanted
    assert {p.suffix for p in files} == {f".{f}" for f in formats}
    if switches and not subdir:
        assert mef.parent / "o20131005T014745.0.photZP_map_init_OTA33.png" in files
        assert mef.parent / "o20131005T014745.0.autophotflat.png" in files
    if subdir:
        assert all(p.parent.name in (subdir, *PER_OTA) for p in files)
        assert qa_filename(mef, "wcs1", "png", ota=33, subdir=subdir) == mef.parent / subdir / "wcs1" / "OTA33.png"


def test_file_names_follow_the_spec_and_never_collide(tmp_path):
    mef = tmp_path / "night" / "o1" / "o1.fits"
    assert qa_filename(mef, "wcs1", "png") == mef.parent / "o1.wcs1.png"
    assert qa_filename(mef, "wcs1", "pdf", ota=33) == mef.parent / "o1.wcs1_OTA33.pdf"
    assert qa_filename(mef, "seeing", "png", subdir="QA") == mef.parent / "QA" / "seeing.png"
    # two outputs in one folder (podi_collectcells): their QA trees stay apart
    shared = tmp_path / "red"
    a, b = shared / "a.fits", shared / "b.fits.fz"
    for subdir in (None, "QA"):
        for ota in (None, 33):
            pa, pb = (qa_filename(m, "wcs1", "png", ota=ota, subdir=subdir) for m in (a, b))
            assert pa != pb
    assert qa_filename(b, "wcs1", "png", subdir="QA") == shared / "QA" / "b" / "wcs1.png"


def test_wcs1_draws_one_point_per_matched_star(qa, contents, tmp_path):
    n_matched = len(contents[2]["WCSCAL.CAT"])
    result = draw(qa, qaplots.PlannedPlot("wcs1", None, (tmp_path / "w.png",)))
    assert result.counts["points"] == n_matched
    per_ota = [draw(qa, qaplots.PlannedPlot("wcs1", ota, (tmp_path / f"w{ota}.png",))).counts["points"]
               for ota in OTAS]
    assert sum(per_ota) == n_matched and min(per_ota) > 0
    assert draw(qa, qaplots.PlannedPlot("wcs2", None, (tmp_path / "q.png",))).counts["arrows"] == n_matched
    seeing = draw(qa, qaplots.PlannedPlot("seeing", None, (tmp_path / "s.png",)))
    assert seeing.counts["points"] == len(qa.stars) == len(contents[2]["CAT.ODI"])


def test_plots_are_not_blank_and_carry_the_exposure(qa_auto, tmp_path):
    planned, _ = plan_plots(qa_auto, tmp_path / "x.fits", formats=("png",), ota_level=False, subdir=None,
                            switches=AUTO)
    assert {plot.name for plot in planned} >= AUTO_PLOTS
    for plot in planned:
        result = draw(qa_auto, plot)
        image = imread(result.paths[0])
        assert image.shape[0] > 300 and np.var(image[..., :3]) > 1e-3, plot.name
        assert _coloured_fraction(result.paths[0]) > (0.05 if plot.name == "autophotflat" else 5e-4), plot.name
        for value in ("o" + IDENT["OBSID"], IDENT["OBJECT"], IDENT["FILTER"], "EXPTIME 120 s"):
            assert value in result.title, (plot.name, value)
        assert result.title.startswith(plot.name + ":")
        assert ("first (init) calibration" in result.title) == plot.name.endswith("_init"), plot.name


def test_init_plots_draw_the_first_calibration(qa_auto, tmp_path):
    raw = qa_auto.photcal_init.stars
    p16, p50, p84 = np.percentile(raw["ZP"][raw["USED"]], [16, 50, 84])
    assert qa_auto.photcal_init.level == pytest.approx((p50, p16, p84))  # PHZPINIT and its stars' percentiles
    assert qa_auto.photcal.level == (26.0, 25.97, 26.03)  # PHOTZP, PHOTZPSM, PHOTZPSP
    final = draw(qa_auto, qaplots.PlannedPlot("photZP", None, (tmp_path / "f.png",)))
    init = draw(qa_auto, qaplots.PlannedPlot("photZP_init", None, (tmp_path / "i.png",)))
    assert init.counts == final.counts == {"points": len(raw), "used": int(raw["USED"].sum())}
    per_ota = [draw(qa_auto, qaplots.PlannedPlot("photZP_map_init", ota, (tmp_path / f"m{ota}.png",)))
               for ota in OTAS]
    assert sum(r.counts["points"] for r in per_ota) == int(raw["USED"].sum())
    assert all("OTA" in r.title for r in per_ota)


@pytest.mark.parametrize("softbin", [1, 2])
def test_autophotflat_map_is_the_flat_at_its_place(tmp_path, softbin):
    """Block corners on the OTA outlines; each block's 2.5 log10(pf) is the trend at its place, also when the
    MEF is software-binned (frames half the flat's size)."""
    exposure = _auto_qa(tmp_path, shape=(512 * softbin,) * 2)
    flat = exposure.photflat
    assert list(flat.pf) == list(OTAS) and flat.stars > 0
    for ota in OTAS:
        xi, eta = flat.xi[ota], flat.eta[ota]
        assert xi.shape == (33, 33) and flat.pf[ota].shape == (32, 32)
        corners = np.column_stack([xi[[0, 0, -1, -1], [0, -1, -1, 0]], eta[[0, 0, -1, -1], [0, -1, -1, 0]]])
        assert np.allclose(corners, exposure.outlines[ota], atol=1e-6)
        centre_xi = (xi[:-1, :-1] + xi[1:, 1:] + xi[:-1, 1:] + xi[1:, :-1]) / 4
        assert 2.5 * np.log10(flat.pf[ota]) == pytest.approx(FLAT_SLOPE * centre_xi, abs=2e-3)
    result = draw(exposure, qaplots.PlannedPlot("autophotflat", None, (tmp_path / "pf.png",)))
    assert result.counts == {"otas": len(OTAS), "blocks": len(OTAS) * 32 * 32}
    assert f"from {flat.stars} stars" in result.title


def test_autophotflat_plots_only_with_the_option(qa, qa_auto, tmp_path):
    mef = tmp_path / "x.fits"
    names = {p.name for p in plan_plots(qa_auto, mef, formats=("png",), ota_level=True, subdir=None)[0]}
    assert not names & AUTO_PLOTS  # the data is there, the option is off
    # the option on, but the MEF has no init calibration and no flat was given: skipped with reasons
    planned, skipped = plan_plots(qa, mef, formats=("png",), ota_level=True, subdir=None, switches=AUTO)
    assert not {p.name for p in planned} & AUTO_PLOTS
    assert skipped == {"photZP_init": "no first (init) photometric zero point",
                       "photZP_map_init": "no first (init) photometric zero point",
                       "autophotflat": "no photometric flat"}
    primary, sci, tables, headers = mef_contents(otas=OTAS, wcs_valid=False, autophotflat=True)
    _, skipped = plan_plots(exposure_qa("oX", primary, sci, tables, headers), mef, formats=("png",),
                            ota_level=True, subdir=None, switches=AUTO)
    assert all(skipped[name] == "no valid WCS" for name in AUTO_PLOTS)


def test_without_wcs_only_the_sky_plot(tmp_path):
    primary, sci, tables, headers = mef_contents(otas=OTAS, wcs_valid=False)
    qa = exposure_qa("oX", primary, sci, tables, headers)
    planned, skipped = plan_plots(qa, tmp_path / "x.fits", formats=("png",), ota_level=True, subdir=None)
    assert [p.name for p in planned] == ["skylevel"]
    assert skipped["wcs1"] == "no valid WCS"
    primary, sci, tables, headers = mef_contents(otas=OTAS, photometry=False)
    _, skipped = plan_plots(exposure_qa("oX", primary, sci, tables, headers), tmp_path / "x.fits",
                            formats=("png",), ota_level=False, subdir=None)
    assert set(skipped) == {"photZP", "photZP_map"}


def test_empty_ota_still_gets_its_plot(tmp_path):
    primary, sci, tables, headers = mef_contents(otas=OTAS, autophotflat=True)
    for name, column in (("WCSCAL.CAT", "OTA"), ("CAT.ODI", "OTA"), ("CAT.PHOTCALIB", "ODI_OTA"),
                         ("CAT.PHOTCALIB.RAW", "ODI_OTA")):
        tables[name] = tables[name][tables[name][column] != 43]
    qa = exposure_qa("oX", primary, sci, tables, headers)
    for name in PER_OTA:
        result = draw(qa, qaplots.PlannedPlot(name, 43, (tmp_path / f"{name}.png",)))
        assert np.var(imread(result.paths[0])[..., :3]) > 1e-3


def test_shape_binning_averages_orientation_as_spin_two():
    # two stars with PA 5 and 175 deg: the same orientation (near North), not 90 deg
    x, y, e, pa, f = qaplots.psf.binned_shape(np.array([0.1, 0.2]), np.array([0.1, 0.2]), np.array([0.1, 0.1]),
                                               np.array([5.0, 175.0]), np.array([1.0, 1.2]),
                                               extent=(0, 1, 0, 1), bins=1)
    assert len(x) == 1 and abs(e[0] - 0.1 * math.cos(math.radians(10))) < 1e-9
    assert min(pa[0], 180 - pa[0]) < 1e-6 and f[0] == pytest.approx(1.1)



def test_too_few_stars_per_box_is_said_not_raised(tmp_path):
    # one clean star per OTA: no focal-plane box holds the two a whisker needs (an IndexError before)
    primary, sci, tables, headers = mef_contents(otas=OTAS, stars_per_ota=1)
    qa = exposure_qa("oX", primary, sci, tables, headers)
    result = draw(qa, qaplots.PlannedPlot("psfshape", None, (tmp_path / "psfshape.png",)))
    assert result.counts["whiskers"] == 0 and 0 < result.counts["stars"] <= len(OTAS)
    assert (tmp_path / "psfshape.png").stat().st_size > 0

# ---- night summary -------------------------------------------------------------------------------------------


def _entry(obsid, obstype="OBJECT", error=""):
    return SimpleNamespace(obsid=obsid, obstype=obstype, object="F1", filter="odi_r", exptime=120.0,
                           mjd=56570.0 + int(obsid[-1]) / 100, error=error)


HEADER = {"WCSCAL": True, "WCS_RMS": 0.08, "PHOTZP": 26.07, "SEEING": 1.1, "SKYLEVEL": 1000.0, "SKYMAG": 21.2,
          "PHOTDPTH": 25.3, "AIRMASS": 1.2}


def test_exposure_status():
    fail = {"task": "DetrendOTA(ota=33)", "error": "ValueError: bad cell", "time": 100.0}
    later = {"task": "FixWCS()", "error": "RuntimeError: x", "time": 200.0}
    reduced = nightsummary.exposure_record(_entry("o1"), header=HEADER, mef="/o/o1.fits", mef_mtime=150.0,
                                           failures=[fail])
    assert reduced["status"] == "reduced" and reduced["error"] == ""  # the failure is older than the MEF
    assert reduced["depth5"] == pytest.approx(25.3 - 2.5 * math.log10(5))
    failed = nightsummary.exposure_record(_entry("o2"), failures=[later, fail])
    assert failed["status"] == "failed" and failed["error"] == "DetrendOTA(ota=33): ValueError: bad cell"
    assert math.isnan(failed["zp"])
    assert nightsummary.exposure_record(_entry("o3"))["status"] == "not run"
    assert nightsummary.exposure_record(_entry("o4", "BIAS"))["status"] == "calibration"
    unreadable = nightsummary.exposure_record(_entry("o5", error="truncated file"))
    assert unreadable["status"] == "failed" and "truncated file" in unreadable["error"]
    undefined = nightsummary.exposure_record(_entry("o6"), header={**HEADER, "PHOTZP": -99.0, "WCSCAL": False},
                                             mef="/o/o6.fits")
    assert math.isnan(undefined["zp"]) and math.isnan(undefined["wcs_rms"]) and undefined["seeing"] == 1.1
    line = nightsummary.progress_line(reduced)
    assert line.startswith("podiflow: o1 F1 odi_r 120 s: reduced") and "ZP 26.070 mag" in line
    assert "ValueError: bad cell" in nightsummary.progress_line(failed)


def test_summary_files(tmp_path, qa):
    png = draw(qa, qaplots.PlannedPlot("seeing", None, (tmp_path / "o1" / "o1.seeing.png",))).paths[0]
    plots = [{"name": "seeing", "ota": None, "files": [png]},
             {"name": "wcs1", "ota": 33, "files": [str(tmp_path / "o1" / "o1.wcs1_OTA33.png")]}]
    records = [nightsummary.exposure_record(_entry("o1"), header=HEADER, mef=str(tmp_path / "o1" / "o1.fits"),
                                            plots=plots),
               nightsummary.exposure_record(_entry("o2"), failures=[{"task": "DetrendOTA(ota=33)",
                                                                   "error": "ValueError: <bad> cell", "time": 1.0}]),
               nightsummary.exposure_record(_entry("o0", "BIAS"))]
    table = nightsummary.write_summary(records, night="20131004", ecsv_path=tmp_path / "summary.ecsv",
                                       html_path=tmp_path / "summary.html",
                                       night_failures=[{"task": "MasterOTA(kind=bias)", "error": "no frames"}])
    back = Table.read(tmp_path / "summary.ecsv")
    assert list(back["obsid"]) == ["o0", "o1", "o2"] and list(back["status"]) == ["calibration", "reduced", "failed"]
    assert back["zp"].unit == u.mag and back["seeing"].unit == u.arcsec and back["zp"].mask.tolist() == [True, False, True]
    assert back["n_plots"][1] == 2 and len(table) == 3
    page = (tmp_path / "summary.html").read_text()
    assert "ValueError: &lt;bad&gt; cell" in page and "MasterOTA(kind=bias): no frames" in page
    assert 'href="o1/o1.seeing.png"' in page and "data:image/png;base64," in page
    assert 'href="o1/o1.wcs1_OTA33.png"' in page and "src=\"/" not in page and "file:" not in page
    assert "http-equiv" not in page and '<details><summary>plots</summary>' in page
    nightsummary.write_summary(records, night="20131004", ecsv_path=tmp_path / "summary.ecsv",
                               html_path=tmp_path / "summary.html", refresh_s=30)
    assert '<meta http-equiv="refresh" content="30">' in (tmp_path / "summary.html").read_text()
