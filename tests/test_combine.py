"""Vectorised sigma-clipped mean and median against per-pixel references (docs/masters.md, 'Combining frames')."""

import numpy as np
import pytest

from podisteps.masters.combine import median_combine, sigma_clip_mean


def _gsl_quantile(v, f):
    """GSL quantile_from_sorted_data."""
    index = f * (len(v) - 1)
    lhs = int(index)
    delta = index - lhs
    if lhs == len(v) - 1:
        return float(v[lhs])
    return (1 - delta) * float(v[lhs]) + delta * float(v[lhs + 1])


def _reference_pixel(values, nsigma=3.0, max_iter=3, min_keep=3):
    """Slow per-pixel sigmaclipmean as docs/masters.md, 'Combining frames' words it; returns (mean, n_used)."""
    v = sorted(float(x) for x in values if np.isfinite(x))
    if not v:
        return np.nan, 0
    for _ in range(max_iter):
        k = len(v)
        median = (v[(k - 1) // 2] + v[k // 2]) / 2.0
        sigma = 0.5 * (_gsl_quantile(v, 0.84) - _gsl_quantile(v, 0.16))
        kept = [x for x in v if median - nsigma * sigma <= x <= median + nsigma * sigma]
        if len(kept) == k or len(kept) < min_keep:
            break
        v = kept
    total = 0.0
    for x in v:
        total += x
    return total / len(v), len(v)


def _reference(stack, **kw):
    n, ny, nx = stack.shape
    mean = np.empty((ny, nx), np.float32)
    used = np.empty((ny, nx), int)
    for y in range(ny):
        for x in range(nx):
            mean[y, x], used[y, x] = _reference_pixel(stack[:, y, x], **kw)
    return mean, used


@pytest.mark.parametrize("seed", range(4))
def test_matches_reference_exactly(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 12))
    stack = rng.normal(100.0, 5.0, (n, 23, 17)).astype(np.float32)
    stack[rng.random(stack.shape) < 0.05] += rng.choice([-60.0, 80.0, 400.0])   # outliers
    stack[rng.random(stack.shape) < 0.15] = np.nan                                # missing data
    stack[:, 0, 0] = np.nan                                                       # all NaN
    stack[:, 1, 1] = 7.0                                                          # identical values
    stack[:, 2, :] = np.round(stack[:, 2, :] / 10.0) * 10.0                       # ties
    kw = {"nsigma": float(rng.choice([2.0, 3.0])), "max_iter": int(rng.integers(0, 5))}
    mean, used = sigma_clip_mean(stack, block_pixels=50, **kw)   # several row blocks of 2 rows
    ref_mean, ref_used = _reference(stack, **kw)
    np.testing.assert_array_equal(used, ref_used)
    np.testing.assert_array_equal(mean, ref_mean)
    assert mean.dtype == np.float32 and used.dtype == np.int16


def test_cosmic_rays_are_rejected():
    rng = np.random.default_rng(11)
    truth = rng.normal(1000.0, 20.0, (64, 64)).astype(np.float32)    # fixed pattern, e.g. bias structure
    stack = truth + rng.normal(0.0, 5.0, (10, 64, 64)).astype(np.float32)
    hits = rng.random(stack.shape) < 0.01
    stack[hits] += rng.uniform(500.0, 20000.0, hits.sum()).astype(np.float32)
    mean, used = sigma_clip_mean(stack)
    residual = mean - truth
    assert abs(residual.mean()) < 0.1
    assert residual.std() < 1.3 * 5.0 / np.sqrt(10)
    assert np.abs(residual).max() < 10.0                      # no cosmic ray survives anywhere
    hit_pixels = hits.any(axis=0)
    assert (used[hit_pixels] <= 10 - hits.sum(axis=0)[hit_pixels]).all()


def test_all_nan_and_few_values():
    stack = np.full((5, 1, 4), np.nan, np.float32)
    stack[:3, 0, 1] = [1.0, 2.0, 100.0]           # 3 values: clipping would leave < 3, so no clipping
    stack[:2, 0, 2] = [1.0, 4.0]                  # 2 values: their mean
    stack[:, 0, 3] = [1.0, 1.0, 1.0, 1.0, np.inf]  # inf counts as missing
    mean, used = sigma_clip_mean(stack)
    assert np.isnan(mean[0, 0]) and used[0, 0] == 0
    assert mean[0, 1] == pytest.approx(103.0 / 3) and used[0, 1] == 3
    assert mean[0, 2] == 2.5 and used[0, 2] == 2
    assert mean[0, 3] == 1.0 and used[0, 3] == 4


def test_outlier_clipped_down_to_min_keep():
    stack = np.array([10.0, 10.1, 9.9, 10.0, 1000.0], np.float32).reshape(5, 1, 1)
    mean, used = sigma_clip_mean(stack)
    assert used[0, 0] == 4 and mean[0, 0] == pytest.approx(10.0)
    mean, used = sigma_clip_mean(stack, min_keep=5)   # the clip would leave 4 < 5: not applied
    assert used[0, 0] == 5 and mean[0, 0] == pytest.approx(208.0)


def test_list_of_frames_and_input_untouched():
    rng = np.random.default_rng(3)
    frames = [rng.normal(0, 1, (9, 13)).astype(np.float32) for _ in range(6)]
    frames[2][4, 4] = np.nan
    copies = [f.copy() for f in frames]
    mean_list, used_list = sigma_clip_mean(frames, block_pixels=20)
    mean_arr, used_arr = sigma_clip_mean(np.stack(frames))
    np.testing.assert_array_equal(mean_list, mean_arr)
    np.testing.assert_array_equal(used_list, used_arr)
    for f, c in zip(frames, copies):
        np.testing.assert_array_equal(f, c)


def test_float64_and_integer_input():
    stack = np.arange(24, dtype=np.int16).reshape(4, 2, 3)
    mean, used = sigma_clip_mean(stack)
    np.testing.assert_array_equal(mean, stack.mean(axis=0))
    mean64, _ = sigma_clip_mean(stack.astype(np.float64))
    np.testing.assert_array_equal(mean64, mean)


def test_shape_errors():
    with pytest.raises(ValueError, match="empty"):
        sigma_clip_mean([])
    with pytest.raises(ValueError, match="same shape"):
        sigma_clip_mean([np.zeros((2, 2)), np.zeros((2, 3))])


def test_median_combine():
    rng = np.random.default_rng(5)
    stack = rng.normal(0, 1, (7, 11, 5)).astype(np.float32)
    stack[rng.random(stack.shape) < 0.2] = np.nan
    stack[:, 3, 3] = np.nan
    got = median_combine(stack, block_pixels=10)
    expected = np.full((11, 5), np.nan, np.float32)
    for y, x in np.ndindex(11, 5):
        v = stack[:, y, x][np.isfinite(stack[:, y, x])]
        if v.size:
            expected[y, x] = np.median(v.astype(np.float64))
    np.testing.assert_array_equal(got, expected)
