"""podi_collectcells end to end on a simulated exposure (test instrument): the final MEF against truth, and
the effect of every MEF-level and command-level flag (one full reduction, the flag variants reuse its
checkpoints and only rebuild the MEF of one OTA)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import luigi
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from podisteps.detrend.background import sky_statistics
from podisteps.instrument import is_guide_ota, layout_for_mjd
from workflows import cli
from workflows.base import options_param
from workflows.collect import INHERITED_KEYS, CollectCells
from workflows.detrend import REDUCTION_LOG_KEYS
from workflows.options import REJECTED_FLAGS, parse_collectcells_args

NIGHT = "20131004"
CALS = ["-bpm", "-nonlinearity", "-masters=bias,dark,flat"]


@pytest.fixture(scope="module")
def site(small_night):
    """luigi.cfg [podiflow] as a user of podi_collectcells has it: mastercals and refcat, no raw tree."""
    cfg = luigi.configuration.get_config()
    saved = dict(cfg.items("podiflow"))
    cfg.set("podiflow", "mastercals_dir", str(small_night / "mastercals"))
    cfg.set("podiflow", "refcat", str(small_night / "refcat" / "refcat.fits"))
    cfg.set("podiflow", "work_dir", "")
    yield small_night
    for key, value in saved.items():
        cfg.set("podiflow", key, value)
    luigi.task_register.Register.clear_instance_cache()


def _science(site) -> list[Path]:
    exposures = sorted((site / "raw" / NIGHT).iterdir())
    return [d for d in exposures if _truth(site, d)["obstype"] == "OBJECT" and _truth(site, d)["filter"] == "odi_r"]


def _truth(site, exposure: Path) -> dict:
    return json.loads((site / "truth" / NIGHT / exposure.name / "exposure.json").read_text())


@pytest.fixture(scope="module")
def reduced(site, tmp_path_factory):
    """The second odi_r exposure (persistence from the first) reduced with -fixwcs -photcalib -maskext."""
    sci = _science(site)[1]
    red = tmp_path_factory.mktemp("red")
    rc = cli.collectcells_main([str(sci / f"{sci.name}.33.fits"), str(red / "%OBJECT_%FILTER_%EXPTIME"), "-fixwcs",
                                "-photcalib", *CALS, "-maskext", "-noqaplots", "-addfitskey=REDUCER,'me'",
                                "-addfitskey=NREDUCE,3"])
    assert rc == 0
    out = red / "F1_odi_r_120.0.fits"  # the name template, .fits appended
    return {"sci": sci, "out": out, "work": red / "podiflow-work", "truth": _truth(site, sci)}


def test_extensions_in_order(reduced):
    with fits.open(reduced["out"]) as hdul:
        names = [h.name for h in hdul]
    otas = [n for n in names if n.endswith(".SCI")]
    order = [f"OTA{o:02d}.SCI" for o in layout_for_mjd(reduced["truth"]["mjd"]).otas
             if f"{o:02d}" in reduced["truth"]["sky"]["mean_per_ota"]]
    assert otas == order and otas[0] == "OTA33.SCI"
    assert names == ["PRIMARY", *otas, *[n.replace(".SCI", ".MASK") for n in otas], "CAT.WCSREF", "CAT.ODI",
                     "WCSCAL.CAT", "CAT.PHOTREF", "CAT.PHOTCALIB", "SKYLEVEL", "ASSOCIATIONS"]


def test_primary_against_truth(reduced):
    truth = reduced["truth"]
    with fits.open(reduced["out"]) as hdul:
        ph = hdul[0].header
        ota_headers = [h.header for h in hdul if h.name.endswith(".SCI")]
    assert ph["WCSCAL"] and ph["WCS_RMS"] < 0.2 and ph["OBJECT"] == truth["object"]
    assert ph["REDUCER"] == "me" and ph["NREDUCE"] == 3
    zp_true = truth["zeropoint"]["aperture_diameter_arcsec_1s"][str(int(ph["MAG0SIZE"]))]
    assert abs(ph["PHOTZP"] - zp_true) < 0.03
    central = [truth["sky"]["mean_per_ota"][f"{o:02d}"] for o in (22, 23, 24, 32, 33, 34, 42, 43, 44)]
    assert abs(ph["SKYLEVEL"] / np.mean(central) - 1) < 0.02
    assert abs(ph["GAIN"] - truth["nominal_gain"]) < 0.01 and ph["NGAIN"] == sum(h["NGAIN"] for h in ota_headers)
    assert ph["SKYNOISE"] == pytest.approx(np.sqrt(64 + ph["SKYLEVEL"] * ph["GAIN"]))
    # reduction log: per-OTA steps merged, exposure steps
    assert ph["_NONLIN"] == ph["_BADPXLS"] == ph["_FLAT"] == ph["_BIAS"] == ph["_WCSCAL"] == "successful"
    assert ph["_PHOTCAL"] == "successful" and ph["_SOFTBIN"] == ph["_FRINGE"] == ph["_PGHOST"] == "not selected"
    assert ph["FRNG_SCL"] == ph["PUPLGFAC"] == -1.0
    # header inheritance: raw keywords in the primary only
    assert all(k not in h for h in ota_headers for k in INHERITED_KEYS) and ph["FILTER"] == "odi_r"
    # timing, filter and almanac (Sun 10 deg below the horizon at 01:51 UT: nautical twilight, new moon)
    assert ph["MJD-MID"] == pytest.approx(truth["mjd"] + 60 / 86400) and ph["DATE-MID"].startswith("2013-10-05T01:5")
    assert ph["PHOTCLAM"] == pytest.approx(625.0, abs=15) and ph["SKYBRITE"] == "naut.twilight"
    assert ph["MOONILUM"] < 0.01 and -12 < ph["SUN__ALT"] < -6


def test_sky_from_focalplane_matches_box_statistics(reduced):
    """No correction on: the FocalPlaneCorrections sky equals the statistics of the photometry OTAs' sky boxes."""
    with fits.open(reduced["out"]) as hdul:
        ph, sky = hdul[0].header, Table(hdul["SKYLEVEL"].data)
    wanted = layout_for_mjd(reduced["truth"]["mjd"]).photometry_otas("odi_r")
    boxes = []
    for path in sorted((reduced["work"] / NIGHT / reduced["sci"].name / "detrend").glob("*.fits")):
        with fits.open(path) as hdul:
            if int(hdul[1].header["OTA"]) in wanted and not is_guide_ota(hdul[1].header["CELLMODE"]):
                boxes.append(np.asarray(hdul["SKYBOXES"].data["INTENSITY"], float))
    assert ph["SKYLEVEL"] == pytest.approx(sky_statistics(np.concatenate(boxes))["SKYLEVEL"], rel=1e-6)
    assert np.isfinite(sky["RA"]).all() and np.isfinite(sky["DEC"]).all()
    assert {int(v) for v in sky["OTA"]} <= set(wanted)


def test_associations_list_every_file_with_applied_flag(reduced, site):
    with fits.open(reduced["out"]) as hdul:
        assoc = Table(hdul["ASSOCIATIONS"].data)
        ph = hdul[0].header
        n_otas = sum(h.name.endswith(".SCI") for h in hdul)
    files = {(r["correction"], Path(r["filename_full"]).name): bool(r["applied"]) for r in assoc}
    raw = {name for step, name in files if step == "raw"}
    assert raw == {p.name for p in reduced["sci"].glob("*.fits*")} and len(raw) == n_otas
    steps = set(assoc["correction"])
    assert {"crosstalk", "nonlinearity", "bpm", "bias", "dark", "flat", "wcs", "wcs-reference",
            "photcalib-reference", "saturation"} <= steps
    assert any(Path(p).resolve() == (site / "refcat" / "refcat.fits").resolve()
               for s, p in zip(assoc["correction"], assoc["filename_full"]) if s == "wcs-reference")
    # persistency: the earlier exposure's one saturation catalogue (all its OTAs), listed once
    earlier = _science(site)[0].name
    assert [n for s, n in files if s == "saturation" and n.startswith(earlier)] == [
        next((reduced["work"] / NIGHT / earlier / "satcat").glob(f"{earlier}.satcat.*.fits")).name]
    # honest: a per-OTA step is marked applied exactly when the reduction log says it succeeded
    for step, key in REDUCTION_LOG_KEYS.items():
        if step in steps:
            assert all(files[(s, n)] == (ph[key] == "successful") for s, n in files if s == step), step
    assert all(Path(p).exists() for p in assoc["filename_full"])


def test_mask_extensions(reduced):
    with fits.open(reduced["out"]) as hdul:
        sci, mask = hdul["OTA43.SCI"].data, hdul["OTA43.MASK"].data
    detrended = next((reduced["work"] / NIGHT / reduced["sci"].name / "detrend").glob("*.43.detrend.*.fits"))
    assert mask.dtype == np.uint16 and mask.shape == sci.shape
    assert np.array_equal(mask, fits.getdata(detrended, ext=2)) and (mask & 32).any()  # earlier exposure's persistence
    assert np.isnan(sci[mask & 1 == 1]).all()  # outside the cells


# ---- flags: each rebuilds only the MEF of OTA 33 from the checkpoints above ---------------------------------


@pytest.fixture(scope="module")
def ota33(reduced):
    """The API (batch mode) on OTA 33: the MEF in memory, nothing written but checkpoints."""
    return lambda *flags: cli.collectcells(str(reduced["sci"]), flags=[*CALS, "-singleota=33", *flags],
                                           work_dir=str(reduced["work"]))


def test_batchmode_returns_hdulist(ota33, reduced):
    before = set(reduced["work"].rglob("*.fits"))
    hdul = ota33()
    assert [h.name for h in hdul][:2] == ["PRIMARY", "OTA33.SCI"] and np.isnan(hdul[1].data).any()
    with fits.open(reduced["out"]) as full:
        assert np.array_equal(hdul[1].data, full["OTA33.SCI"].data, equal_nan=True)
    assert set(reduced["work"].rglob("*.fits")) == before  # only the DAG's checkpoints (none new: all done)


@pytest.mark.parametrize("flags, fill", [(["-prep4sex"], -1e31), (["-indefval=0"], 0.0),
                                         (["-prep4sex", "-indefval=-5"], -5.0)])
def test_undefined_pixels(ota33, flags, fill):
    base, filled = ota33()[1].data, ota33(*flags)[1].data
    undefined = np.isnan(base)
    assert undefined.any() and (filled[undefined] == np.float32(fill)).all()
    assert np.array_equal(filled[~undefined], base[~undefined])


def test_softbin(ota33):
    base, binned = ota33(), ota33("-softbin=4")
    data = binned[1].data
    assert data.shape == tuple(s // 4 for s in base[1].data.shape)
    assert data[10, 20] == pytest.approx(np.nanmean(base[1].data[40:44, 80:84]), rel=1e-5)
    from podisteps.astrometry import header_wcs

    world = header_wcs(binned[1].header).all_pix2world([[20.0, 10.0]], 0)
    assert np.allclose(world, header_wcs(base[1].header).all_pix2world([[81.5, 41.5]], 0), atol=1e-8)
    assert binned[0].header["_SOFTBIN"] == "successful" and binned[1].header["SOFTBIN"] == 4


def test_fpack_writes_rice_compressed(ota33, reduced, tmp_path):
    hdul = cli.collectcells(str(reduced["sci"]), str(tmp_path / "c.fits"), flags=[*CALS, "-singleota=33", "-fpack"],
                            work_dir=str(reduced["work"]))
    out = tmp_path / "c.fits.fz"
    assert out.exists() and not (tmp_path / "c.fits").exists() and not list(tmp_path.glob(".*"))
    with fits.open(out) as comp:
        assert isinstance(comp["OTA33.SCI"], fits.CompImageHDU)
        assert comp["OTA33.SCI"].compression_type == "RICE_1"
        data = comp["OTA33.SCI"].data
    ref = hdul[1].data
    good = np.isfinite(ref)
    assert np.array_equal(np.isnan(data), ~good)
    noise = np.nanstd(ref - np.nanmedian(ref))
    assert np.abs(data[good] - ref[good]).max() < noise / 4  # quantize_level 4


@pytest.mark.parametrize("flags, expected", [
    ([], (33, 34, 44, 43, 42, 32, 22, 23, 24, 55, 61, 16, 0)),
    (["-centralonly"], (33, 34, 44, 43, 42, 32, 22, 23, 24)),
    (["-selectota=33,61,16"], (33, 61, 16)),
    (["-centralonly", "-skipota=22,44"], (33, 34, 43, 42, 32, 23, 24)),
    (["-selectota=33,34", "-singleota=34"], (34,)),
])
def test_ota_selection(reduced, flags, expected):
    _, options, _ = parse_collectcells_args(flags)
    task = CollectCells(obsid=reduced["sci"].name, options=options_param(options, ["CollectCells"]))
    assert task.otas() == expected and list(task.requires()["otas"]) == list(expected)


def test_command_banner_verbose_noclobber(reduced, capfd):
    out = reduced["out"].parent / "one.fits"
    assert cli.collectcells_main([str(reduced["sci"]), str(out), *CALS, "-singleota=33", "-noqaplots",
                                  "-verbose"]) == 0
    text = capfd.readouterr().out
    assert "podi_collectcells (podiflow" in text and "'singleota': 33" in text and out.exists()
    mtime = out.stat().st_mtime_ns
    assert cli.collectcells_main([str(reduced["sci"]), str(out), *CALS, "-noclobber", "-bgmode"]) == 0
    text = capfd.readouterr().out
    assert "nothing to do" in text and "podi_collectcells (podiflow" not in text
    assert out.stat().st_mtime_ns == mtime


def test_central_scheduler(reduced, tmp_path, capfd):
    port = 19082 + os.getpid() % 500
    luigid = subprocess.Popen([str(Path(sys.executable).parent / "luigid"), "--address", "127.0.0.1", "--port",
                               str(port), "--state-path", str(tmp_path / "state.pickle"), "--logdir",
                               str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        time.sleep(2)
        rc = cli.collectcells_main([str(reduced["sci"]), str(reduced["out"].parent / "s.fits"), *CALS, "-singleota=33",
                                    "-noqaplots", "-bgmode", f"-scheduler=127.0.0.1:{port}"])
        assert rc == 0, capfd.readouterr().err
        query = ("import json, sys, urllib.request; print(urllib.request.urlopen('http://127.0.0.1:%d/api/"
                 "task_list?data=' + urllib.parse.quote(json.dumps({'status': 'DONE'}))).read().decode())" % port)
        listing = subprocess.run([sys.executable, "-c", "import urllib.parse; " + query], capture_output=True,
                                 text=True, timeout=30).stdout
        assert "CollectCells(" in listing  # the run went through this luigid
    finally:
        os.killpg(luigid.pid, 15)
        luigid.wait(timeout=30)


@pytest.mark.parametrize("flag", sorted(REJECTED_FLAGS))
def test_rejected_flags(reduced, tmp_path, capfd, flag):
    assert cli.collectcells_main([str(reduced["sci"]), str(tmp_path / "x.fits"), f"-{flag}"]) == 2
    err = capfd.readouterr().err
    assert f"-{flag} is not supported by podiflow: {REJECTED_FLAGS[flag]}" in err


@pytest.mark.parametrize("flags, message", [
    (["-addfitskey=MUCHTOOLONG,1"], "KEY,value"),
    (["-crj=abc"], "-crj=abc"),
    (["-fringevectors"], "-fringevectors needs a value"),
    (["-softbin=3"], "choose one of 2, 4, 8"),
])
def test_bad_command_lines(reduced, tmp_path, capfd, flags, message):
    assert cli.collectcells_main([str(reduced["sci"]), str(tmp_path / "x.fits"), *flags]) == 2
    assert message in capfd.readouterr().err


@pytest.mark.parametrize("flag, warning, option", [
    ("-dither=1,1", "-dither has no effect", None),
    ("-update_persistency_only", "has no effect", None),
    ("-wipecells=33.00", "template builders only", None),
    ("-nonlinearity=3.5,-1.2,56570.0", "taken as -nonsidereal", ("nonsidereal", "3.5,-1.2,56570.0")),
    ("-timeout", None, ("timeout", 900.0)),
])
def test_defunct_and_aliased_flags(flag, warning, option):
    _, options, warnings = parse_collectcells_args([flag])
    assert (warning is None and not warnings) or warning in warnings[0]
    if option is not None:
        assert getattr(options, option[0]) == option[1]
    if flag.startswith("-nonlinearity"):
        assert options.nonlinearity is None


# ---- time-out, and a second run after a killed one ----------------------------------------------------------


def _alive(pgid: int | None = None, text: str | None = None) -> list[int]:
    """Processes (not zombies) of process group ``pgid``, or whose command line contains ``text``."""
    alive = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if fields[0] != "Z" and (int(fields[2]) == pgid or (text is not None and text in cmdline)):
            alive.append(int(proc.name))
    return alive


def _checkpoints(work: Path, obsid: str) -> dict:
    return {p: p.stat().st_mtime_ns for p in (work / NIGHT / obsid).rglob("*.fits")}


def test_timeout_and_kill_leave_no_process_and_a_rerun_finishes(site, reduced, capfd):
    sci = _science(site)[0]  # the first odi_r exposure: not reduced yet (masters exist)
    out = reduced["out"].parent / "t.fits"
    args = [str(sci), str(out), *CALS, "-fixwcs", "-noqaplots", "-ncpu=2"]  # about 3-4 s of work on 2 cores
    assert cli.collectcells_main([*args, "-timeout=1.5"]) == 1  # stopped while it starts its first tasks
    err = capfd.readouterr().err
    assert "time-out after 1.5 s" in err and not out.exists()
    assert not _alive(pgid=int(err.split("process group ")[1].split()[0]))
    # the command itself killed halfway (SIGTERM, as by a batch system): its run's processes go with it
    code = "import sys; from workflows.cli import collectcells_main; sys.exit(collectcells_main(sys.argv[1:]))"
    cfg = reduced["work"] / "kill-test.cfg"
    with open(cfg, "w") as fh:
        luigi.configuration.get_config().write(fh)
    started = len(_checkpoints(reduced["work"], sci.name))
    command = subprocess.Popen([sys.executable, "-c", code, *args], env={**os.environ, "LUIGI_CONFIG_PATH": str(cfg)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(_checkpoints(reduced["work"], sci.name)) == started and time.time() < deadline:
        time.sleep(0.1)  # kill once the run has made progress
    command.terminate()
    assert command.wait(timeout=30) != 0 and not out.exists()
    assert not _alive(text=str(out))
    before = _checkpoints(reduced["work"], sci.name)
    assert cli.collectcells_main(args) == 0 and out.exists()
    after = _checkpoints(reduced["work"], sci.name)
    assert all(after[p] == m for p, m in before.items())  # what the killed runs finished is not redone
    assert len(after) > len(before)
