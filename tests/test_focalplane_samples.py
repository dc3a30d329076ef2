"""The focal-plane samples without the image: with neither a fringe template nor the ghost bins,
``FocalPlaneSamples`` does not read the detrended image (64 MB full size) and hands ``ota_samples`` None."""

import numpy as np
from astropy.io import fits
from astropy.table import Table

from podisteps.focalplane import focalfit

SHAPE, SCALE = (512, 512), 8


def _ota(seed: int = 3) -> tuple[np.ndarray, fits.Header, Table]:
    """A test-instrument-sized OTA of flat sky plus noise, its header and sky boxes."""
    data = (1000.0 + np.random.default_rng(seed).normal(0.0, 5.0, SHAPE)).astype(np.float32)
    header = fits.Header({"CRPIX1": 600.0, "CRPIX2": -50.0, "ROTSTART": 12.5, "CELLMODE": "S" * 63 + "V",
                          "PGCNTR_X": 100.0})
    x, y = np.meshgrid(np.arange(20, 512, 40), np.arange(20, 512, 40))
    boxes = Table({"X": x.ravel(), "Y": y.ravel(), "INTENSITY": data[y.ravel(), x.ravel()]})
    return data, header, boxes


def test_samples_without_image_are_those_with_it():
    data, header, boxes = _ota()
    with_image = focalfit.ota_samples(data, header, boxes.copy(), ota=33, scale=SCALE)
    without = focalfit.ota_samples(None, header, boxes.copy(), ota=33, scale=SCALE)
    assert [h.name for h in without] == [h.name for h in with_image] == ["PRIMARY", "SKYBOXES"]
    assert list(without[0].header.items()) == list(with_image[0].header.items())
    ph = without[0].header
    assert (ph["AXIS_X"], ph["AXIS_Y"], ph["ROTSTART"], ph["PGCNTR_X"]) == (599.0, -51.0, 12.5, 100.0)
    assert ph["GUIDEOTA"] and "PGCNTR_Y" not in ph
    assert np.array_equal(Table(without["SKYBOXES"].data)["INTENSITY"], boxes["INTENSITY"])
