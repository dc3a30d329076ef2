"""podisteps.stats.median: np.median's number bit for bit, the input untouched."""

import numpy as np
import pytest

from podisteps.stats import median


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16, np.uint16, np.int64])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 11, 1000, 24700])
def test_median_equals_numpy(dtype, n):
    rng = np.random.default_rng(n)
    for values in (rng.normal(1000.0, 30.0, n), rng.normal(0.0, 3e6, n), np.round(rng.normal(100.0, 50.0, n), -1)):
        a = values.astype(dtype)  # the last set has many ties
        kept = a.copy()
        ours, theirs = median(a), np.median(a)
        assert type(ours) is type(theirs) and ours.tobytes() == theirs.tobytes()
        assert np.array_equal(a, kept)


def test_median_of_a_view_and_with_nan():
    block = np.random.default_rng(1).normal(size=(40, 60)).astype(np.float32)[:, 7:31]  # not contiguous
    assert median(block).tobytes() == np.median(block).tobytes()
    for n in (6, 7):
        a = np.arange(n, dtype=np.float32)
        a[1] = np.nan  # below the middle: still NaN, as numpy gives
        assert np.isnan(median(a)) and np.isnan(np.median(a))
        a[:] = np.nan
        assert np.isnan(median(a))
