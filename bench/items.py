"""The measurements of ``make bench`` (issues 24 and 23), one function per item.

Every function takes a :class:`bench.runner.Runner` and the simulated night folder and returns a list of
result rows (dicts with ``item``, ``name`` and the fields of :func:`bench.runner.summarise`).

``c``      the full-size pODI night end to end (``ReduceNight``: masters, persistency, ``-fixwcs -photcalib``),
           and ``d``, its CPU seconds per science exposure; its masters serve the other items;
``floor``  :mod:`bench.floor` on the last science exposure, 2 processes;
``a``      that exposure cold: a fresh work folder, persistency on, the night's masters given as files;
``b``      that exposure warm: the exposures before it already reduced in the same work folder;
``L``      watch latency: the exposure's files land in a folder ``podiflow watch`` follows; seconds from the
           last file landing to its final MEF;
``sched``  (optional) a test-instrument night and its no-op rerun: Luigi's scheduling cost.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from .datasets import PODIFLOW, exposures, python_env, raw_view, write_config
from .runner import Runner, summarise

__all__ = ["SCIENCE_FLAGS", "REDUCTION", "full_night", "exposure_runs", "watch_latency", "scheduling"]

#: podiflow's options for the science exposures: the default steps (overscan, crosstalk, persistency,
#: canned WCS) plus -fixwcs and -photcalib, no QA plots.
SCIENCE_FLAGS = ["-fixwcs", "-photcalib", "-noqaplots"]

#: The same options as ``[reduction]`` values (``ReduceNight`` and ``podiflow watch`` read them there).
REDUCTION = {"fixwcs": "true", "photcalib": "true", "noqaplots": "true"}

#: The night's masters built by the DAG (the night takes no darks; ``ReduceNight`` and ``podiflow watch`` would
#: otherwise ask for a dark master too).
NIGHT_MASTERS = "bias,flat"

#: Seconds ``podiflow watch`` waits for an exposure's files to stay unchanged, and between two looks.
WATCH_SETTLE_S, WATCH_POLL_S = 2.0, 0.5


def _row(item: str, name: str, runs: list[dict], **extra) -> dict:
    return {"item": item, "name": name, **summarise(runs), **extra}


def _config(runner: Runner, tag: str, root: Path, raw: Path, reduction: dict | None = None) -> Path:
    for prefix in ("work", "out"):
        shutil.rmtree(runner.run_dir / f"{prefix}-{tag}", ignore_errors=True)
    return write_config(runner.run_dir / "cfg" / f"{tag}.cfg", raw=raw, work=runner.run_dir / f"work-{tag}",
                        out=runner.run_dir / f"out-{tag}", root=root, reduction=reduction)


def _night_name(root: Path) -> str:
    return Path(exposures(root, "OBJECT")[0].path).parent.name


def full_night(runner: Runner, root: Path, *, workers: int = 2) -> tuple[list[dict], Path]:
    """Items (c) and (d): ``ReduceNight`` of the whole pODI night from a fresh work folder.

    Returns
    -------
    rows : list of dict
        One row; ``cpu_per_science_s`` is the CPU of the whole run (masters included) divided by the number
        of science exposures.
    cals : Path
        ``<work>/<night>/cals``: the night's master bias and flat (``bias_bin1.fits``, ``dflat_odi_r_bin1.fits``).
    """
    n_sci = len(exposures(root, "OBJECT"))
    n_cal = len(exposures(root, "BIAS")) + len(exposures(root, "DFLAT"))
    night = _night_name(root)
    cfg = _config(runner, "night", root, root / "raw", {**REDUCTION, "masters": NIGHT_MASTERS})
    run = runner.luigi("night", ["night", night, "--workers", str(workers)], cfg)
    row = _row("c", f"pODI night: {n_cal} calibration + {n_sci} science exposures, ReduceNight, {workers} workers",
               [run], exposures=n_sci, cpu_per_science_s=run["cpu_s"] / n_sci)
    return [row], runner.run_dir / "work-night" / night / "cals"


def _forget(runner: Runner, tag: str, night: str, obsid: str) -> None:
    """Remove every product of ``obsid`` in the work and out folders of ``tag``."""
    for prefix in ("work", "out"):
        shutil.rmtree(runner.run_dir / f"{prefix}-{tag}" / night / obsid, ignore_errors=True)


def exposure_runs(runner: Runner, root: Path, cals: Path, *, repeat: int = 3, workers: int = 2) -> list[dict]:
    """The floor and items (a) cold and (b) warm on the night's last science exposure, interleaved.

    Each repeat runs the floor, then (a) in a fresh work folder (the saturation catalogues of the exposures in
    its persistency window made on the way), then (b): ``CollectCells`` of the exposure in a work folder
    where the exposures before it were reduced once beforehand (not timed), its own products removed before
    each run. All use ``SCIENCE_FLAGS`` and the night's masters (``-bias``, ``-flat``).
    """
    sci = exposures(root, "OBJECT")
    last, before = sci[-1].obsid, [e.obsid for e in sci[:-1]]
    night = _night_name(root)
    flags = [*SCIENCE_FLAGS, f"-bias={cals}", f"-flat={cals}", "--workers", str(workers)]
    raw = raw_view(sci, runner.run_dir / "raw-science")
    warm_cfg = _config(runner, "warm", root, raw)
    runner.luigi("warm-predecessors", ["collect", ",".join(before[-2:]), *flags], warm_cfg)
    runs: dict = {"floor": [], "a": [], "b": []}
    for i in range(repeat):
        runs["floor"].append(runner.floor(f"floor-{i}", Path(sci[-1].path), cals, workers))
        runs["a"].append(runner.luigi(f"cold-{i}", ["collect", last, *flags], _config(runner, "cold", root, raw)))
        _forget(runner, "warm", night, last)
        runs["b"].append(runner.luigi(f"warm-{i}", ["collect", last, *flags], warm_cfg))
    floor = _row("floor", f"floor (bench.floor), 1 pODI exposure, {workers} processes", runs["floor"])
    rows = [floor,
            _row("a", f"1 pODI exposure cold (fresh work folder), {workers} workers", runs["a"]),
            _row("b", f"1 pODI exposure warm (predecessors reduced), {workers} workers", runs["b"])]
    for row in rows[1:]:
        row["ratio_floor"] = row["wall_s"] / floor["wall_s"]
        row["ratio_floor_cpu"] = row["cpu_s"] / floor["cpu_s"]
    return rows


def _wait_for(predicate, proc: subprocess.Popen, log: Path, what: str, timeout: float = 900.0) -> float:
    """Poll ``predicate`` every 0.1 s until true; return the time it became true (``time.time()``).

    Raises ``RuntimeError`` if the watcher exits, reports a failed exposure in ``log``, or ``timeout`` passes.
    """
    end = time.time() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise RuntimeError(f"bench: podiflow watch exited ({proc.returncode}) before {what}")
        if "FAILED" in log.read_text(errors="replace"):
            raise RuntimeError(f"bench: podiflow watch failed an exposure before {what}; see {log}")
        if time.time() > end:
            raise RuntimeError(f"bench: no {what} after {timeout:g} s")
        time.sleep(0.1)
    return time.time()


def _latency_trial(runner: Runner, root: Path, cfg: Path, i: int, *, workers: int) -> float:
    """One watch session: wait until the earlier exposures are done, land the last one, time its MEF."""
    sci = exposures(root, "OBJECT")
    night, last = _night_name(root), sci[-1]
    replay = runner.run_dir / "raw-replay" / night
    out = runner.run_dir / "out-watch" / night
    _forget(runner, "watch", night, last.obsid)
    shutil.rmtree(replay / last.obsid, ignore_errors=True)
    (out / "summary.html").unlink(missing_ok=True)
    log = runner.run_dir / "logs" / f"watch-{i}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-c", PODIFLOW, "watch", night, "--workers", str(workers),
           "--settle", str(WATCH_SETTLE_S), "--poll", str(WATCH_POLL_S)]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, env=python_env(cfg), cwd=runner.run_dir, stdout=fh, stderr=subprocess.STDOUT)
    try:
        _wait_for((out / "summary.html").exists, proc, log, "summary of the earlier exposures")
        folder = replay / last.obsid
        folder.mkdir()
        for path in sorted(Path(last.path).glob("*.fits*")):
            shutil.copyfile(path, folder / path.name)
        landed = time.time()
        ready = _wait_for((out / last.obsid / f"{last.obsid}.fits").exists, proc, log, "final MEF")
    finally:
        (runner.run_dir / "work-watch" / night / "STOP").parent.mkdir(parents=True, exist_ok=True)
        (runner.run_dir / "work-watch" / night / "STOP").touch()
        proc.wait(timeout=600)
        (runner.run_dir / "work-watch" / night / "STOP").unlink()
    runner.log(f"  watch-{i}: MEF ready {ready - landed:.1f} s after the last OTA file landed")
    return ready - landed


def watch_latency(runner: Runner, root: Path, cals: Path, warm_s: float | None, *, repeat: int = 3,
                  workers: int = 2) -> list[dict]:
    """Item L (issue 23): seconds from the last OTA file of an exposure landing to its final MEF.

    The two science exposures before it (its persistency window) are in the watched folder from the start
    and reduced first; then the exposure's files are copied in one after the other. ``podiflow watch`` runs
    with ``--settle WATCH_SETTLE_S --poll WATCH_POLL_S``, the options of ``SCIENCE_FLAGS`` and the night's
    masters. ``ratio_warm`` compares the median with item (b)'s wall time.
    """
    sci = exposures(root, "OBJECT")
    raw = raw_view(sci[-3:-1], runner.run_dir / "raw-replay")
    cfg = _config(runner, "watch", root, raw,
                  {**REDUCTION, "masters": NIGHT_MASTERS, "bias": str(cals), "flat": str(cals)})
    latencies = [_latency_trial(runner, root, cfg, i, workers=workers) for i in range(repeat)]
    latencies.sort()
    row = {"item": "L", "name": f"watch latency: last OTA file landed -> final MEF (settle {WATCH_SETTLE_S:g} s, "
                               f"poll {WATCH_POLL_S:g} s), {workers} workers",
           "n": repeat, "wall_s": latencies[len(latencies) // 2], "wall_min_s": latencies[0]}
    if warm_s:
        row["ratio_warm"] = row["wall_s"] / warm_s
    return [row]


def scheduling(runner: Runner, root: Path, *, workers: int = 2, noop_repeat: int = 3) -> list[dict]:
    """Optional item ``sched``: a whole test-instrument night and its no-op rerun (Luigi's scheduling cost).

    Reports exposures per hour and the scheduling phase (``luigi.build`` call to the first task's ``run``).
    """
    n_sci = len(exposures(root, "OBJECT"))
    night = _night_name(root)
    cfg = _config(runner, "sched", root, root / "raw", REDUCTION)
    args = ["night", night, "--workers", str(workers)]
    full = runner.luigi("sched-full", args, cfg)
    row = _row("sched", f"test-instrument night: {n_sci} exposures + masters, {workers} workers", [full],
               exposures=n_sci, exposures_per_hour=n_sci / full["wall_s"] * 3600,
               sched_fraction=full["t_first_start"] / full["wall_s"])
    noop = [runner.luigi(f"sched-noop-{i}", args, cfg) for i in range(noop_repeat)]
    return [row, _row("sched", "test-instrument night, no-op rerun", noop)]
