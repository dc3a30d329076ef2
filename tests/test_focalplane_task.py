"""Acceptance of the focal-plane corrections (issue 9) through Luigi, against the simulator's truth.

One simulated test-instrument night with fringes and the pupil ghost: dome flats in odi_r and odi_i at three
rotator angles (the ghost templates), dithered odi_i and odi_z science frames (the fringe templates, and the
exposures corrected) and one odi_r science frame. The templates are built by ``FringeTemplate`` and
``PupilGhostTemplate`` from these frames; nothing of the truth reaches the pipeline. Over every pixel of
the first exposure of each filter, the subtracted fringe (``FRNG_SCL`` x template) and ghost (the rest of
detrended - corrected) are compared with the injected ones; the scales and ``SKYLEVEL`` with the true sky
level. Then ``podi_collectcells -fringe -pupilghost`` on the odi_i exposure. About 2.5 min on 2 cores. The
full-size pODI version is in ``tests/test_focalplane_fullsize.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import luigi
import numpy as np
import pytest
from astropy.io import fits

from podisteps.simulate import effects, load_night, simulate_night
from workflows import cli
from workflows.base import options_param
from workflows.focalplane import FOCAL_FAMILIES, CorrectedOTA, FocalPlaneCorrections, fringe_source
from workflows.options import ReductionOptions
from workflows.paths import night_of

pytestmark = pytest.mark.fullsize

SEED = 12
#: Bounds of the issue: residual rms over the injected fringe rms, over the ghost ring's peak amplitude;
#: scale errors; SKYLEVEL error.
FRINGE_BOUND, GHOST_BOUND, SCALE_BOUND, SKY_BOUND = 0.10, 0.10, 0.05, 0.003


def night_spec(instrument: str, *, frames: dict, exptime: float = 300.0, flats=("odi_r", "odi_i")) -> dict:
    """Flats in ``flats`` at three rotator angles (the ghost templates) and dithered science frames,
    ``frames = {filter: count}`` of ``exptime`` s (the fringe templates). Crosstalk is simulated because the
    reduction corrects it (its correction of crosstalk-free frames leaves cell steps of 0.03 % of the sky in
    the fringe templates, a quarter of the odi_i fringe amplitude)."""
    flats = [{"type": "dflat", "filter": list(flats), "count": 1, "rotator": rot} for rot in (0.0, 40.0, 80.0)]
    science = [{"type": "object", "field": "F1", "filter": filt, "count": count, "exptime": exptime,
                "dither": "9point", "dither_step": 1.0, "rotator": 20.0, "seeing": 1.0}
               for filt, count in frames.items()]
    return {
        "night": {"name": "fp-accept", "start": "2013-10-05T01:30:00", "instrument": instrument, "binning": 1,
                  "seed": SEED, "star_density": 3000.0},
        "field": [{"name": "F1", "ra": "22:15:30.0", "dec": "+15:30:00"}],
        "effects": {"all": False, "fringes": True, "pupil_ghost": True, "crosstalk": True},
        "sequence": flats + science,
    }


def reduction_options(filtername: str) -> ReductionOptions:
    """``-gain=header -fringe -pupilghost`` (bare flags: templates from the night); no ghost in odi_z (nor z flats)."""
    ghost = None if filtername == "odi_z" else "auto"
    return ReductionOptions().replace(gain="header", fringe="auto", pupilghost=ghost)


def run_night(root: Path, spec: dict, configure) -> tuple[dict, list]:
    """Simulate ``spec`` into ``root``, correct the first science exposure of each filter with Luigi's local
    scheduler (the templates are made of all of them), and return :func:`measure` of it and the exposures."""
    simulate_night(spec, root)
    configure(raw_dir=root / "raw", mastercals_dir=root / "mastercals")
    judged = {}
    for e in load_night(spec).exposures:
        if e.obstype == "OBJECT":
            judged.setdefault(e.filter, e)
    tasks = []
    for e in judged.values():
        opts = options_param(reduction_options(e.filter), FOCAL_FAMILIES)
        tasks.append(FocalPlaneCorrections(obsid=e.dirname, options=opts))
        tasks += [CorrectedOTA(obsid=e.dirname, ota=ota, options=opts) for ota in e.otas]
    assert luigi.build(tasks, local_scheduler=True, workers=1, log_level="WARNING")
    return measure(root, tasks), list(judged.values())


def measure(root: Path, tasks: list) -> dict:
    """Per filter: fringe and ghost residual ratios (pooled over pixels and exposures) and, per exposure,
    FRNG_SCL, PUPLGFAC and SKYLEVEL over the true sky level (``level`` of the sky model, at the optical axis).

    The injected fringe and ghost are relative to the sky of each OTA (``mean_per_ota``: the sky gradient
    makes it differ from the level by up to 1 %), as the simulator multiplies them."""
    sums: dict = {}
    scales: dict = {}
    for fp in (t for t in tasks if isinstance(t, FocalPlaneCorrections)):
        obsid = fp.obsid
        truth = json.loads((root / "truth" / night_of(obsid) / obsid / "exposure.json").read_text())
        filt, level = truth["filter"], truth["sky"]["level"] * truth["nominal_gain"]
        head = fits.getheader(fp.output().path)
        scales[obsid] = {"filter": filt, "FRNG_SCL": head["FRNG_SCL"] / level, "PUPLGFAC": head["PUPLGFAC"] / level,
                         "SKYLEVEL": head["SKYLEVEL"] / level}
        fsource = fringe_source(fp.record, fp.reduction_options)
        fringe_file = fits.open(fsource.task.output().path) if fsource is not None else None
        acc = sums.setdefault(filt, np.zeros(5))
        for task in (t for t in tasks if isinstance(t, CorrectedOTA) and t.obsid == obsid):
            with fits.open(task.input()["detrend"].path) as det, fits.open(task.output().path) as cor:
                removed = det[1].data.astype(np.float64) - cor[1].data
            scale = 4096 // removed.shape[1]
            g = (np.arange(removed.shape[1]) + 0.5) * scale - 0.5
            ok = np.isfinite(removed)
            fringe_model = np.zeros_like(removed)
            name = f"OTA{task.ota:02d}.SCI"
            if fringe_file is not None and head["FRNG_SCL"] > 0 and name in fringe_file:
                fringe_model = np.nan_to_num(fringe_file[name].data.astype(np.float64)) * head["FRNG_SCL"]
            info = truth["effects_per_ota"][f"{task.ota:02d}"]
            sky = truth["sky"]["mean_per_ota"][f"{task.ota:02d}"] * truth["nominal_gain"]  # what was injected on
            if "fringe" in info:
                true_fringe = sky * info["fringe"]["amplitude_rel"] * effects.fringe_pattern(
                    str(truth["detector_serial"][f"{task.ota:02d}"])).evaluate(g, g)
                acc[0] += np.sum((fringe_model - true_fringe)[ok] ** 2)
                acc[1] += np.sum(true_fringe[ok] ** 2)
            ghost = info.get("pupil_ghost")
            if ghost and ghost["touches_ota"]:
                gx, gy = ghost["centre_fullsize_px"]
                true_ghost = sky * effects.pupil_ghost_profile(filt, np.hypot((g - gx)[None, :], (g - gy)[:, None]))
                acc[2] += np.sum((removed - fringe_model - true_ghost)[ok] ** 2)
                acc[3] += ok.sum()
                acc[4] = level * effects.PUPIL_GHOST[filt][3]
        if fringe_file is not None:
            fringe_file.close()
    ratios = {f: {"fringe": float(np.sqrt(a[0] / a[1])) if a[1] else None,
                  "ghost": float(np.sqrt(a[2] / a[3]) / a[4]) if a[3] else None} for f, a in sums.items()}
    return {"ratios": ratios, "scales": scales}


def check(result: dict, *, fringe_filters, ghost_filters) -> None:
    """Assert the issue's bounds on :func:`run_night`'s result."""
    print("focal-plane acceptance:", json.dumps(result, indent=1))
    for filt in fringe_filters:
        assert result["ratios"][filt]["fringe"] < FRINGE_BOUND, (filt, result["ratios"][filt])
    for filt in ghost_filters:
        assert result["ratios"][filt]["ghost"] < GHOST_BOUND, (filt, result["ratios"][filt])
    for obsid, s in result["scales"].items():
        if s["filter"] in fringe_filters:
            assert abs(s["FRNG_SCL"] - 1) < SCALE_BOUND, (obsid, s)
        if s["filter"] in ghost_filters:
            assert abs(s["PUPLGFAC"] - 1) < SCALE_BOUND, (obsid, s)
        assert abs(s["SKYLEVEL"] - 1) < SKY_BOUND, (obsid, s)


def test_focalplane_acceptance_test_instrument(tmp_path, podiflow_config):
    spec = night_spec("test", frames={"odi_i": 6, "odi_z": 3, "odi_r": 1})
    result, judged = run_night(tmp_path / "sim", spec, podiflow_config)
    check(result, fringe_filters=("odi_i", "odi_z"), ghost_filters=("odi_r", "odi_i"))
    # podi_collectcells -fringe -pupilghost: the same corrections in the final MEF (checkpoints reused)
    exposure = next(e for e in judged if e.filter == "odi_i")
    raw = tmp_path / "sim" / "raw" / night_of(exposure.dirname) / exposure.dirname
    with cli.collectcells(str(raw), flags=["-gain=header", "-fringe", "-pupilghost", "-noqaplots"],
                          work_dir=str(tmp_path / "work")) as mef:
        for ota in exposure.otas:
            image = mef[f"OTA{ota:02d}.SCI"]
            assert image.header["FRNG_SCL"] > 0 and image.header["PUPLGFAC"] > 0
            corrected = CorrectedOTA(obsid=exposure.dirname, ota=ota,
                                     options=options_param(reduction_options("odi_i"), FOCAL_FAMILIES))
            with fits.open(corrected.input()["detrend"].path) as det:
                removed = det[1].data - image.data
            assert np.nanmedian(np.abs(removed)) > 0  # the MEF holds the corrected pixels
