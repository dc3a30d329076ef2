"""Calibration selection: own night first, nearest within the window, clear errors."""

import pytest

from podisteps.masters.calselect import MasterCandidate, NoCalibrationError, select_master


def _c(night, kind="dflat", filt="odi_r", binning=1, n=5, gain="none"):
    return MasterCandidate(night=night, kind=kind, binning=binning, filter=filt, gain_method=gain, ncombine=n,
                           path=f"/cals/{night}/{kind}_{filt}.fits")


def test_own_night_then_nearest_within_window():
    cands = [_c("20130228"), _c("20130302"), _c("20130301", filt="odi_g"), _c("20130305")]
    kw = dict(night="20130301", kinds=("tflat", "dflat"), binning=1, filtername="odi_r")
    with pytest.raises(NoCalibrationError):
        select_master(cands, **kw)  # own night has only an odi_g flat
    chosen = select_master(cands, validity_days=3, **kw)
    assert chosen.night == "20130228"  # one night away; the earlier night wins the tie with 20130302
    assert select_master(cands + [_c("20130301")], validity_days=3, **kw).night == "20130301"
    # twilight preferred over dome on the same night
    both = [_c("20130301"), _c("20130301", kind="tflat")]
    assert select_master(both, **kw).kind == "tflat"


def test_error_lists_criteria_and_reasons():
    cands = [_c("20130301", binning=2), _c("20130301", n=1), _c("20130301", gain="relative"), _c("20130320")]
    with pytest.raises(NoCalibrationError) as err:
        select_master(cands, night="20130301", kinds=("dflat",), binning=1, filtername="odi_r", validity_days=5)
    text = str(err.value)
    assert "no dflat master for night 20130301 (bin1, filter odi_r" in text
    for reason in ("binning 2", "only 1 frame(s)", "gain method relative", "19 nights away"):
        assert reason in text
