"""Wall time and peak memory of a command and every process it starts, read from ``/proc``.

Memory is sampled every ``interval`` seconds over the whole process tree: the sum of the proportional set
size (PSS, ``/proc/<pid>/smaps_rollup``: shared pages split between the processes sharing them, so forked
Luigi workers are not counted twice) and, for comparison, the sum of the resident set sizes (RSS). Peaks
shorter than the interval can be missed; the default 0.1 s is well below any task's duration. At the peak
sample each process's PSS, RSS and parent are kept (``Measurement.peak_procs``), so the peak can be broken
down by process (``bench.runner`` names the Luigi task each forked process ran).
"""

from __future__ import annotations

import os
import resource
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Measurement", "run_measured", "tree_memory", "tree_processes"]


@dataclass
class Measurement:
    """What :func:`run_measured` measured.

    Attributes
    ----------
    wall_s : float
        Wall time from start to exit, seconds.
    peak_pss_gb, peak_rss_gb : float
        Peak over the samples of the process tree's summed PSS / RSS, GB (1e9 bytes).
    max_procs : int
        Most processes seen in the tree at once.
    cpu_s : float
        User + system CPU time of the command and every descendant it waited for, seconds (robust against
        a machine shared with other jobs, where wall time is not).
    returncode : int
        The command's exit status.
    start_time, peak_time : float
        When the command started and when the peak PSS sample was taken, seconds since the epoch.
    peak_procs : list of dict
        The processes of the peak sample: ``pid``, ``ppid``, ``pss_gb``, ``rss_gb``; the command's own
        process first, then by decreasing PSS.
    """

    wall_s: float
    peak_pss_gb: float
    peak_rss_gb: float
    max_procs: int
    returncode: int
    cpu_s: float = 0.0
    start_time: float = 0.0
    peak_time: float = 0.0
    peak_procs: list = field(default_factory=list)


def _parents() -> dict[int, int]:
    """Parent pid of every process on the machine."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def _tree(root: int) -> dict[int, int]:
    """``{pid: ppid}`` of ``root`` and all its descendants."""
    parents = _parents()
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = {}, [root]
    while todo:
        pid = todo.pop()
        out[pid] = parents.get(pid, 0)
        todo.extend(children.get(pid, ()))
    return out


def _memory_kb(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of one process in kB; (0, 0) if it is gone."""
    pss = rss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss = int(line.split()[1])
    except OSError:
        pass
    return pss, rss


def tree_processes(root: int) -> list[dict]:
    """``pid``, ``ppid``, ``pss_gb`` and ``rss_gb`` (GB) of ``root`` and each of its descendants."""
    procs = []
    for pid, ppid in _tree(root).items():
        pss, rss = _memory_kb(pid)
        procs.append({"pid": pid, "ppid": ppid, "pss_gb": pss * 1024 / 1e9, "rss_gb": rss * 1024 / 1e9})
    return procs


def tree_memory(root: int) -> tuple[float, float, int]:
    """Summed (PSS GB, RSS GB, number of processes) of ``root`` and all its descendants."""
    procs = tree_processes(root)
    return sum(p["pss_gb"] for p in procs), sum(p["rss_gb"] for p in procs), len(procs)


def _keep_peak(peak: dict, procs: list[dict], root: int) -> None:
    """Fold one sample of the tree into ``peak`` (maxima; the processes of the highest PSS sample)."""
    pss = sum(p["pss_gb"] for p in procs)
    peak["rss"] = max(peak["rss"], sum(p["rss_gb"] for p in procs))
    peak["n"] = max(peak["n"], len(procs))
    if pss > peak["pss"]:
        peak["pss"], peak["time"] = pss, time.time()
        peak["procs"] = sorted(procs, key=lambda p: (p["pid"] != root, -p["pss_gb"]))


def run_measured(cmd: list[str], *, env: dict | None = None, cwd: str | os.PathLike | None = None,
                 log: str | os.PathLike | None = None, interval: float = 0.1) -> Measurement:
    """Run ``cmd`` to completion, sampling the memory of its process tree.

    Parameters
    ----------
    cmd : list of str
        The command.
    env : dict, optional
        Its environment (default: this process's).
    cwd : path, optional
        Its working folder.
    log : path, optional
        File receiving its stdout and stderr (default: discarded).
    interval : float
        Sampling interval, seconds.

    Returns
    -------
    Measurement
    """
    peak = {"pss": 0.0, "rss": 0.0, "n": 0, "time": 0.0, "procs": []}
    out = open(log, "ab") if log else subprocess.DEVNULL
    try:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0, start = time.perf_counter(), time.time()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        done = threading.Event()

        def sample():
            while not done.is_set():
                _keep_peak(peak, tree_processes(proc.pid), proc.pid)
                done.wait(interval)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        code = proc.wait()
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        done.set()
        thread.join()
    finally:
        if log:
            out.close()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Measurement(wall, peak["pss"], peak["rss"], peak["n"], code, cpu, start, peak["time"], peak["procs"])
