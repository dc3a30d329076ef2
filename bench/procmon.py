"""Wall time and peak memory of a command and every process it starts, read from ``/proc``.

Memory is sampled every ``interval`` seconds over the whole process tree: the sum of the proportional set
size (PSS, ``/proc/<pid>/smaps_rollup``: shared pages split between the processes sharing them, so forked
Luigi workers are not counted twice) and, for comparison, the sum of the resident set sizes (RSS). Peaks
shorter than the interval can be missed; the default 0.1 s is well below any task's duration.
"""

from __future__ import annotations

import os
import resource
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Measurement", "run_measured", "tree_memory"]


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
    """

    wall_s: float
    peak_pss_gb: float
    peak_rss_gb: float
    max_procs: int
    returncode: int
    cpu_s: float = 0.0


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def _tree(root: int) -> list[int]:
    children, out, todo = _children_map(), [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
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


def tree_memory(root: int) -> tuple[float, float, int]:
    """Summed (PSS GB, RSS GB, number of processes) of ``root`` and all its descendants."""
    pids = _tree(root)
    pss = rss = 0
    for pid in pids:
        p, r = _memory_kb(pid)
        pss, rss = pss + p, rss + r
    return pss * 1024 / 1e9, rss * 1024 / 1e9, len(pids)


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
    peak = [0.0, 0.0, 0]
    out = open(log, "ab") if log else subprocess.DEVNULL
    try:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        done = threading.Event()

        def sample():
            while not done.is_set():
                pss, rss, n = tree_memory(proc.pid)
                peak[0], peak[1], peak[2] = max(peak[0], pss), max(peak[1], rss), max(peak[2], n)
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
    return Measurement(wall, peak[0], peak[1], peak[2], code, cpu)
