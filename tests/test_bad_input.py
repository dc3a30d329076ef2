"""Bad raw input (issues 19 and 21): each defect is one clear line naming the file and the keyword or value,
found in the night index before anything runs; the rest of the night is reduced; a bad OTA file costs its
OTA, not the exposure; tolerated defects give a complete MEF whose headers say what was done.

One small simulated night (test instrument, two good odi_r exposures A and B 61 s apart) gets a clone of A
per defect between them (OTAs 33 and 34 only; every clone is inside B's persistency window), plus a clone
losing two OTA files, a clone with tolerated defects and a clone (OTAs 33, 34, 44) whose OTA 34 reads out
NaN. The night is reduced once (module fixture).
"""

import shutil
from types import SimpleNamespace

import luigi
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from podisteps import instrument
from podisteps.io import nightindex
from podisteps.masters import mastermef
from podisteps.simulate import simulate_night
from workflows import cli
from workflows.night import ReduceNight
from workflows.paths import night_index, out_root, work_root
from workflows.qa import NightSummary

from .rawfactory import clone_exposure

NIGHT = "20131004"
A, B = "o20131005T030000.0", "o20131005T030101.0"
MJD_A = 56570.125
SPEC = """
[night]
name = "bad-input"
start = "2013-10-05T03:00:00"
instrument = "test"
binning = 1
seed = 3
star_density = 1500.0

[[field]]
name = "F1"
ra = "22:15:30.0"
dec = "+15:30:00"

[[sequence]]
type = "object"
field = "F1"
filter = "odi_r"
count = 2
exptime = 30.0
dither = "none"

[effects]
all = false
"""


def _drop(key):
    return lambda ota, hdul: hdul[0].header.remove(key)


def _set(key, value):
    return lambda ota, hdul: hdul[0].header.set(key, value)


def _drop_cell_key(key, cell="xy34"):
    return lambda ota, hdul: hdul[cell].header.remove(key)


def _short_cells(ota, hdul):
    for hdu in hdul[1:]:
        hdu.data = hdu.data[:40]


def _few_hdus(ota, hdul):
    del hdul[13:]


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _empty(path):
    path.write_bytes(b"")


def _foreign_image(path):
    path.unlink()
    fits.PrimaryHDU(np.zeros((20, 30), np.float32)).writeto(path)


#: name -> (edit of every OTA file's HDUs, or None; change of every written file, or None; text the
#: error must contain besides the file name).
DEFECTS = {
    "no MJD-OBS": (_drop("MJD-OBS"), None, "lacks required keyword(s) MJD-OBS"),
    "no FPPOS": (_drop("FPPOS"), None, "lacks required keyword(s) FPPOS"),
    "no RA": (_drop("RA"), None, "lacks required keyword(s) RA"),
    "no DEC": (_drop("DEC"), None, "lacks required keyword(s) DEC"),
    "no OTA_ID": (_drop("OTA_ID"), None, "lacks required keyword(s) OTA_ID"),
    "no CELLMODE": (_drop("CELLMODE"), None, "lacks required keyword(s) CELLMODE"),
    "no FLTARM2B": (_drop("FLTARM2B"), None, "lacks required keyword(s) FLTARM2B"),
    "no cell EXTNAME": (_drop_cell_key("EXTNAME"), None, "extension '(no EXTNAME)' is not a cell"),
    "no WN_CELLX": (_drop_cell_key("WN_CELLX"), None, "cell xy34 lacks WN_CELLX"),
    "short cells": (_short_cells, None, "cell shape (40, 70) at bin1 fits no known"),
    "13 HDUs": (_few_hdus, None, "only 13 HDU(s)"),
    "truncated": (None, _truncate, "truncated"),
    "EXPTIME abc": (_set("EXPTIME", "abc"), None, "EXPTIME = 'abc' is not a number"),
    "negative MJD-OBS": (_set("MJD-OBS", -MJD_A), None, f"MJD-OBS = {-MJD_A!r} is out of range"),
    "unknown FILTER": (_set("FILTER", "odi_x"), None, "FILTER = 'odi_x' is not a known ODI filter"),
    "zero bytes": (None, _empty, "empty file (0 bytes)"),
    "non-ODI image": (None, _foreign_image, "only 1 HDU(s)"),
}


def _clone_name(i: int) -> tuple[str, float]:
    """Name and MJD of the i-th clone: 10 + i seconds after A."""
    return f"o20131005T0300{10 + i:02d}.0", MJD_A + (10 + i) / 86400.0


def _tolerated(ota, hdul):
    """CELLMODE 'F' for cell xy34, no CRPIX on xy07, and on OTA 33 two garbage cells (all NaN; > 65535)."""
    mode = list(hdul[0].header["CELLMODE"])
    mode[3 + 8 * 4] = "F"
    hdul[0].header["CELLMODE"] = "".join(mode)
    for key in ("CRPIX1", "CRPIX2"):
        hdul["xy07"].header.remove(key)
    if ota == 33:
        for cell, value in (("xy52", np.nan), ("xy53", 70000.0)):
            _fill_cell(hdul, cell, value)


def _fill_cell(hdul, cell, value):
    """Replace a raw cell by float32 ``value`` everywhere."""
    i = hdul.index_of(cell)
    header = hdul[i].header.copy()
    for key in ("BZERO", "BSCALE"):
        header.remove(key)
    hdul[i] = fits.ImageHDU(np.full(hdul[i].data.shape, value, np.float32), header=header)


def _pixels_lost(ota, hdul):
    """OTA 34 reads out NaN in every cell: a readable file whose detrended pixels are all undefined."""
    if ota == 34:
        for hdu in list(hdul[1:]):
            _fill_cell(hdul, hdu.name, np.nan)


@pytest.fixture(scope="module")
def bad_night(tmp_path_factory):
    """The night with every defect, reduced once; returns names, paths and the build result."""
    root = tmp_path_factory.mktemp("bad-input")
    (root / "spec.toml").write_text(SPEC)
    simulate_night(root / "spec.toml", root / "sim", seed=3)
    night = root / "raw" / NIGHT
    night.mkdir(parents=True)
    for obsid in (A, B):
        shutil.copytree(root / "sim" / "raw" / NIGHT / obsid, night / obsid)
    clones = {}
    for i, (name, (edit, change, _)) in enumerate(DEFECTS.items()):
        obsid, mjd = _clone_name(i)
        folder = clone_exposure(night / A, night, obsid, mjd=mjd, edit=edit, otas=(33, 34))
        for path in sorted(folder.iterdir()) if change else ():
            change(path)
        clones[name] = obsid
    partial, mjd = _clone_name(len(DEFECTS))
    folder = clone_exposure(night / A, night, partial, mjd=mjd)
    _truncate(folder / f"{partial}.34.fits")
    shutil.copyfile(night / B / f"{B}.44.fits", folder / f"{partial}.44.fits")  # another exposure's OTA file
    tolerated, mjd = _clone_name(len(DEFECTS) + 1)
    clone_exposure(night / A, night, tolerated, mjd=mjd, edit=_tolerated)
    pixels_lost, mjd = _clone_name(len(DEFECTS) + 2)
    clone_exposure(night / A, night, pixels_lost, mjd=mjd, edit=_pixels_lost, otas=(33, 34, 44))
    (night / "pointing.fits").write_bytes((night / A / f"{A}.33.fits").read_bytes())  # a loose FITS file
    cfg = luigi.configuration.get_config()
    saved = dict(cfg.items("podiflow"))
    for key, value in (("raw_dir", root / "raw"), ("work_dir", root / "work"), ("out_dir", root / "out"),
                       ("mastercals_dir", root / "sim" / "mastercals")):
        cfg.set("podiflow", key, str(value))
    cfg.set("reduction", "noqaplots", "true")
    luigi.task_register.Register.clear_instance_cache()
    result = luigi.build([ReduceNight(night=NIGHT, options={"masters": ""})], local_scheduler=True,
                         detailed_summary=True, log_level="WARNING", workers=1)
    luigi.build([NightSummary(night=NIGHT)], local_scheduler=True, log_level="WARNING")
    yield SimpleNamespace(root=root, night=night, clones=clones, partial=partial, tolerated=tolerated,
                          pixels_lost=pixels_lost,
                          result=result, index=night_index(NIGHT), out=out_root() / NIGHT, work=work_root())
    for key, value in saved.items():
        cfg.set("podiflow", key, value)
    cfg.remove_option("reduction", "noqaplots")
    luigi.task_register.Register.clear_instance_cache()


def _mef(bad_night, obsid):
    return bad_night.out / obsid / f"{obsid}.fits"


@pytest.mark.parametrize("defect", DEFECTS)
def test_bad_exposure_is_one_line_naming_file_and_key(bad_night, defect, tmp_path, capsys):
    obsid = bad_night.clones[defect]
    record = bad_night.index.by_obsid()[obsid]
    expected = DEFECTS[defect][2]
    assert record.error and "\n" not in record.error
    assert f"{bad_night.night / obsid / obsid}." in record.error and expected in record.error, record.error
    # the summary shows the same line
    summary = Table.read(bad_night.out / "summary.ecsv")
    row = summary[summary["obsid"] == obsid][0]
    assert row["status"] == "failed" and expected in row["error"]
    # podi_collectcells on it: exit 2, one line naming the file and the key, before any work
    assert cli.collectcells_main([str(bad_night.night / obsid), str(tmp_path / "out.fits"), "-noqaplots"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) <= 3 and any(expected in line and obsid in line for line in err), err
    assert not (tmp_path / "podiflow-work").exists()


def test_the_rest_of_the_night_is_reduced(bad_night):
    assert bad_night.result.status.name == "SUCCESS", bad_night.result.summary_text
    good = [A, B, bad_night.partial, bad_night.tolerated, bad_night.pixels_lost]
    assert [e.obsid for e in bad_night.index.select(obstype="OBJECT")] == sorted(good)
    for obsid in good:
        with fits.open(_mef(bad_night, obsid)) as hdul:
            assert hdul[0].header["OBSID"] == obsid[1:]
            assert np.isfinite(hdul[0].header["SKYLEVEL"])
    with fits.open(_mef(bad_night, B)) as hdul:  # 13 OTAs; the bad clones were no persistency source
        assert sum(h.name.endswith(".SCI") for h in hdul) == 13
        assert hdul[0].header["PERSKIP"] == 0 and hdul[0].header["NLOSTOTA"] == 0


def test_loose_file_in_the_night_folder_is_named_and_ignored(bad_night):
    (stray,) = bad_night.index.strays
    assert stray[0] == "pointing.fits" and f"{bad_night.night / 'pointing.fits'}: a file that is not" in stray[1]


def test_a_bad_ota_file_costs_its_ota_not_the_exposure(bad_night):
    obsid = bad_night.partial
    record = bad_night.index.by_obsid()[obsid]
    assert not record.error and 34 not in record.otas and 44 not in record.otas and len(record.otas) == 11
    reasons = dict(record.bad_otas)
    assert f"{obsid}.34.fits: truncated" in reasons[34]
    assert f"{obsid}.44.fits: OBSID = '{B[1:]}'" in reasons[44] and "another exposure" in reasons[44]
    with fits.open(_mef(bad_night, obsid)) as hdul:
        ph = hdul[0].header
        assert ph["OBSID"] == obsid[1:] and ph["MJD-OBS"] == pytest.approx(record.mjd, abs=1e-8)
        assert ph["NLOSTOTA"] == 2 and ph["LOST34"] == reasons[34] and ph["LOST44"] == reasons[44]
        assert "OTA34.SCI" not in hdul and "OTA44.SCI" not in hdul and "OTA33.SCI" in hdul
    summary = Table.read(bad_night.out / "summary.ecsv")
    row = summary[summary["obsid"] == obsid][0]
    assert row["status"] == "reduced" and f"OTA34 left out: {reasons[34]}" in row["error"]
    assert f"OTA44 left out: {reasons[44]}" in row["error"]


def test_an_ota_of_undefined_pixels_costs_its_ota_not_the_exposure(bad_night, tmp_path):
    obsid = bad_night.pixels_lost
    assert not bad_night.index.by_obsid()[obsid].bad_otas  # its raw files are readable
    reason = "only 0% of its pixels are defined (at least 50% needed)"
    with fits.open(_mef(bad_night, obsid)) as hdul:
        ph = hdul[0].header
        assert ph["NLOSTOTA"] == 1 and ph["LOST34"] == reason and ph["OBSID"] == obsid[1:]
        assert [h.name for h in hdul if h.name.endswith(".SCI")] == ["OTA33.SCI", "OTA44.SCI"]
        assert np.isfinite(ph["SKYLEVEL"])
    summary = Table.read(bad_night.out / "summary.ecsv")
    row = summary[summary["obsid"] == obsid][0]
    assert row["status"] == "reduced" and row["error"] == f"OTA34 left out: {reason}"
    # -prep4sex fills the undefined pixels with -1e31 before the check, which still counts them undefined
    out = tmp_path / "out.fits"
    assert cli.collectcells_main([str(bad_night.night / obsid), str(out), "-prep4sex", "-noqaplots",
                                  "-persistency=no"]) == 0
    with fits.open(out) as hdul:
        assert hdul[0].header["LOST34"] == reason and "OTA34.SCI" not in hdul
        assert (hdul["OTA33.SCI"].data == np.float32(-1e31)).any()


def test_tolerated_defects_give_a_complete_mef_saying_what_was_done(bad_night):
    cell_px = instrument.geometry("test", 1).data_nx * instrument.geometry("test", 1).data_ny
    with (fits.open(_mef(bad_night, bad_night.tolerated)) as hdul, fits.open(_mef(bad_night, A)) as first,
          fits.open(_mef(bad_night, bad_night.partial)) as twin):  # the partial clone: same persistency sources
        scis = [h for h in hdul if h.name.endswith(".SCI")]
        assert len(scis) == 13
        for h in scis:  # the same pixels as the partial clone's (or A's) but for the cells left out
            assert "xy34:F" in h.header["CELLOFF"] and "CRPIX1" in h.header
            ref = (twin if h.name in twin else first)[h.name].data
            lost = 3 if h.name == "OTA33.SCI" else 1
            lost_px = int(np.isfinite(ref).sum() - np.isfinite(h.data).sum())
            assert lost * cell_px <= lost_px <= lost * cell_px + 200, (h.name, lost_px)  # + persistence of A
        ota33 = hdul["OTA33.SCI"].header
        assert ota33["GARB52"] == "no finite value" and "outside the ADC range" in ota33["GARB53"]
        assert {"xy52:garbage", "xy53:garbage"} <= set(ota33["CELLOFF"].split(","))
        assert "GARB52" not in hdul["OTA44.SCI"].header


def test_index_cache_keeps_bad_otas_and_strays(bad_night, tmp_path):
    cache = tmp_path / "index.json"
    first = nightindex.load_night_index(bad_night.night, cache)
    again = nightindex.load_night_index(bad_night.night, cache)
    assert again.strays == first.strays == bad_night.index.strays
    assert [(e.obsid, e.error, e.otas, e.bad_otas) for e in again.exposures] == \
        [(e.obsid, e.error, e.otas, e.bad_otas) for e in bad_night.index.exposures]
    assert again.by_obsid()[bad_night.partial].bad_otas[0][0] == 34


@pytest.mark.parametrize("value, reason", [(0.0, "flat median 0 is outside the plausible range"),
                                           (np.nan, "only 0% of the flat pixels are finite")])
def test_master_flat_of_zeros_or_nan_fails_with_the_reason(bad_night, tmp_path, capfd, value, reason):
    shape = (instrument.geometry("test", 1).ota_size,) * 2
    flat = tmp_path / "dflat_odi_r_bin1.fits"
    mastermef.master_hdulist({33: np.full(shape, value, np.float32)}, filelist=["f1.fits"],
                             primary={"OBSTYPE": "DFLAT", "FILTER": "odi_r", "BINNING": 1}).writeto(flat)
    out = tmp_path / "out.fits"
    code = cli.collectcells_main([str(bad_night.night / A), str(out), f"-flat={flat}", "-singleota=33",
                                  "-noqaplots", "-nonlinearity=no", "-crosstalk=no", "-persistency=no"])
    assert code == 2 and not out.exists()
    console = capfd.readouterr()  # the build runs in a child process
    assert f"{flat} [xy33]: {reason}" in console.out + console.err, console


def test_podiflow_index_lists_every_problem_in_one_line_each(bad_night, capsys):
    assert cli.podiflow_main(["index", str(bad_night.night)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"night {NIGHT}: {5 + len(DEFECTS)} exposures, {len(DEFECTS)} unreadable"
    for obsid in bad_night.clones.values():
        (line,) = [ln for ln in lines if obsid in ln]
        assert " ERROR " in line and bad_night.index.by_obsid()[obsid].error in line
    assert sum("left out: " in ln for ln in lines) == 2
    assert lines[-1].strip() == bad_night.index.strays[0][1]


def test_podiflow_reduce_names_each_unreadable_exposure_and_exits_1(bad_night, monkeypatch, capsys):
    monkeypatch.setattr("workflows.night.NIGHT_DEFAULTS", {})  # this night has no calibration frames
    cfg = luigi.configuration.get_config()  # podi_collectcells above pointed [podiflow] at its own raw view
    for key, folder in (("raw_dir", "raw"), ("work_dir", "work"), ("out_dir", "out")):
        cfg.set("podiflow", key, str(bad_night.root / folder))
    assert cli.podiflow_main(["reduce", NIGHT, "--workers", "1", "--log-level", "CRITICAL"]) == 1
    lines = capsys.readouterr().out.splitlines()
    for obsid in bad_night.clones.values():  # one line each in the closing summary, with the cause
        about = [line for line in lines if obsid in line]
        assert len(about) == 1 and bad_night.index.by_obsid()[obsid].error in about[0], about
    counts = next(line for line in lines if line.startswith(f"podiflow reduce: night {NIGHT}: ") and "reduced," in line)
    assert f"{len(bad_night.clones)} failed" in counts, counts
