"""A mastercals tree in the layout of QuickReduce's own ``mastercals/`` folder, with its real quirks
(docs/calibrations.md, 'File formats'): one non-linearity history for both layouts whose 5x6 table
starts only at MJD 57174, pODI tables with and without RELATIVE_GAIN/EXTNAME, commented history lines,
the canned TPV labelled TAN with 42 PV cards, ds9 ``image;box`` lines; read through ``-mastercals=DIR`` for a
pODI and a 5x6 exposure."""

import json
import shutil
import tomllib

import numpy as np
import pytest
from astropy.io import fits

from podisteps import instrument
from podisteps.detrend.crosstalk import crosstalk_hdulist
from podisteps.io.nightindex import ExposureRecord
from podisteps.simulate import distortion, effects, load_night, simulate_night
from podisteps.simulate.mastercals import nonlinearity_table_hdulist
from workflows import cli
from workflows.calibrations import resolve_calibrations
from workflows.options import parse_collectcells_args

#: (first MJD, file name, layout) of the tree's non-linearity tables, as QuickReduce's history has them.
NONLIN = [(0.0, "nonlinearity_pre20131014.fits", "podi"), (56582.0, "nonlinearity_2013nov19.fits", "podi"),
          (56750.3, "nonlinearity_april2014.fits", "podi"), (57174.0, "nonlinearity_odi56_20150602v2.fits", "odi_5x6")]
WCS_FILES = {"podi": "2mass_distort5.fits", "odi_5x6": "odi5x6_GAIA_level4.fits"}


def _nonlinearity(tree):
    folder = tree / "nonlinearity"
    folder.mkdir(parents=True)
    for i, (_, name, layout) in enumerate(NONLIN):
        hdul = nonlinearity_table_hdulist(layout, seed=7)
        if i == 0:  # the oldest table: no RELATIVE_GAIN, no EXTNAME
            table = hdul[1]
            hdul[1] = fits.BinTableHDU.from_columns([c for c in table.columns if c.name != "RELATIVE_GAIN"])
        hdul.writeto(folder / name)
    lines = ["# MJD  file  [url]"] + [f"{mjd:.1f} {name}" for mjd, name, _ in NONLIN]
    (folder / "nonlinearity.history").write_text("\n".join(lines) + "\n")


def _layout_files(tree, layout, bpm_source):
    xtalk = tree / "crosstalk" / layout
    xtalk.mkdir(parents=True)
    crosstalk_hdulist(effects.crosstalk_fwd()).writeto(xtalk / "crosstalk_odi_5x6.fits")  # same name in both
    (xtalk / "crosstalk.history").write_text("0.00 crosstalk_odi_5x6.fits\n")
    wcs = tree / "wcs" / layout
    wcs.mkdir(parents=True)
    perturbed, _ = distortion.perturbed_models(layout, 7)
    canned = distortion.distortion_hdulist(layout, perturbed, projection="TAN")
    for hdu in canned[1:]:  # as 2mass_distort5.fits: PV up to 22 (42 cards), the deprecated RADECSYS
        for axis in (1, 2):
            for m in range(11, 23):
                hdu.header[f"PV{axis}_{m}"] = 0.0
        hdu.header["RADECSYS"] = "FK5"
    canned.writeto(wcs / WCS_FILES[layout])
    (wcs / "wcs.history").write_text(f"#0.0 odi56__2mass_level3.fits\n0.0 {WCS_FILES[layout]}\n")
    bpm = tree / "bpm" / layout
    bpm.mkdir(parents=True)
    for ota in instrument.layout(layout).otas:
        source = bpm_source / f"bpm_xy{ota:02d}.reg" if bpm_source else None
        text = source.read_text().replace("\nbox(", "\nimage;box(") if source and source.is_file() else ""
        if ota == 0:  # QuickReduce's OTA00 file is mostly in mosaic coordinates: boxes off the OTA
            text += "box(24000.5,31000.5,40,4096,0)\n"
        (bpm / f"bpm_xy{ota:02d}.reg").write_text(text)


@pytest.fixture(scope="module")
def sim_5x6(tmp_path_factory):
    """The first science exposure of the test-small-5x6 night (2016), simulated alone."""
    spec = tomllib.loads((instrument.configs_dir() / "nights" / "test-small-5x6.toml").read_text())
    exposure = next(e for e in load_night(spec).exposures if e.obstype == "OBJECT")
    out = tmp_path_factory.mktemp("small-5x6")
    simulate_night(spec, out, only=[exposure.dirname])
    return out


@pytest.fixture(scope="module")
def tree(small_night, sim_5x6, tmp_path_factory):
    """The QuickReduce-layout tree for both layouts (BPM regions from the simulated nights)."""
    root = tmp_path_factory.mktemp("quickreduce") / "mastercals"
    _nonlinearity(root)
    _layout_files(root, "podi", small_night / "mastercals" / "bpm" / "podi")
    _layout_files(root, "odi_5x6", sim_5x6 / "mastercals" / "bpm" / "odi_5x6")
    return root


def _record(mjd):
    return ExposureRecord(obsid="o20150101T000000.0", path="", obstype="OBJECT", filter="odi_r", mjd=mjd)


@pytest.mark.parametrize(("mjd", "nonlin", "layout"), [
    (56500.0, 0, "podi"), (56600.0, 1, "podi"), (57000.0, 2, "podi"),
    (57100.0, 3, "odi_5x6"),  # QuickReduce would give the pODI April-2014 table (pODI positions)
    (58000.0, 3, "odi_5x6"),
])
def test_selection_by_mjd_and_layout(tree, podiflow_config, tmp_path, mjd, nonlin, layout):
    podiflow_config(raw_dir=tmp_path, mastercals_dir=tree)
    options = parse_collectcells_args(["in", "out", "-nonlinearity", "-bpm"])[1]
    got = resolve_calibrations(_record(mjd), options)
    assert got.nonlinearity == tree / "nonlinearity" / NONLIN[nonlin][1]
    assert got.wcs == tree / "wcs" / layout / WCS_FILES[layout]
    assert got.crosstalk == tree / "crosstalk" / layout / "crosstalk_odi_5x6.fits"
    assert got.bpm == tree / "bpm" / layout and not got.missing


@pytest.mark.parametrize(("layout", "otas", "nonlin"), [("podi", (33, 0), 0), ("odi_5x6", (33, 11), 3)])
def test_collectcells_with_quickreduce_mastercals(small_night, sim_5x6, tree, podiflow_config, tmp_path, layout, otas,
                                                  nonlin):
    podiflow_config(raw_dir=tmp_path / "unused")
    site = small_night if layout == "podi" else sim_5x6
    sci = next(d for d in sorted((site / "raw").glob("*/o*"))
               if json.loads((site / "truth" / d.parent.name / d.name / "exposure.json").read_text())["obstype"]
               == "OBJECT")
    shutil.copytree(sci, tmp_path / sci.name)
    out = tmp_path / "out.fits"  # pODI: MJD 56570, the oldest table, without RELATIVE_GAIN (so -gain=header)
    assert cli.collectcells_main([str(tmp_path / sci.name), str(out), f"-mastercals={tree}", "-nonlinearity",
                                  "-bpm", "-gain=header", "-noqaplots", f"-selectota={otas[0]},{otas[1]}"]) == 0
    with fits.open(out) as hdul:
        primary = hdul[0].header
        assert [primary[k] for k in ("_XTALK", "_NONLIN", "_WCSDIST", "_BADPXLS", "_GAIN")] == ["successful"] * 5
        for ota in otas:
            header = hdul[f"OTA{ota:02d}.SCI"].header
            assert header["CTYPE1"] == "RA---TPV" and "WCSNOMIN" not in header and "PV2_22" in header
            assert header["RADESYS"] == "ICRS" and "RADECSYS" not in header
            assert header["BPMFILE"] == f"bpm_xy{ota:02d}.reg"
        masked = np.isnan(hdul["OTA33.SCI"].data).mean()
        assert 0.0 < masked < 0.5
        used = {(r["correction"], r["filename_full"]) for r in hdul["ASSOCIATIONS"].data}
    assert ("nonlinearity", str(tree / "nonlinearity" / NONLIN[nonlin][1])) in used
    assert ("wcs", str(tree / "wcs" / layout / WCS_FILES[layout])) in used
    assert ("crosstalk", str(tree / "crosstalk" / layout / "crosstalk_odi_5x6.fits")) in used
    if layout == "podi":
        assert cli.collectcells_main([str(tmp_path / sci.name), str(tmp_path / "x.fits"),
                                      f"-mastercals={tmp_path / 'nowhere'}"]) != 0
