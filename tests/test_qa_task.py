"""QAPlots and NightSummary through Luigi on the simulated small night, with one exposure that fails; the
``-autophotflat`` plots of one exposure (with ``-nootalevelplots``, to stay fast: test_qaplots checks the
per-OTA ones)."""

import json
import os
import re
import shutil
from pathlib import Path

import luigi
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from matplotlib.image import imread

from workflows.base import options_param
from workflows.failures import read_failures
from workflows.options import ReductionOptions
from workflows.paths import night_index
from workflows.qa import NightSummary, QAPlots

from .rawfactory import shrink_first_cell_in_place

NIGHT = "20131004"
GOOD, BROKEN = "o20131005T014745.0", "o20131005T015016.0"
FAMILIES = ["DetrendOTA", "OTACatalog", "FixWCS", "PhotCalib", "CollectCells", "QAPlots"]
PLOTS = ("psf", "wcs1", "wcs2", "psfshape", "seeing", "photZP", "photZP_map", "skylevel")
AUTO_PLOTS = ("photZP_init", "photZP_map_init", "autophotflat")


def _qa_task(obsid, output_path="", **qa_options):
    opts = ReductionOptions.from_mapping({"fixwcs": "true", "photcalib": "true", **qa_options})
    return QAPlots(obsid=obsid, output_path=output_path, options=options_param(opts, FAMILIES))


@pytest.fixture()
def night(small_night, podiflow_config, tmp_path):
    """The small night as a raw tree of links, except OTA 33 of BROKEN, whose first cell lost its pixels."""
    raw = tmp_path / "raw" / NIGHT
    raw.mkdir(parents=True)
    for folder in sorted((small_night / "raw" / NIGHT).iterdir()):
        if folder.name != BROKEN:
            (raw / folder.name).symlink_to(folder, target_is_directory=True)
            continue
        (raw / BROKEN).mkdir()
        for f in folder.iterdir():
            (raw / BROKEN / f.name).symlink_to(f)
        bad = raw / BROKEN / f"{BROKEN}.33.fits"
        bad.unlink()
        shutil.copyfile(folder / bad.name, bad)
    podiflow_config(raw_dir=tmp_path / "raw", mastercals_dir=small_night / "mastercals")
    luigi.configuration.get_config().set("podiflow", "refcat", str(small_night / "refcat" / "refcat.fits"))
    # The night index checks every file's layout, so the corruption comes after indexing, in place (the folder
    # looks unchanged): it is found only when the file is read, by a task that fails.
    night_index(NIGHT)
    shrink_first_cell_in_place(small_night / "raw" / NIGHT / BROKEN / bad.name, bad)
    return tmp_path


def _build(tasks):
    return luigi.build(tasks, local_scheduler=True, workers=1, detailed_summary=True, log_level="CRITICAL")


def _files(manifest):
    return [f for plot in manifest["plots"] for f in plot["files"]]


def test_qa_plots_and_night_summary(night, small_night, capsys):
    default = _qa_task(GOOD)
    custom = _qa_task(GOOD, plotformat="png,pdf", nootalevelplots="true", qasubdirname="myqa")
    none = _qa_task(GOOD, noqaplots="true")
    auto_mef = night / "auto" / f"{GOOD}.fits"  # a MEF of other options: not in the out tree of the others
    auto = _qa_task(GOOD, str(auto_mef), autophotflat="true", nootalevelplots="true")
    result = _build([default, custom, none, auto, _qa_task(BROKEN)])
    assert not result.scheduling_succeeded  # BROKEN failed
    out = capsys.readouterr().out
    assert f"podiflow: {GOOD} F1 odi_r 120 s: reduced, WCS rms" in out
    assert f"podiflow: FAILED {BROKEN}: DetrendOTA(ota=33): " in out and "RawFormatError" not in out

    mef = night / "out" / NIGHT / GOOD / f"{GOOD}.fits"
    with fits.open(mef) as hdul:
        n_otas = sum(h.name.endswith(".SCI") for h in hdul)
        n_matched = len(hdul["WCSCAL.CAT"].data)
    manifests = {t: json.loads(Path(t.output().path).read_text()) for t in (default, custom, none)}
    assert len({t.output().path for t in manifests}) == 3  # QA options are part of the identity
    for task, manifest in manifests.items():
        assert all(os.path.isfile(f) for f in _files(manifest)) and not manifest["skipped"]
    plots = manifests[default]["plots"]
    assert sum(p["name"] == "wcs2" and p["ota"] is not None for p in plots) == n_otas
    assert next(p for p in plots if p["name"] == "wcs1" and p["ota"] is None)["counts"]["points"] == n_matched
    assert f"{mef.parent}/{GOOD}.wcs1_OTA33.png" in _files(manifests[default])
    assert sorted(_files(manifests[custom])) == sorted(
        str(mef.parent / "myqa" / f"{p}.{fmt}") for p in PLOTS for fmt in ("png", "pdf"))
    assert manifests[none]["plots"] == []
    assert not {p["name"] for p in plots} & set(AUTO_PLOTS)

    # -autophotflat: the init calibration's plots and the photometric flat's map, from the PhotFlat applied
    with fits.open(auto_mef) as hdul:
        assert "CAT.PHOTCALIB.RAW" in hdul and hdul[0].header["PHFSTARS"] > 0
    manifest = json.loads(Path(auto.output().path).read_text())
    assert not manifest["skipped"] and all(os.path.isfile(f) for f in _files(manifest))
    assert sorted(_files(manifest)) == sorted(f"{auto_mef.parent}/{GOOD}.{name}.png" for name in (*PLOTS, *AUTO_PLOTS))
    assert manifest["photflat"] == auto.requires()["photflat"].output().path  # the PhotFlat CollectCells applied
    flat = next(p for p in manifest["plots"] if p["name"] == "autophotflat")
    assert flat["counts"]["otas"] == n_otas and np.var(imread(flat["files"][0])[..., :3]) > 1e-3

    failures = read_failures(NIGHT)
    assert [f["obsid"] for f in failures] == [BROKEN] and failures[0]["task"] == "DetrendOTA(ota=33)"

    summary = NightSummary(night=NIGHT)
    assert _build([summary]).scheduling_succeeded and summary.complete()
    table = Table.read(summary.output()["ecsv"].path)
    status = dict(zip(table["obsid"], table["status"]))
    assert len(table) == len(os.listdir(night / "raw" / NIGHT))
    assert status[GOOD] == "reduced" and status[BROKEN] == "failed"
    assert sum(s == "not run" for s in status.values()) == 3 and "calibration" in status.values()
    good = table[table["obsid"] == GOOD][0]
    assert 0 < good["wcs_rms"] < 0.5 and 24 < good["zp"] < 28 and good["depth5"] > 20 and good["seeing"] > 0.5
    assert "DetrendOTA(ota=33)" in table[table["obsid"] == BROKEN][0]["error"]
    page = Path(summary.output()["html"].path).read_text()
    assert re.search(rf'href="{GOOD}/[^"]*wcs1\.png"', page) and f"DetrendOTA(ota=33): {night}/raw/{NIGHT}/{BROKEN}/{BROKEN}.33.fits" in page

    # repairing the exposure: its failure record goes and the summary is out of date until rebuilt
    bad = night / "raw" / NIGHT / BROKEN / f"{BROKEN}.33.fits"
    bad.unlink()
    shutil.copy(small_night / "raw" / NIGHT / BROKEN / bad.name, bad)
    assert _build([_qa_task(BROKEN)]).scheduling_succeeded
    assert read_failures(NIGHT) == [] and not NightSummary(night=NIGHT).complete()
    assert _build([NightSummary(night=NIGHT)]).scheduling_succeeded
    table = Table.read(summary.output()["ecsv"].path)
    assert dict(zip(table["obsid"], table["status"]))[BROKEN] == "reduced"

    # a rebuilt MEF gets its plots redrawn
    drawn = os.stat(default.output().path).st_mtime_ns
    mef.unlink()
    assert not default.complete()
    assert _build([default]).scheduling_succeeded
    assert os.stat(default.output().path).st_mtime_ns > drawn and default.complete()
