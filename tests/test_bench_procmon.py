"""bench.procmon and bench.runner: the memory peak of a process tree, broken down by process and task."""

import sys

from bench.procmon import run_measured
from bench.runner import peak_breakdown

#: A parent that forks a child holding 200 MB of touched pages while the parent holds little.
_FORKING = """
import os, time
import numpy as np
pid = os.fork()
if pid == 0:
    block = np.ones(25_000_000)  # 200 MB, every page written
    time.sleep(1.5)
    os._exit(0)
os.waitpid(pid, 0)
"""


def test_peak_names_the_process_holding_it(tmp_path):
    m = run_measured([sys.executable, "-c", _FORKING], cwd=tmp_path, interval=0.05)
    assert m.returncode == 0
    root, child = m.peak_procs[0], m.peak_procs[1]
    assert child["ppid"] == root["pid"]
    assert 0.2 <= child["pss_gb"] < 0.26  # the array and the interpreter's own pages
    assert root["pss_gb"] < 0.1
    assert abs(m.peak_pss_gb - sum(p["pss_gb"] for p in m.peak_procs)) < 1e-9
    assert m.start_time < m.peak_time < m.start_time + m.wall_s

    tasks = [{"pid": child["pid"], "family": "Big", "task": "Big(n=1)", "start": m.start_time, "end": None},
             {"pid": child["pid"], "family": "Old", "task": "Old(n=0)", "start": 0.0, "end": 1.0}]
    result = {"start_time": m.start_time, "peak_time": m.peak_time, "peak_procs": m.peak_procs,
              "pid": root["pid"], "tasks": tasks}
    got = peak_breakdown(result)
    assert got["at_s"] == m.peak_time - m.start_time
    assert [p["task"] for p in got["processes"]] == ["build: scheduler and worker", "Big(n=1)"]
    assert got["processes"][1]["running_s"] == m.peak_time - m.start_time
    assert got["processes"][0]["running_s"] is None
