"""Accuracy of DetrendOTA on the full-size pODI instrument (``-m fullsize``): the pull test and ``-crj``.

The fast versions (test instrument) are in ``tests/test_detrend_accuracy.py``; this file reuses their
helpers on two OTAs of one full-size exposure (OTA33 and OTA22), where stars are well sampled (FWHM ~9 px)
and cells are 480x494 px, as on the real instrument.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from podisteps.simulate import detector, render_exposure

from .test_detrend_accuracy import (NIGHT, P, T_BLEED, T_CELL, T_COSMIC, T_SAT, Sim, _build, _detrend, _frame,
                                    _near_cell_edges, _product, _signal_and_sigma, _spec, _true_calibrations,
                                    _true_options, _truth_masks)

pytestmark = pytest.mark.fullsize

OTAS = (33, 22)


def _full_spec(**effects):
    spec = _spec(**effects)
    spec["night"]["instrument"] = "full"
    spec["sequence"][0]["seeing"] = 1.0
    return spec


def _full_5x6_spec():
    """The same exposure in 2016: the ODI 5x6 layout (different detectors, cells and mastercals)."""
    spec = _full_spec()
    spec["night"]["start"] = "2016-10-05T03:00:00"
    spec["sequence"][0]["bright_star"]["ota"] = 44
    return spec


@pytest.fixture(scope="module")
def full_nights(tmp_path_factory):
    base = tmp_path_factory.mktemp("accuracy-full")
    pull = Sim(base / "pull", _full_spec())
    cr = Sim(base / "cr", _full_spec(cosmic_rays=True))
    assert pull.obsid == cr.obsid  # same seed and exposure: identical noise draws
    return {"pull": pull, "cr": cr, "cals": _true_calibrations(pull, base / "truecals", otas=OTAS)}


def _pull_stats(sim, cals) -> dict:
    """Per OTA of OTAS: (pull mean, pull rms, pixels) of the exposure detrended with the true calibrations."""
    tasks = {ota: _detrend(sim.obsid, ota, **_true_options(cals)) for ota in OTAS}
    _build(list(tasks.values()))
    truth = _signal_and_sigma(sim, cals, otas=OTAS)
    tmasks = _truth_masks(sim.root, sim.obsid)
    stats = {}
    for ota, task in tasks.items():
        sci, pmask, _ = _product(task)
        signal, sigma = truth[ota]
        good = np.isfinite(sci) & (pmask == 0) & ((tmasks[ota] & (T_SAT | T_BLEED | T_CELL)) == 0)
        pull = (sci[good] - signal[good]) / sigma[good]
        stats[ota] = (float(pull.mean()), float(pull.std()), int(good.sum()))
    return stats


@pytest.mark.parametrize("layout", ["podi", "odi_5x6"])
def test_pull_fullsize(layout, full_nights, podiflow_config, tmp_path):
    if layout == "podi":
        sim, cals = full_nights["pull"], full_nights["cals"]
    else:
        sim = Sim(tmp_path / "night", _full_5x6_spec())
        assert sim.exposure.layout == "odi_5x6"
        cals = _true_calibrations(sim, tmp_path / "truecals", otas=OTAS)
    podiflow_config(raw_dir=sim.raw, mastercals_dir=sim.mastercals)
    stats = _pull_stats(sim, cals)
    print(f"full-size {layout} pull per OTA (mean, rms, n):", stats)
    for ota, (mean, rms, npix) in stats.items():
        assert npix > 0.6 * 4096 * 4096, (ota, npix)
        assert abs(mean) < 0.05 and 0.95 <= rms <= 1.05, (ota, mean, rms)


def test_cosmic_rays_fullsize(full_nights, podiflow_config, tmp_path):
    ref, sim, cals = full_nights["pull"], full_nights["cr"], full_nights["cals"]
    e, geo = sim.exposure, sim.exposure.geometry
    podiflow_config(raw_dir=ref.raw, mastercals_dir=ref.mastercals, work_dir=tmp_path / "work-ref")
    ref_tasks = {ota: _detrend(ref.obsid, ota, **_true_options(cals)) for ota in OTAS}
    _build(list(ref_tasks.values()))
    reference = {ota: _product(t)[0] for ota, t in ref_tasks.items()}
    podiflow_config(raw_dir=sim.raw, mastercals_dir=sim.mastercals, work_dir=tmp_path / "work-cr")
    tasks = {ota: _detrend(sim.obsid, ota, **_true_options(cals, crj=4)) for ota in OTAS}
    no_crj = {ota: _detrend(sim.obsid, ota, **_true_options(cals)) for ota in OTAS}
    _build(list(tasks.values()) + list(no_crj.values()))
    tmasks = _truth_masks(sim.root, sim.obsid)
    stars = render_exposure(e, sim.night, noise=False, sky_light=False, bias=False, dark=False, otas=OTAS,
                            effects=sim.night.effects.none())
    truth = _signal_and_sigma(sim, cals, otas=OTAS)
    keys = ("cr", "found", "cr5", "found5", "star", "star_flagged", "star_inner", "star_inner_flagged")
    n = dict.fromkeys(keys, 0)
    edges = _near_cell_edges(geo, 3)
    for ota, task in tasks.items():
        _, pmask, hdr = _product(task)
        assert hdr["_COSMICS"] == "successful"
        charge = _product(no_crj[ota])[0] - reference[ota]
        sigma = truth[ota][1]
        usable = ((pmask & (P["GAP"] | P["BADCELL"] | P["SATURATED"] | P["BLEED"] | P["LOWFLAT"])) == 0)
        usable &= (tmasks[ota] & (T_SAT | T_BLEED | T_CELL)) == 0
        cr = ((tmasks[ota] & T_COSMIC) > 0) & usable
        strong = cr & (charge > 5 * sigma)
        flagged = (pmask & P["COSMIC"]) > 0
        star = _frame(stars.otas[ota].cells, geo, stars.otas[ota].gains / detector.NOMINAL_GAIN)
        near_cr = ndimage.binary_dilation((tmasks[ota] & T_COSMIC) > 0, iterations=2)
        star_pix = usable & ~near_cr & np.isfinite(star) & (star > 5 * sigma)
        inner = star_pix & ~edges
        for k, v in zip(keys, (cr, cr & flagged, strong, strong & flagged, star_pix, star_pix & flagged,
                               inner, inner & flagged)):
            n[k] += int(v.sum())
    recall, recall5 = n["found"] / n["cr"], n["found5"] / n["cr5"]
    false_rate, inner_rate = n["star_flagged"] / n["star"], n["star_inner_flagged"] / n["star_inner"]
    print(f"full-size cosmic rays (night {NIGHT}, OTAs {OTAS}): recall {recall:.4f} ({n['found']}/{n['cr']}); "
          f"> 5 sigma {recall5:.4f} ({n['found5']}/{n['cr5']}); star px flagged {false_rate:.5f} "
          f"({n['star_flagged']}/{n['star']}), > 3 px from cell edges {inner_rate:.5f}")
    assert n["cr"] > 1000 and n["star"] > 2000  # 0.1 % = at most 3 star pixels flagged
    assert recall5 >= 0.90
    assert false_rate < 0.001
