"""Tests of the simulator's detector and optics effects (part 2) on the test instrument.

Each check compares the raw pixels with what the truth (exposure.json, truth/detector, the mastercals
files) and the formulas of the docs predict, computed here independently of the injecting code; renders
with one effect switched off isolate that effect.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from astropy.io import fits

from podisteps import instrument
from podisteps.detrend import masks, persistency
from podisteps.simulate import load_night, render_exposure, simulate_night

SPEC = {
    "night": {"name": "fx", "start": "2013-10-05T02:00:00", "instrument": "test", "binning": 1, "seed": 3},
    "field": [{"name": "F", "ra": "22:15:30.0", "dec": "+15:30:00"}],
    "sequence": [
        {"type": "bias", "count": 2},
        {"type": "dark", "count": 1, "exptime": 300.0},
        {"type": "dflat", "filter": "odi_r", "count": 1},
        {"type": "object", "field": "F", "filter": "odi_r", "count": 1, "exptime": 100.0, "seeing": 1.0,
         "bright_star": {"mag": 9.0, "ota": 43, "x": 1800, "y": 1300}},
        {"type": "object", "field": "F", "filter": "odi_i", "count": 3, "exptime": 100.0, "seeing": 1.0},
        {"type": "object", "field": "F", "filter": "odi_i", "count": 1, "exptime": 100.0, "seeing": 1.0,
         "start": "2013-10-05T02:40:00"},
    ],
}

NOMINAL_GAIN = 1.3


@pytest.fixture(scope="module")
def night():
    return load_night(SPEC)


@pytest.fixture(scope="module")
def tree(tmp_path_factory, night):
    """Mastercals and truth trees plus the two biases and the first science exposure."""
    out = tmp_path_factory.mktemp("fx")
    keep = [e.dirname for e in night.exposures[:2]] + [night.exposures[4].dirname]
    simulate_night(SPEC, out, only=keep)
    return out


def _truth(out, e) -> dict:
    return json.loads((out / "truth" / e.night / e.dirname / "exposure.json").read_text())


def _detector(out) -> dict:
    return json.loads((out / "truth" / "detector" / "podi" / "detector_test_bin1.json").read_text())


def _fwd(out) -> np.ndarray:
    with fits.open(out / "mastercals" / "crosstalk" / "podi" / "crosstalk_odi_5x6.fits") as hdul:
        return np.array(hdul["XTALK.FWD"].data)


def _stack(render, ota) -> np.ndarray:
    cells = render.otas[ota].cells
    return np.stack([cells[c].astype(np.float64) for c in instrument.CELL_IDS])


# ------------------------------------------------------------------------------------------------------


def test_mastercal_file_formats(tree):
    xt = tree / "mastercals" / "crosstalk" / "podi"
    assert (xt / "crosstalk.history").read_text().split() == ["0.00", "crosstalk_odi_5x6.fits"]
    with fits.open(xt / "crosstalk_odi_5x6.fits") as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "XTALK.FWD", "XTALK.INV"]
        fwd, inv = hdul["XTALK.FWD"].data, hdul["XTALK.INV"].data
        assert fwd.dtype.kind == "f" and fwd.dtype.itemsize == 8 and fwd.shape == (8, 8, 8)
        assert inv.dtype.itemsize == 8 and inv.shape == (8, 8, 8)
    off = fwd[~np.tile(np.eye(8, dtype=bool), (8, 1, 1))]
    assert np.all(np.diagonal(fwd, axis1=1, axis2=2) == 1.0)
    assert 1.9e-5 <= off.min() and off.max() <= 7.5e-4 and 6e-5 < np.median(off) < 1.35e-4
    for cy in range(8):
        assert np.allclose(fwd[cy] @ inv[cy], np.eye(8), atol=1e-12)

    nl = tree / "mastercals" / "nonlinearity"
    hist = [line.split() for line in (nl / "nonlinearity.history").read_text().splitlines()]
    assert [float(h[0]) for h in hist] == sorted(float(h[0]) for h in hist) and len(hist) == 2
    det = _detector(tree)
    for mjd, name in hist:
        layout = "podi" if float(mjd) < 57023 else "odi_5x6"
        with fits.open(nl / name) as hdul:
            assert hdul[0].header["POLYORDR"] == 3 and hdul[1].name == "NONLINCORR"
            t = hdul[1].data
            assert list(t.columns.names) == ["OTA", "CELLX", "CELLY", "COEFF_X**2", "COEFF_X**3",
                                             "UNCERT_COEFF_X**2", "UNCERT_COEFF_X**3", "RELATIVE_GAIN", "SATLEVEL"]
            assert set(np.unique(t["OTA"])) == set(instrument.layout(layout).otas)
            assert 0.8 < np.median(t["RELATIVE_GAIN"]) < 1.2 and np.all(t["SATLEVEL"] <= 65535)
            if layout == "podi":
                # given coefficients differ from the true ones, within the stated uncertainties
                dev = []
                for row in t:
                    true = det["otas"][f"{row['OTA']:02d}"]
                    cell = f"xy{row['CELLX']}{row['CELLY']}"
                    for k, col in ((2, "COEFF_X**2"), (3, "COEFF_X**3")):
                        d = abs(row[col] - true[f"nonlinearity_c{k}"][cell])
                        assert d <= row[f"UNCERT_{col}"] * (1 + 1e-6) + 1e-20
                        dev.append(d)
                assert max(dev) > 0
                assert len(t) < 64 * 13  # broken cells are not listed

    listed = missed = false = 0
    for ota in instrument.layout("podi").otas:
        text = (tree / "mastercals" / "bpm" / "podi" / f"bpm_xy{ota:02d}.reg").read_text()
        parsed = masks.parse_ds9_regions(text)
        assert parsed.ignored == () and text.endswith("\n")
        mask, ignored = masks.bpm_mask(parsed, instrument.geometry("test", 1))
        assert ignored == []
        d = det["otas"][f"{ota:02d}"]
        listed += sum(x["in_bpm"] for x in d["defects"])
        missed += sum(not x["in_bpm"] for x in d["defects"] if x["kind"] != "hot" or x["rows"][1] - x["rows"][0] > 1)
        false += len(d["false_bpm_boxes"])
        assert len(parsed.regions) == sum(x["in_bpm"] for x in d["defects"]) + len(d["false_bpm_boxes"])
    assert listed > 20 and missed >= 1 and false >= 1


def test_bpm_regions_cover_true_defects(tree, night):
    e = night.exposures[4]
    with fits.open(tree / "truth" / e.night / e.dirname / "masks.fits") as hdul:
        names = [h.name for h in hdul[1:]]
        assert names == [f"OTA{o:02d}.MASK" for o in instrument.layout("podi").otas]
        truth_masks = {int(h.name[3:5]): h.data for h in hdul[1:]}
    geo = instrument.geometry("test", 1)
    covered = []
    for ota, m in truth_masks.items():
        assert m.dtype == np.uint8 and m.shape == (512, 512)
        bad = (m & 1) > 0
        region = masks.read_bpm_regions(tree / "mastercals" / "bpm" / "podi" / f"bpm_xy{ota:02d}.reg")
        given, _ = masks.bpm_mask(region, geo)
        covered.append((bad & given).sum() / max(1, bad.sum()))
    assert np.median(covered) > 0.8 and min(covered) < 1.0  # most defects listed, some missed


def test_fringe_vectors_point_dark_to_bright(tree):
    det = _detector(tree)
    n = 0
    for ota in (33, 44, 0):
        p = det["otas"][f"{ota:02d}"]["fringe_pattern"]
        kx, ky, ph = (np.array(p[k]) for k in ("kx", "ky", "phase"))

        def f(x, y):
            return 0.5 * sum(np.cos(a * x + b * y + c) for a, b, c in zip(kx, ky, ph))

        for filt in ("odi_i", "odi_z"):
            text = (tree / "mastercals" / "fringevectors" / "podi" / filt /
                    f"fringevectors__{filt}__OTA{ota:02d}.reg").read_text()
            vecs = [tuple(map(float, line.split("(")[1].split(")")[0].split(",")))
                    for line in text.splitlines() if line.startswith("# vector(")]
            assert len(vecs) > 10
            for x, y, length, theta in vecs:
                x0, y0 = x - 1, y - 1
                x1, y1 = x0 + length * math.cos(math.radians(theta)), y0 + length * math.sin(math.radians(theta))
                assert f(x1, y1) - f(x0, y0) > 0.5
                n += 1
    assert n > 60


def test_overscan_follows_bias_offsets(tree, night):
    fwd = _fwd(tree)
    levels = []
    for e in night.exposures[:2]:
        truth = _truth(tree, e)
        from podisteps.io import rawio
        raw = rawio.read_raw_ota(tree / "raw" / e.night / e.dirname / f"{e.dirname}.44.fits")
        geo = raw.geometry
        ped = truth["bias_pedestal_adu"]["44"]
        got = {}
        for (cx, cy), cell in raw.cells.items():
            expected = sum(fwd[cy, s, cx] * ped[f"xy{s}{cy}"] for s in range(8))
            got[(cx, cy)] = np.median(cell[geo.overscan_section()])
            assert got[(cx, cy)] == pytest.approx(expected, abs=1.5)
            assert truth["overscan_level_adu"]["44"][f"xy{cx}{cy}"] == pytest.approx(expected, abs=1e-3)
        levels.append((got, ped))
    # the per-exposure offsets show in the overscan
    (g1, p1), (g2, p2) = levels
    d_obs = np.array([g2[c] - g1[c] for c in instrument.CELL_IDS])
    d_true = np.array([p2[f"xy{cx}{cy}"] - p1[f"xy{cx}{cy}"] for cx, cy in instrument.CELL_IDS])
    assert np.std(d_true) > 0.5 and np.corrcoef(d_obs, d_true)[0, 1] > 0.9


def test_crosstalk_ghost_amplitude(tree, night):
    e = night.exposures[4]
    fwd = _fwd(tree)
    on = render_exposure(e, night, noise=False, otas=[43])
    off = render_exposure(e, night, noise=False, otas=[43], effects={"crosstalk": False})
    a, b = _stack(on, 43), _stack(off, 43)
    index = {c: i for i, c in enumerate(instrument.CELL_IDS)}
    sat_cells = {c for c in instrument.CELL_IDS if (b[index[c]] >= 65535).any()}
    assert sat_cells, "the bright star saturates OTA43"
    strongest = 0.0
    for cy in range(8):
        for t in range(8):
            expected = sum(fwd[cy, s, t] * b[index[(s, cy)]] for s in range(8))
            assert np.abs(np.minimum(expected, 65535) - a[index[(t, cy)]]).max() <= 1.5
        for (sx, sy) in sat_cells:
            if sy != cy:
                continue
            sat = b[index[(sx, sy)]] >= 65535
            others = np.zeros(sat.shape, bool)
            for s in range(8):
                if s != sx:
                    others |= b[index[(s, cy)]] >= 65535
            only = sat & ~others
            level = np.median(b[index[(sx, sy)]][~sat])
            for t in range(8):
                if t == sx or (t, cy) in sat_cells:
                    continue
                excess = a[index[(t, cy)]] - b[index[(t, cy)]]
                ghost = np.median(excess[only]) - np.median(excess[~sat & ~others])
                amp = fwd[cy, sx, t] * (65535 - level)
                assert ghost == pytest.approx(amp, abs=1.5)
                strongest = max(strongest, amp)
    assert strongest > 5


def test_saturated_column_bleeds_upward(night):
    e = night.exposures[4]
    r = render_exposure(e, night, noise=False, otas=[43], effects={"crosstalk": False})
    nobleed = render_exposure(e, night, noise=False, otas=[43], effects={"crosstalk": False, "saturation": False})
    star = [k for k, i in enumerate(r.otas[43].stars["id"]) if i == -1][0]
    x, y = r.otas[43].stars["x"][star], r.otas[43].stars["y"][star]
    geo = e.geometry
    cx, cy = geo.cell_at(round(x), round(y))
    x1, y1 = geo.cell_origin(cx, cy)
    col, row = int(round(x)) - x1, int(round(y)) - y1
    cell = r.otas[43].cells[(cx, cy)]
    assert cell[row, col] == 65535
    sat = np.nonzero(cell[:, col] == 65535)[0]
    assert np.array_equal(sat, np.arange(sat.min(), sat.max() + 1))  # one contiguous trail
    above, below = sat.max() - row, row - sat.min()
    assert above > below + 3 and sat.max() == geo.data_ny - 1
    # without the full-well model the core is clipped symmetrically and nothing spills up the column
    plain = nobleed.otas[43].cells[(cx, cy)][:, col] >= 65535
    assert plain.sum() < len(sat)
    m = r.otas[43].masks
    trail = m[y1:y1 + geo.data_ny, x1 + col]
    own = np.nonzero(trail & 2)[0]
    assert own.min() <= row <= own.max() and own.max() < geo.data_ny - 1
    assert (trail[own.max() + 1:] & 4).all() and not (trail[:own.min()] & 4).any()  # BLEED above only


def test_persistence_only_later_inside_window_and_decays(night):
    ota = 43
    sci = [e for e in night.exposures if e.obstype == "OBJECT"]
    first = sci[0]
    std = render_exposure(first, night, otas=[ota])  # the raw frame as written
    table = persistency.saturated_pixels(std.otas[ota].cells)
    assert len(table)
    top = {}
    for row in table:
        key = (int(row["CELL_X"]), int(row["CELL_Y"]), int(row["X"]))
        top[key] = max(top.get(key, 0), int(row["Y"]) + 1)
    later_cols = set()
    for e in sci[1:4]:
        for row in persistency.saturated_pixels(render_exposure(e, night, otas=[ota]).otas[ota].cells):
            later_cols.add((int(row["CELL_X"]), int(row["CELL_Y"]), int(row["X"])))
    amps = []
    for e in sci:
        on = render_exposure(e, night, noise=False, otas=[ota])
        off = render_exposure(e, night, noise=False, otas=[ota], effects={"persistence": False})
        dt = (e.mjd - first.mjd) * 86400.0
        t = dt - first.exptime
        diff = {c: on.otas[ota].cells[c].astype(float) - off.otas[ota].cells[c] for c in instrument.CELL_IDS}
        gains = dict(zip(instrument.CELL_IDS, on.otas[ota].gains))
        if e is first or t > 600:
            assert all(not d.any() for d in diff.values())
            continue
        expected = (30 * math.exp(-t / 210) + 15 * math.exp(-t / 980)) * (1 - t / 600)
        vals = []
        for (cx, cy, x), y_top in top.items():
            if (cx, cy, x) in later_cols:
                continue
            column = diff[(cx, cy)][:, x]
            vals.append(np.median(column[:y_top]) * gains[(cx, cy)] / NOMINAL_GAIN)
            assert not column[y_top + 1:].any()
        assert np.median(vals) == pytest.approx(expected, abs=1.2)
        amps.append(np.median(vals))
    assert len(amps) == 3 and amps[0] > amps[1] > amps[2] > 0
    # the exposure 20 min later is outside the window
    assert (sci[-1].mjd - first.mjd) * 86400 - first.exptime > 600


def test_nonlinearity_is_the_inverse_of_the_true_coefficients(tree, night):
    e = night.exposures[3]  # dome flat, ~26 kADU
    fx = {"crosstalk": False, "bias_structure": False, "broken_cells": False}
    on = render_exposure(e, night, noise=False, otas=[33], effects=fx)
    off = render_exposure(e, night, noise=False, otas=[33], effects={**fx, "nonlinearity": False})
    det = _detector(tree)["otas"]["33"]
    geo = e.geometry
    ped = on.otas[33].pedestals
    worst = 0.0
    for i, c in enumerate(instrument.CELL_IDS):
        name = f"xy{c[0]}{c[1]}"
        d_raw = on.otas[33].cells[c][geo.data_section()] - ped[i]
        d_lin = off.otas[33].cells[c][geo.data_section()] - ped[i]
        c2, c3 = det["nonlinearity_c2"][name], det["nonlinearity_c3"][name]
        model = d_raw + c2 * d_raw**2 + c3 * d_raw**3
        worst = max(worst, np.abs(model - d_lin).max())
        assert np.abs(d_raw - d_lin).max() > 20  # the effect is there
    assert worst < 1.5


def test_cells_video_and_broken(tree, night):
    e = night.exposures[4]
    truth = _truth(tree, e)
    for ota, mode in truth["cellmode"].items():
        n = mode.count("V")
        assert (2 <= n <= 4) if int(ota) in (0, 16, 55, 61) else n == 0
        assert set(mode) <= {"S", "V"}
    flat = render_exposure(night.exposures[3], night, noise=False, otas=[0])  # serial 13838: column cx=7 broken
    assert render_exposure(night.exposures[3], night, otas=[0]).otas[0].primary["CELLMODE"] == "S" * 64
    geo = night.exposures[3].geometry
    cells = flat.otas[0].cells
    ped = flat.otas[0].pedestals
    levels = {c: np.median(cells[c][geo.data_section()]) - ped[i] for i, c in enumerate(instrument.CELL_IDS)}
    for cx, cy in instrument.CELL_IDS:
        if cx == 7:
            assert levels[(cx, cy)] < 2000
        else:
            assert levels[(cx, cy)] > 10000


def test_dark_glow_and_bias_structure(night):
    dark = night.exposures[2]
    r = render_exposure(dark, night, noise=False, otas=[33], effects={"crosstalk": False, "bad_pixels": False,
                                                                      "cosmic_rays": False})
    b = render_exposure(dark, night, noise=False, otas=[33], effects={"crosstalk": False, "bad_pixels": False,
                                                                      "cosmic_rays": False, "dark_glow": False})
    glow = r.otas[33].cells[(3, 3)].astype(float) - b.otas[33].cells[(3, 3)]
    assert glow[0, 0] > 5 * max(1.0, glow[30, 30]) and glow[:, 60:].max() == 0  # corner only, no overscan
    bias = night.exposures[0]
    s = render_exposure(bias, night, noise=False, otas=[33], effects={"crosstalk": False})
    f = render_exposure(bias, night, noise=False, otas=[33], effects={"crosstalk": False, "bias_structure": False})
    geo = bias.geometry
    for c in instrument.CELL_IDS:
        d = s.otas[33].cells[c].astype(float) - f.otas[33].cells[c]
        assert not d[geo.overscan_section()].any()
        assert d[:, 0].mean() > d[:, 30].mean() + 1  # the ramp at the start of the rows


def test_pupil_ghost_ring(night):
    e = night.exposures[4]  # odi_r, rotator 0
    fx = {"cosmic_rays": False, "flat_response": False, "bad_pixels": False, "crosstalk": False,
          "nonlinearity": False, "bias_structure": False, "dark_glow": False}
    on = render_exposure(e, night, noise=False, bias=False, dark=False, stars=False, otas=[33], effects=fx)
    off = render_exposure(e, night, noise=False, bias=False, dark=False, stars=False, otas=[33],
                          effects={**fx, "pupil_ghost": False})
    geo = e.geometry
    centre = (4200.0, 4150.0)  # docs/calibrations.md, 'Pupil-ghost templates': canned pODI centres near (4182..4225, 4145..4155) in OTA33
    ratios = {}
    for c in instrument.CELL_IDS:
        rows, cols = geo.target_region(*c)
        yy, xx = np.mgrid[rows, cols]
        r = np.hypot((xx + 0.5) * 8 - 0.5 - centre[0], (yy + 0.5) * 8 - 0.5 - centre[1])
        ratio = on.otas[33].cells[c][geo.data_section()] / np.maximum(off.otas[33].cells[c][geo.data_section()], 1)
        for lo, hi in ((1850, 1950), (0, 1050), (3500, 9000)):
            sel = (r >= lo) & (r < hi)
            ratios.setdefault((lo, hi), []).extend(ratio[sel].tolist())
    assert np.median(ratios[(1850, 1950)]) == pytest.approx(1.0335, abs=0.004)
    assert np.median(ratios[(0, 1050)]) == pytest.approx(1.0, abs=0.003)
    assert np.median(ratios[(3500, 9000)]) == pytest.approx(1.0, abs=0.003)


def test_cosmic_rays_rate_and_mask(night):
    e = night.exposures[2]  # 300-s dark
    r = render_exposure(e, night, noise=False, otas=[33], effects={"crosstalk": False})
    info = r.otas[33].info["cosmic_rays"]
    area = 64 * 494 * 480 * (15e-4) ** 2
    expected = 0.025 * area * (300 + 10)
    assert abs(info["events"] - expected) < 5 * math.sqrt(expected)
    assert ((r.otas[33].masks & 16) > 0).sum() >= info["events"] * 0.5
