"""Full-size accuracy checks of the raw-exposure simulator (pytest marker ``fullsize``).

Noise-free renders of a few real-size OTAs (pODI and ODI 5x6): star centroids against astropy's
``all_world2pix`` on the truth WCS within 0.01 px, summed counts against the zero point within 0.5 %.
"""

from __future__ import annotations

import pytest

from podisteps.simulate import load_night

from .test_simulate import check_stars

pytestmark = pytest.mark.fullsize


def _spec(start: str) -> dict:
    return {
        "night": {"start": start, "instrument": "full", "binning": 1, "seed": 5, "star_density": 5000.0},
        "field": [{"name": "F", "ra": 333.0, "dec": 25.0}],
        "sequence": [{"type": "object", "field": "F", "filter": ["odi_r", "odi_g"], "count": 1, "exptime": 300.0,
                      "pointing_error": 5.0, "rotator_offset": -2.0, "seeing": 0.8, "airmass": 1.1}],
    }


@pytest.mark.parametrize("which", [0, 1])
def test_podi_fullsize_stars(which):
    night = load_night(_spec("2014-05-01T08:00:00"))
    check_stars(night, night.exposures[which], [33, 34, 44, 43, 42, 32, 22, 23, 24, 55], tol_px=0.01,
                max_peak=55000, min_flux=2e5, n_min=8)


def test_5x6_fullsize_stars():
    night = load_night(_spec("2017-05-01T08:00:00"))
    check_stars(night, night.exposures[0], [33, 34, 43, 44, 23, 32, 11, 56], tol_px=0.01, max_peak=55000,
                min_flux=2e5, n_min=8)


def test_podi_bin2_stars():
    spec = _spec("2014-05-01T08:00:00")
    spec["night"]["binning"] = 2
    night = load_night(spec)
    check_stars(night, night.exposures[0], [33, 34, 43, 44, 22], tol_px=0.01, max_peak=55000, min_flux=2e5,
                n_min=4)
