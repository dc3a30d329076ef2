"""The focal-plane acceptance (``tests/test_focalplane_task.py``) on one full-size pODI odi_i exposure.

The fringe template is made of three dithered 600-s odi_i frames (as many sky photons per area as the test
instrument's six 300-s frames, whose summed 8x8 pixels would saturate at 600 s; fewer frames leave star
wings in the median), the ghost template of three odi_i dome flats at rotator angles 0, 40 and 80 deg; the
first frame is judged. The time and memory of ``FocalPlaneCorrections`` on it are printed. About 7 min
and 3 GB on 2 cores (simulation included).
"""

from __future__ import annotations

import time
import tracemalloc

import luigi
import pytest

from podisteps.simulate import load_night, simulate_night
from workflows.base import options_param
from workflows.focalplane import FOCAL_FAMILIES, CorrectedOTA, FocalPlaneCorrections

from .test_focalplane_task import check, measure, night_spec, reduction_options

pytestmark = pytest.mark.fullsize


@pytest.mark.timeout(1200)  # about 7 min on 2 loaded cores; the suite's 600 s would be too close
def test_focalplane_acceptance_fullsize(tmp_path, podiflow_config):
    spec = night_spec("full", frames={"odi_i": 3}, exptime=600.0, flats=("odi_i",))
    root = tmp_path / "sim"
    simulate_night(spec, root)
    podiflow_config(raw_dir=root / "raw", mastercals_dir=root / "mastercals")
    exposure = next(e for e in load_night(spec).exposures if e.obstype == "OBJECT")
    opts = options_param(reduction_options("odi_i"), FOCAL_FAMILIES)
    corrections = FocalPlaneCorrections(obsid=exposure.dirname, options=opts)
    assert luigi.build(luigi.task.flatten(corrections.requires()), local_scheduler=True, workers=1,
                       log_level="WARNING")
    tracemalloc.start()
    start = time.perf_counter()
    corrections.run()
    seconds, peak = time.perf_counter() - start, tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"FocalPlaneCorrections, full-size pODI exposure: {seconds:.2f} s, peak {peak / 2 ** 20:.0f} MiB traced")
    tasks = [corrections] + [CorrectedOTA(obsid=exposure.dirname, ota=ota, options=opts) for ota in exposure.otas]
    assert luigi.build(tasks, local_scheduler=True, workers=1, log_level="WARNING")
    check(measure(root, tasks), fringe_filters=("odi_i",), ghost_filters=("odi_i",))
