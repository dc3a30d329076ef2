"""Sky boxes avoid sources and undefined pixels; clipped statistics."""

import numpy as np

from podisteps.detrend.background import SKY_INVALID, sample_sky_boxes, sky_statistics
from podisteps.stats import three_sigma_clip


def test_boxes_avoid_sources_in_x_and_y():
    rng = np.random.default_rng(3)
    data = rng.normal(100.0, 5.0, (400, 600)).astype(np.float32)
    data[:, :50] = np.nan
    # a source strip far from square: the x/y swap of QuickReduce would let boxes through here
    sources = np.array([[500.0, 100.0], [500.0, 300.0]])
    boxes = sample_sky_boxes(data, rng=np.random.default_rng(1), box=30, n_accept=50, n_try=500,
                             sources=sources, min_distance=60)
    assert len(boxes) == 50
    assert (boxes["X"] - 15 >= 50).all()  # no NaN pixel inside any box
    d = np.min(np.hypot(boxes["X"][:, None] - sources[:, 0], boxes["Y"][:, None] - sources[:, 1]), axis=1)
    assert (d >= 60).all() and np.allclose(d, boxes["MIN_D"], atol=1e-3)
    assert abs(np.median(boxes["INTENSITY"]) - 100.0) < 0.5


def test_sky_statistics_and_clip():
    values = np.r_[np.random.default_rng(0).normal(50.0, 1.0, 200), 500.0, 900.0]
    stats = sky_statistics(values)
    assert stats["SKYSMPLS"] == 202 and abs(stats["SKYBGCLP"] - 50.0) < 0.3
    assert stats["SKYBGMIN"] < stats["SKY_LO5S"] < stats["SKY_LO5P"] < stats["SKYLEVEL"]
    assert three_sigma_clip(values).max() < 60
    assert three_sigma_clip(values, lo=49.0, hi=51.0).min() > 49.0
    assert sky_statistics(np.array([np.nan]))["SKYLEVEL"] == SKY_INVALID
