"""Tests of the raw-exposure simulator on the scaled-down test instrument (fast).

The accuracy checks compute the expected positions with astropy from the truth WCS headers and the
expected fluxes from the filter constants written here, independently of the simulator's own code.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from podisteps import instrument
from podisteps.instrument.packagedata import configs_dir
from podisteps.io import rawio
from podisteps.simulate import cli, load_night, render_exposure, simulate_night
from podisteps.simulate.night import persistence_groups

CONFIGS = configs_dir()

SPEC = {
    "night": {"name": "unit", "start": "2013-10-05T02:00:00", "instrument": "test", "binning": 1, "seed": 11,
              "star_density": 3000.0},
    "field": [{"name": "F", "ra": "22:15:30.0", "dec": "+15:30:00"}],
    "sequence": [
        {"type": "bias", "count": 1},
        {"type": "dflat", "filter": "odi_r", "count": 1},
        {"type": "object", "field": "F", "filter": ["odi_r", "odi_g"], "count": 1, "exptime": 100.0,
         "pointing_error": 3.0, "rotator_offset": 1.0, "seeing": 1.2, "airmass": 1.3},
    ],
}

# Independent constants (docs/photometry.md; docs/reduction-steps.md, 'Numeric constants').
ZP0 = {"odi_r": 26.1, "odi_g": 26.0}
EXTINCTION = {"odi_r": 0.12, "odi_g": 0.20}
CANNED_OFFSET = {"podi": (0.06517, 0.06454), "odi_5x6": (0.0, 0.0)}
BETA = 3.0


@pytest.fixture(scope="module")
def night_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    written = simulate_night(SPEC, out)
    return out, written


def _hashes(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _truth(out: Path, folder: Path) -> Path:
    return out / "truth" / folder.parent.name / folder.name


def _object_folders(written):
    return [w for w in written if json.loads((w.parent.parent.parent / "truth" / w.parent.name / w.name /
                                              "exposure.json").read_text())["obstype"] == "OBJECT"]


def test_layout_and_names(night_dir):
    out, written = night_dir
    names = [w.name for w in written]
    assert names == sorted(names) and len(set(names)) == len(names)
    assert all(w.parent.name == "20131004" for w in written)  # UT 02:00 on Oct 5 belongs to the night of Oct 4
    assert all(w.parent.parent == out / "raw" for w in written)
    files = sorted(written[0].iterdir())
    assert [f.name for f in files] == sorted(f"{names[0]}.{o:02d}.fits" for o in instrument.layout("podi").otas)
    assert (out / "mastercals" / "wcs" / "podi" / "wcs.history").read_text().split() == \
        ["0.0", "podiflow_sim_podi.fits"]
    assert (out / "refcat" / "refcat.fits").is_file()


def test_determinism_and_only(night_dir, tmp_path):
    out, written = night_dir
    again = tmp_path / "again"
    # four processes for four exposures: the two science exposures (linked by persistence) are cut apart, so the
    # second renders the first again for its persistence; the files must not depend on it
    simulate_night(SPEC, again, jobs=4)
    assert _hashes(out) == _hashes(again)
    one = tmp_path / "one"
    target = written[-1].name
    assert cli.main([str(_write_spec(tmp_path)), str(one), "--only", target]) == 0
    got = _hashes(one / "raw")
    assert got and all(k.split("/")[1] == target for k in got)
    ref = _hashes(out / "raw")
    assert all(ref[k] == v for k, v in got.items())


def test_persistence_groups_keep_linked_exposures_together():
    night = load_night("demo")
    groups = persistence_groups(night.exposures, night)
    science = [i for i, e in enumerate(night.exposures) if e.obstype == "OBJECT"]
    # the demo's four science exposures follow each other within the persistence window; calibrations stand alone
    assert len(science) == 4 and science in groups
    assert sorted(i for g in groups for i in g) == list(range(len(night.exposures)))
    assert all(len(g) == 1 for g in groups if g != science)


def _write_spec(tmp_path: Path) -> Path:
    lines = ["[night]"] + [f"{k} = {json.dumps(v)}" for k, v in SPEC["night"].items()]
    for f in SPEC["field"]:
        lines += ["[[field]]"] + [f"{k} = {json.dumps(v)}" for k, v in f.items()]
    for b in SPEC["sequence"]:
        lines += ["[[sequence]]"] + [f"{k} = {json.dumps(v)}" for k, v in b.items()]
    path = tmp_path / "unit.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_raw_files_load(night_dir):
    out, written = night_dir
    geo = instrument.geometry("test", 1)
    for folder in written:
        path = folder / f"{folder.name}.33.fits"
        with fits.open(path) as hdul:
            assert len(hdul) == 65
            prim = hdul[0].header
            assert hdul[0].data is None
            for key in ("OBSID", "FILENAME", "OBSTYPE", "OBJECT", "FILTER", "FILTERID", "EXPTIME", "EXPMEAS",
                        "DATE-OBS", "MJD-OBS", "RA", "DEC", "AIRMASS", "ROTSTART", "ROTEND", "FPPOS", "OTA_ID",
                        "CELLMODE", "CCDBIN1", "CCDBIN2", "CCDSUM", "CTYPE1", "CTYPE2", "CRVAL1", "CRVAL2",
                        "CD1_1", "CD2_2", "WAT0_001", "EQUINOX", "RADESYS", "CELLGAP1", "CELLGAP2", "CNAXIS1",
                        "CNAXIS2", "PRESCAN1", "PRESCAN2", "OVRSCAN1", "OVRSCAN2", "IMNAXIS1", "IMNAXIS2",
                        "NAMPS"):
                assert key in prim, key
            for axis in (1, 2):
                for n in range(1, 6):
                    assert f"WAT{axis}_{n:03d}" in prim
            assert prim["OBSID"] == folder.name[1:]
            assert prim["FILENAME"] == f"{folder.name}.33.fits"
            assert prim["FPPOS"] == "xy33" and prim["OTA_ID"] == "13879"
            assert prim["CELLMODE"] == "S" * 64
            assert prim["CTYPE1"] == "RA---ZPX"
            start = datetime.strptime(prim["DATE-OBS"], "%Y-%m-%dT%H:%M:%S.%f")
            assert folder.name == "o" + start.strftime("%Y%m%dT%H%M%S") + ".0"
            mjd = (start - datetime(1858, 11, 17)).total_seconds() / 86400.0
            assert prim["MJD-OBS"] == pytest.approx(mjd, abs=1e-7)
            arms = [prim[f"FLTARM{a}{s}"] for a in "123" for s in "ABC"]
            assert arms.count("IN") == 1 and arms.count("OUT") == 8
            assert {"odi_r": "w105", "odi_g": "w104"}[prim["FILTER"]] == prim["FILTERID"]
            for cx, cy in instrument.CELL_IDS:
                hdu = hdul[f"xy{cx}{cy}"]
                assert hdu.data.dtype == np.uint16 and hdu.data.shape == (geo.raw_ny, geo.raw_nx)
                h = hdu.header
                x1, y1 = geo.cell_origin(cx, cy)
                assert (h["WN_CELLX"], h["WN_CELLY"], h["WN_OTAX"], h["WN_OTAY"]) == (cx, cy, 3, 3)
                assert (h["LTV1"], h["LTV2"]) == (-x1, -y1)
                assert h["CRPIX1"] == pytest.approx(hdul["xy07"].header["CRPIX1"] - x1)
                assert h["CRPIX2"] == pytest.approx(hdul["xy07"].header["CRPIX2"] - y1)
                assert 1.1 < h["GAIN"] < 1.5
        raw = rawio.read_raw_ota(path)
        assert raw.ota == 33 and raw.geometry.kind == "test" and len(raw.cells) == 64
    # the pODI axis is near the centre of OTA33: CRPIX(full size) ~ (2067, 2088)
    assert raw.cell_headers[(0, 7)]["CRPIX1"] * 8 == pytest.approx(2067, abs=1)
    assert raw.cell_headers[(0, 7)]["CRPIX2"] * 8 == pytest.approx(2088, abs=1)


def test_overscan_is_pedestal(night_dir):
    out, written = night_dir
    for folder in written[:2]:  # bias and flat
        truth = json.loads((_truth(out, folder) / "exposure.json").read_text())
        raw = rawio.read_raw_ota(folder / f"{folder.name}.44.fits")
        geo = raw.geometry
        for (cx, cy), cell in raw.cells.items():
            ped = truth["bias_pedestal_adu"]["44"][f"xy{cx}{cy}"]
            assert 1000 < ped < 2000
            # the overscan is the pedestal mixed by crosstalk (test_simulate_effects checks the mixing)
            level = truth["overscan_level_adu"]["44"][f"xy{cx}{cy}"]
            assert abs(level - ped) < 4
            assert np.median(cell[geo.overscan_section()]) == pytest.approx(level, abs=1.5)
            assert np.median(cell[:, geo.data_nx: geo.overscan_cols[0]]) == pytest.approx(level, abs=3.5)
            if truth["obstype"] == "BIAS":
                data = cell[geo.data_section()].astype(float)
                assert np.median(data) == pytest.approx(level, abs=2.5)  # + bias structure, cosmic rays
                mad = 1.4826 * np.median(np.abs(data - np.median(data)))
                assert mad == pytest.approx(6.5, rel=0.2)
            else:
                level = np.median(cell[geo.data_section()]) - ped
                assert 17000 < level * raw.cell_headers[(cx, cy)]["GAIN"] / 1.3 < 30000


def test_sky_level_per_ota(night_dir):
    out, written = night_dir
    for folder in _object_folders(written):
        truth = json.loads((_truth(out, folder) / "exposure.json").read_text())
        for ota_s, expected in truth["sky"]["mean_per_ota"].items():
            raw = rawio.read_raw_ota(folder / f"{folder.name}.{ota_s}.fits")
            geo = raw.geometry
            values = []
            serial, mode = raw.primary["OTA_ID"], raw.primary["CELLMODE"]
            for (cx, cy), cell in raw.cells.items():
                if not instrument.cell_is_used(int(ota_s), cx, cy, cellmode=mode, serial=serial, mjd=truth["mjd"]):
                    continue  # broken and video cells hold no sky
                bias = np.median(cell[geo.overscan_section()])
                values.append((np.median(cell[geo.data_section()]) - bias) * raw.cell_headers[(cx, cy)]["GAIN"] / 1.3)
            assert np.mean(values) == pytest.approx(expected, rel=0.01), ota_s


def _assemble(render, ota: int) -> np.ndarray:
    """OTA frame in ADU at the nominal gain from a noise-free render without bias."""
    o = render.otas[ota]
    geo = render.exposure.geometry
    frame = np.zeros((geo.ota_size, geo.ota_size))
    for i, (cx, cy) in enumerate(instrument.CELL_IDS):
        frame[geo.target_region(cx, cy)] = o.cells[(cx, cy)][geo.data_section()] * o.gains[i] / 1.3
    return frame


def _moffat_alpha(fwhm_px: float) -> float:
    return fwhm_px / (2.0 * math.sqrt(2.0 ** (1.0 / BETA) - 1.0))


def check_stars(night, exposure, otas, *, tol_px: float, max_peak: float, min_flux: float, n_min: int):
    """Noise-free render: centroids vs astropy all_world2pix, fluxes vs the zero point.

    Isolated stars (no other star within 1.5 box + 10 alpha, the others' Moffat tails < 2e-4 of the flux in
    the box) in a box of half-width 10 alpha that lies inside one cell. ``min_flux`` keeps the stars bright
    enough for the rounding of faint wings to integer ADU not to matter.
    """
    render = render_exposure(exposure, night, noise=False, sky_light=False, bias=False, dark=False, otas=otas,
                             effects=night.effects.none())
    geo = exposure.geometry
    pixscale = 0.1125 * geo.scale
    alpha = _moffat_alpha(exposure.seeing / pixscale)
    box = int(math.ceil(10 * alpha))
    zp = ZP0[exposure.filter] - EXTINCTION[exposure.filter] * (exposure.airmass - 1.0)
    residuals = []
    for ota in otas:
        o = render.otas[ota]
        frame = _assemble(render, ota)
        s = o.stars
        w = WCS(o.wcs_header)
        x_exp, y_exp = w.all_world2pix(s["ra"], s["dec"], 0)
        m_ref = s["r"] if exposure.filter == "odi_r" else s["g"] - 0.16 * (s["g"] - s["r"])
        flux = 10 ** (-0.4 * (m_ref - zp)) * exposure.exptime
        peak = flux * (BETA - 1) / (math.pi * alpha**2)
        for k in range(len(s["id"])):
            if not (min_flux < flux[k] and peak[k] < max_peak):
                continue
            xi, yi = int(round(x_exp[k])), int(round(y_exp[k]))
            cell = geo.cell_at(xi - box, yi - box)
            if cell is None or cell != geo.cell_at(xi + box, yi + box):
                continue
            d2 = (x_exp - x_exp[k]) ** 2 + (y_exp - y_exp[k]) ** 2
            d2[k] = np.inf
            tails = flux * (BETA - 1) / (math.pi * alpha**2) * (1 + d2 / alpha**2) ** -BETA * (2 * box + 1) ** 2
            if tails.sum() > 2e-4 * flux[k] or d2.min() < (1.5 * box + 10 * alpha) ** 2:
                continue
            cut = frame[yi - box: yi + box + 1, xi - box: xi + box + 1]
            yy, xx = np.mgrid[yi - box: yi + box + 1, xi - box: xi + box + 1]
            total = cut.sum()
            residuals.append(((xx * cut).sum() / total - x_exp[k], (yy * cut).sum() / total - y_exp[k],
                              total / flux[k] - 1))
            assert s["flux_adu"][k] == pytest.approx(flux[k], rel=1e-9)
    residuals = np.array(residuals).reshape(-1, 3)
    assert len(residuals) >= n_min
    assert np.abs(residuals[:, :2]).max() < tol_px
    assert np.abs(residuals[:, 2]).max() < 0.005
    return residuals


@pytest.mark.parametrize("which", [-2, -1])
def test_star_positions_and_fluxes(which):
    night = load_night(SPEC)
    exposure = night.exposures[which]
    check_stars(night, exposure, [33, 34, 43, 23, 22, 44, 32], tol_px=0.02, max_peak=50000, min_flux=5e3, n_min=5)


def test_canned_offset_and_pointing_error(night_dir):
    out, written = night_dir
    night = load_night(SPEC)
    for e in night.exposures:
        with fits.open(_truth(out, written[e.index]) / "wcs.fits") as hdul:
            h = hdul["OTA33.SCI"].header
        dec_axis = e.dec + CANNED_OFFSET["podi"][1]
        ra_axis = e.ra + CANNED_OFFSET["podi"][0] / math.cos(math.radians(dec_axis))
        derr = (h["CRVAL2"] - dec_axis) * 3600
        rerr = (h["CRVAL1"] - ra_axis) * 3600 * math.cos(math.radians(h["CRVAL2"]))
        assert (rerr, derr) == pytest.approx(e.pointing_error, abs=1e-6)
        if e.obstype == "OBJECT":
            assert 170 < math.hypot(rerr, derr) < 190  # 3 arcmin + jitter
            rot = math.degrees(math.atan2(h["CD2_1"], h["CD1_1"]))
            assert rot == pytest.approx(1.0, abs=0.1)
            assert h["CD1_1"] * h["CD2_2"] > 0 and h["CTYPE1"] == "RA---TPV"


def _rms_mas(h1, h2, n=17, size=4096) -> float:
    g = np.linspace(1, size, n)
    xx, yy = np.meshgrid(g, g)
    out = []
    for h in (h1, h2):
        h = h.copy()
        h["CTYPE1"], h["CTYPE2"] = "RA---TPV", "DEC--TPV"
        for key in ("NAXIS", "NAXIS1", "NAXIS2"):
            h.remove(key, ignore_missing=True)
        out.append(WCS(h).all_pix2world(xx.ravel(), yy.ravel(), 1))
    dra = (out[0][0] - out[1][0]) * np.cos(np.radians(out[0][1]))
    return float(np.sqrt(np.mean(dra**2 + (out[0][1] - out[1][1]) ** 2)) * 3.6e6)


def test_mastercal_distortion_is_perturbed(night_dir):
    out, _ = night_dir
    with fits.open(out / "mastercals" / "wcs" / "podi" / "podiflow_sim_podi.fits") as given, \
            fits.open(out / "truth" / "wcs" / "podi" / "distortion_true.fits") as true:
        names = [h.name for h in given[1:]]
        assert len(names) == 13 and all(n.startswith("OTA") and n.endswith(".SCI") for n in names)
        for name in names:
            g = given[name].header
            assert g["CTYPE1"] == "RA---TAN" and g["NAXIS"] == 0
            assert (g["CRVAL1"], g["CRVAL2"]) == CANNED_OFFSET["podi"]
            assert 30.0 <= _rms_mas(g, true[name].header) <= 50.0


def test_refcat_errors_and_proper_motion(night_dir):
    out, written = night_dir
    ref = Table.read(out / "refcat" / "refcat.fits")
    for col in ("ra", "dec", "ra_error", "dec_error", "epoch", "pmra", "pmdec", "u", "g", "r", "i", "z",
                "u_err", "g_err", "r_err", "i_err", "z_err"):
        assert col in ref.colnames
    assert ref["r"].max() < 21.7 and np.all(ref["epoch"] == 2016.0)
    assert 15 <= ref["ra_error"].min() and ref["ra_error"].max() <= 50
    assert 0.01 <= ref["r_err"].min() and ref["r_err"].max() <= 0.03
    folder = _object_folders(written)[0]
    truth = json.loads((_truth(out, folder) / "exposure.json").read_text())
    stars = Table.read(_truth(out, folder) / "stars.fits")
    index = {int(i): k for k, i in enumerate(ref["id"])}
    rows = [index[int(i)] for i in stars["id"] if int(i) in index]
    assert len(rows) > 100
    r = ref[rows]
    s = stars[[int(i) in index for i in stars["id"]]]
    dt = truth["epoch"] - 2016.0
    dec = r["dec"] + r["pmdec"] * dt / 3.6e6
    ra = r["ra"] + r["pmra"] * dt / 3.6e6 / np.cos(np.radians(r["dec"]))
    d = np.hypot((ra - s["ra"]) * np.cos(np.radians(s["dec"])), dec - s["dec"]) * 3.6e6
    assert 20 <= np.sqrt(np.mean(d**2)) <= 80
    assert abs(np.mean(r["r"] - s["r"])) < 0.005 and np.std(r["r"] - s["r"]) < 0.03
    # the proper motions matter: without them the offsets grow
    d0 = np.hypot((r["ra"] - s["ra"]) * np.cos(np.radians(s["dec"])), r["dec"] - s["dec"]) * 3.6e6
    assert np.sqrt(np.mean(d0**2)) > np.sqrt(np.mean(d**2))


def test_truth_json_and_colour_terms(night_dir):
    out, written = night_dir
    for folder in _object_folders(written):
        truth = json.loads((_truth(out, folder) / "exposure.json").read_text())
        f = truth["filter"]
        zp = truth["zeropoint"]
        assert zp["zp_1s"] == pytest.approx(ZP0[f] - EXTINCTION[f] * (truth["airmass"] - 1))
        assert zp["zp_frame"] == pytest.approx(zp["zp_1s"] + 2.5 * math.log10(truth["exptime"]))
        alpha = _moffat_alpha(truth["seeing_arcsec"] / truth["pixel_scale_arcsec"])
        for d, value in zp["aperture_diameter_arcsec_1s"].items():
            r = float(d) / 2 / truth["pixel_scale_arcsec"]
            ee = 1 - (1 + (r / alpha) ** 2) ** (1 - BETA)
            assert value == pytest.approx(zp["zp_1s"] + 2.5 * math.log10(ee))
        stars = Table.read(_truth(out, folder) / "stars.fits")
        expected = stars["g"] - 0.16 * (stars["g"] - stars["r"]) if f == "odi_g" else stars["r"]
        assert np.allclose(stars["m_odi"], expected)
        assert set(np.unique(stars["ota"])) <= set(instrument.layout("podi").otas)


def test_night_spec_expansion():
    night = load_night(CONFIGS / "nights" / "test-small-5x6.toml")
    assert night.kind == "test" and night.layouts == ("odi_5x6",)
    assert all(len(e.otas) == 30 for e in night.exposures)
    assert len({e.night for e in night.exposures}) == 1
    starts = [e.start for e in night.exposures]
    assert starts == sorted(starts)
    types = [e.obstype for e in night.exposures]
    assert types.count("BIAS") == 3 and types.count("DARK") == 2 and types.count("DFLAT") == 6
    late = load_night({**SPEC, "night": {**SPEC["night"], "start": "2019-03-01T03:00:00"}})
    assert 21 not in late.exposures[0].otas and len(late.exposures[0].otas) == 29
    for spec_names in ("demo", "podi-night", "test-small"):
        n = load_night(CONFIGS / "nights" / f"{spec_names}.toml")
        assert n.layouts == ("podi",)
    with pytest.raises(ValueError, match="unknown field"):
        load_night({**SPEC, "sequence": [{"type": "object", "field": "nope"}]})
    with pytest.raises(ValueError, match="type"):
        load_night({**SPEC, "sequence": [{"type": "sky"}]})


def test_fz_matches_plain(tmp_path, night_dir):
    out, written = night_dir
    target = written[0].name
    simulate_night(SPEC, tmp_path, fz=True, only=[target])
    fz = rawio.read_raw_ota(tmp_path / "raw" / "20131004" / target / f"{target}.33.fits.fz", dtype=np.uint16)
    plain = rawio.read_raw_ota(written[0] / f"{target}.33.fits", dtype=np.uint16)
    for key in plain.cells:
        assert np.array_equal(fz.cells[key], plain.cells[key])


def test_5x6_test_exposure_renders():
    night = load_night(CONFIGS / "nights" / "test-small-5x6.toml")
    exposure = [e for e in night.exposures if e.obstype == "OBJECT"][0]
    check_stars(night, exposure, [33, 44, 11, 56], tol_px=0.02, max_peak=50000, min_flux=3e3, n_min=3)
