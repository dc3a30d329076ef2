"""Measured runs for ``make bench``: the floor script and podiflow Luigi builds as subprocesses.

Every run is a fresh process (imports included in its wall time, as a user's command has them) whose whole
process tree is sampled for memory (``bench.procmon``). Luigi builds go through ``bench.luigi_run``, which
also reports the scheduling phase and per-family task times.
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
from dataclasses import asdict
from pathlib import Path

from .datasets import python_env
from .procmon import run_measured

__all__ = ["Runner", "summarise", "peak_breakdown"]


class Runner:
    """Runs and logs the bench's subprocesses inside one run folder.

    Parameters
    ----------
    run_dir : Path
        Folder for logs, the drivers' JSON files and every product (work/out folders).
    log : callable
        Progress messages.
    """

    def __init__(self, run_dir: Path, log=print):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log = log
        self._count = 0

    def _next(self, tag: str) -> Path:
        self._count += 1
        return self.run_dir / "logs" / f"{self._count:03d}-{tag}"

    def run(self, tag: str, cmd: list[str], config: Path | None = None) -> dict:
        """Run ``cmd`` measured; return wall time, peak memory and exit code (raises if it failed)."""
        stem = self._next(tag)
        stem.parent.mkdir(parents=True, exist_ok=True)
        m = run_measured(cmd, env=python_env(config), cwd=self.run_dir, log=stem.with_suffix(".log"))
        if m.returncode != 0:
            raise RuntimeError(f"bench: {tag} failed (exit {m.returncode}); see {stem.with_suffix('.log')}")
        self.log(f"  {tag}: {m.wall_s:.1f} s wall, {m.cpu_s:.1f} s CPU, peak {m.peak_pss_gb:.2f} GB PSS ({m.max_procs} processes)")
        return asdict(m)

    def luigi(self, tag: str, args: list[str], config: Path) -> dict:
        """A ``bench.luigi_run`` build (``args`` after the module name); its JSON report merged in."""
        report = self._next(tag).with_suffix(".json")
        self._count -= 1  # the same number for the JSON and the log
        result = self.run(tag, [sys.executable, "-m", "bench.luigi_run", *args, "--json", str(report)], config)
        result.update(json.loads(report.read_text()))
        result["peak_breakdown"] = peak_breakdown(result)
        for proc in result["peak_breakdown"]["processes"]:
            self.log(f"    at the peak: {proc['pss_gb']:.3f} GB PSS  pid {proc['pid']}  {proc['task']}")
        return result

    def floor(self, tag: str, exposure: Path, cals: Path, procs: int) -> dict:
        """One run of ``bench.floor`` on ``exposure``; its output folder is removed afterwards."""
        out = self.run_dir / "floor-out"
        result = self.run(tag, [sys.executable, "-m", "bench.floor", str(exposure), str(cals), str(out),
                                "--procs", str(procs)])
        shutil.rmtree(out, ignore_errors=True)
        return result


def _task_at(runs: list[dict], pid: int, when: float) -> dict | None:
    """The task run (of ``bench.luigi_run``'s ``tasks``) process ``pid`` was running at ``when``."""
    for run in runs:
        if run["pid"] == pid and run["start"] <= when and (run["end"] is None or when <= run["end"]):
            return run
    return None


def peak_breakdown(result: dict) -> dict:
    """The memory peak of a Luigi build by process, each named by the task it ran.

    Parameters
    ----------
    result : dict
        A :meth:`Runner.luigi` result: ``start_time``, ``peak_time``, ``peak_procs`` (:mod:`bench.procmon`),
        ``pid`` and ``tasks`` (:mod:`bench.luigi_run`).

    Returns
    -------
    dict
        ``at_s``: seconds from the command's start to the peak sample; ``processes``: per process of that
        sample ``pid``, ``pss_gb``, ``rss_gb`` (GB), ``task`` (``"build: scheduler and worker"`` for the build's
        own process, the task as Luigi prints it for a forked task process, else ``"other (parent PID)"``) and
        ``running_s`` (seconds the task had run at the peak, None for the others).
    """
    when = result.get("peak_time", 0.0)
    procs = []
    for proc in result.get("peak_procs", []):
        run = _task_at(result.get("tasks", []), proc["pid"], when)
        if proc["pid"] == result.get("pid"):
            name = "build: scheduler and worker"
        else:
            name = run["task"] if run else f"other (parent {proc['ppid']})"
        procs.append({"pid": proc["pid"], "pss_gb": proc["pss_gb"], "rss_gb": proc["rss_gb"], "task": name,
                      "running_s": when - run["start"] if run else None})
    return {"at_s": when - result.get("start_time", when), "processes": procs}


def summarise(runs: list[dict]) -> dict:
    """Medians (and the minimum wall time) over repeated runs of one configuration.

    Parameters
    ----------
    runs : list of dict
        Results of :meth:`Runner.run` / :meth:`Runner.luigi`.

    Returns
    -------
    dict
        ``n``, ``wall_s`` (median), ``wall_min_s``, ``cpu_s`` (median), ``peak_pss_gb`` and ``peak_rss_gb`` (medians), ``max_procs``,
        and, for Luigi builds, the medians of ``t_import``, ``t_first_start``, ``t_build``, the per-family
        run times of the median run and the peak's processes (``peak_breakdown``) of the run of median peak.
    """
    med = statistics.median
    walls = [r["wall_s"] for r in runs]
    out = {"n": len(runs), "wall_s": med(walls), "wall_min_s": min(walls), "cpu_s": med(r["cpu_s"] for r in runs),
           "peak_pss_gb": med(r["peak_pss_gb"] for r in runs), "peak_rss_gb": med(r["peak_rss_gb"] for r in runs),
           "max_procs": max(r["max_procs"] for r in runs)}
    for key in ("t_import", "t_first_start", "t_build"):
        values = [r[key] for r in runs if r.get(key) is not None]
        if values:
            out[key] = med(values)
    if "families" in runs[0]:
        middle = sorted(runs, key=lambda r: r["wall_s"])[len(runs) // 2]
        out["families"] = middle["families"]
        out["tasks_started"] = middle.get("tasks_started", {})
    if "peak_breakdown" in runs[0]:
        out["peak_breakdown"] = sorted(runs, key=lambda r: r["peak_pss_gb"])[len(runs) // 2]["peak_breakdown"]
    return out
