"""``podisteps.detrend.detrend_ota`` without Luigi, against the simulator's truth (test instrument).

The raw OTAs of one simulated exposure are detrended in memory with the TRUE calibrations of the simulated
detector (``tests/truecals.py``), opened here and handed in; (detrended - true signal) / true noise must be
N(0, 1).
"""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from astropy.io import fits

from podisteps.detrend import (LAST_STAGE, SIGNAL_CHAIN, STEPS, Calibration, DetrendInputs, DetrendSettings,
                               FrameMismatchError, detrend_ota, prerequisites, steps_after)
from podisteps.detrend.reductionlog import REDUCTION_LOG_KEYS, ReductionLog
from podisteps.io import rawio
from podisteps.masters import history
from tests.truecals import Sim, signal_and_sigma, spec, true_calibrations

NIGHT = "20131004"
#: OTAs detrended (the test instrument's pODI layout; 43 holds the saturating star).
OTAS = (33, 43)
#: Truth mask bits (podisteps.simulate.effects.MASK_BITS): saturated, bleed, broken or video cell.
T_SAT, T_BLEED, T_CELL = 2, 4, 32


@pytest.fixture(scope="module")
def exposure(tmp_path_factory):
    """One simulated odi_r exposure and the true calibrations of its OTAs."""
    base = tmp_path_factory.mktemp("composite")
    sim = Sim(base / "sim", spec())
    return sim, true_calibrations(sim, base / "truecals", otas=OTAS)


def _raw_path(sim: Sim, ota: int):
    return sim.raw / NIGHT / sim.obsid / rawio.ota_filename(sim.obsid, ota, fz=False)


def _detrend(sim: Sim, cals: dict, ota: int, raw=None):
    """detrend_ota of one OTA with the simulated crosstalk table and the true bias, dark, flat and
    non-linearity (no persistency, no WCS)."""
    files = {**cals, "crosstalk": history.file_from_history(sim.mastercals / "crosstalk" / "podi" / "crosstalk.history",
                                                            sim.exposure.mjd)}
    with contextlib.ExitStack() as stack:
        opened = {step: Calibration(stack.enter_context(fits.open(files[step])), files[step])
                  for step in ("crosstalk", "bias", "dark", "flat", "nonlinearity")}
        return detrend_ota(raw or rawio.read_raw_ota(_raw_path(sim, ota)), ota=ota,
                           settings=DetrendSettings(persistency=None, wcs=None), inputs=DetrendInputs(**opened),
                           sky_seed=ota)


def test_pulls_against_the_truth(exposure):
    sim, cals = exposure
    truth = signal_and_sigma(sim, cals, otas=OTAS)
    with fits.open(sim.root / "truth" / NIGHT / sim.obsid / "masks.fits") as hdul:
        tmasks = {ota: np.array(hdul[f"OTA{ota:02d}.MASK"].data) for ota in OTAS}
    pulls = []
    for ota in OTAS:
        result = _detrend(sim, cals, ota)
        signal, sigma = truth[ota]
        good = np.isfinite(result.sci) & (result.mask == 0) & ((tmasks[ota] & (T_SAT | T_BLEED | T_CELL)) == 0)
        good &= np.isfinite(signal)
        assert good.sum() > 0.6 * result.sci.size, (ota, int(good.sum()))  # most of the OTA is looked at
        pulls.append((result.sci[good] - signal[good]) / sigma[good])
        assert {result.header[k] for k in ("_XTALK", "_BIAS", "_DARK", "_FLAT", "_NONLIN")} == {"successful"}
        assert result.header["_COSMICS"] == "not selected"
        assert len(result.skyboxes) > 10
    pull = np.concatenate(pulls)
    print(f"detrend_ota pulls over OTAs {OTAS}: mean {pull.mean():.4f}, rms {pull.std():.4f}, n {pull.size}")
    assert abs(pull.mean()) < 0.01
    assert abs(pull.std() - 1) < 0.02


def test_log_and_files(exposure):
    sim, cals = exposure
    result = _detrend(sim, cals, 33)
    files = result.log.files()
    # in read order: the roles of the ASSOCIATIONS table
    assert list(files) == ["raw", "crosstalk", "nonlinearity", "bias", "dark", "flat"]
    assert files["bias"] == cals["bias"]
    lines = "".join(str(h) for h in result.header["HISTORY"])  # long paths continue on the next HISTORY card
    assert lines == "".join(f"CC-{s.upper()}: {cals[s]}" for s in ("bias", "dark", "flat"))
    assert list(result.header).index("_OVERSCN") > list(result.header).index("SKY_STD")  # the log closes it


def test_fppos_must_match_the_ota(exposure):
    sim, cals = exposure
    raw = rawio.read_raw_ota(_raw_path(sim, 33))
    with pytest.raises(FrameMismatchError, match=r"\.33\.fits: FPPOS = 'xy33' but the file name says OTA 43"):
        _detrend(sim, cals, 43, raw=raw)


def test_last_stage_per_frame_kind():
    assert steps_after("bias") == SIGNAL_CHAIN
    assert steps_after("dark")[0] == "dark"
    assert steps_after("dflat")[0] == steps_after("tflat")[0] == "flat"
    assert steps_after("object") == ()
    assert [prerequisites(k) for k in ("bias", "dark", "dflat")] == [(), ("bias",), ("bias", "dark")]
    assert set(LAST_STAGE) == {"bias", "dark", "dflat", "tflat", "object"}
    assert [s for s in STEPS if s in SIGNAL_CHAIN] == list(SIGNAL_CHAIN)  # the chain follows the step order


def test_reduction_log_cards():
    header = fits.Header()
    log = ReductionLog(header, missing=("dark", "bias"))
    log.applied("bias", "/cals/bias_bin1.fits", history=True)
    log.read("raw", "/raw/a.33.fits")
    log.write_cards()
    assert header["_BIAS"] == "successful" and header["_DARK"] == "missing data" and header["_FLAT"] == "not selected"
    assert [k for k in header if k.startswith("_")] == list(REDUCTION_LOG_KEYS.values())
    assert str(header["HISTORY"][0]) == "CC-BIAS: /cals/bias_bin1.fits"
    assert list(log.files()) == ["raw", "bias"]
    with pytest.raises(ValueError, match="unknown file role 'rwa'"):
        log.read("rwa", "x")
