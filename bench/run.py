"""``make bench``: podiflow's speed and memory against a floor measured in the same run (issues 24 and 23).

Usage: ``python -m bench.run [--quick] [--data DIR] [--out bench/results] [--items c,a,b,L] [--keep]
[--profile]``.

The full-size pODI night of issue 24 (3 biases, 3 dome flats, 10 science exposures) is simulated once into
``--data`` (default ``$TMPDIR/podiflow-bench-data``); each run writes its products into a fresh folder inside
it, removed at the end unless ``--keep``. Items (see :mod:`bench.items`): ``c`` the night end to end (and
``d``, CPU per science exposure), then the floor, ``a`` cold and ``b`` warm interleaved, ``L`` the watch
latency; ``sched`` (not by default) a test-instrument night for Luigi's scheduling cost. Results go to
``<out>/bench.json`` and ``<out>/bench.md``; the table is printed. ``--profile`` (or any missed speed
target) adds a cProfile of podiflow on the last science exposure with 1 worker (``bench.profile_run``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from . import items
from .datasets import exposures, raw_view, simulate, write_config
from .report import check_targets, write
from .runner import Runner

__all__ = ["main", "SIZES"]

#: Per mode: science exposures of the pODI night, repeats of the single-exposure items and of the latency,
#: exposures of the optional test-instrument night.
SIZES = {
    "full": {"science": 10, "repeat": 3, "latency_repeat": 3, "sched_science": 50},
    "quick": {"science": 10, "repeat": 1, "latency_repeat": 1, "sched_science": 50},
}


def _profile(runner: Runner, root: Path, cals: Path) -> dict:
    """cProfile of podiflow on the last science exposure, cold, 1 worker (see ``bench.profile_run``)."""
    sci = exposures(root, "OBJECT")
    cfg = write_config(runner.run_dir / "cfg" / "profile.cfg", raw=raw_view(sci, runner.run_dir / "raw-science"),
                       work=runner.run_dir / "work-profile", out=runner.run_dir / "out-profile", root=root)
    prof, report = runner.run_dir / "podiflow.prof", runner.run_dir / "profile.json"
    runner.run("profile", [sys.executable, "-m", "bench.profile_run", str(prof), str(report), "collect",
                           sci[-1].obsid, *items.SCIENCE_FLAGS, f"-bias={cals}", f"-flat={cals}"], cfg)
    return json.loads(report.read_text())


class _Attempts:
    """Runs the items one after the other; a failed item is logged and the others' rows are kept."""

    def __init__(self, runner: Runner, out: Path, log):
        self.runner, self.out, self.log = runner, out, log
        self.rows, self.errors = [], []

    def __call__(self, label: str, fn, *args, **kwargs):
        self.log(f"bench: {label}")
        try:
            got = fn(self.runner, *args, **kwargs)
        except Exception as exc:  # one failed item must not lose the others' results
            self.errors.append(f"{label}: {exc}")
            self.log(f"bench: {label} FAILED: {exc}")
            return None
        rows = got[0] if isinstance(got, tuple) else got
        self.rows.extend(rows)
        self.out.mkdir(parents=True, exist_ok=True)  # partial results survive an interrupted run
        (self.out / "bench.partial.json").write_text(json.dumps(self.rows, indent=1, default=str))
        return got


def _measure(attempt: _Attempts, root: Path, wanted: set, size: dict, data: Path, cals: Path | None) -> Path | None:
    """Run the wanted items; return the night's masters folder (None if item c failed or was not run).

    With ``cals`` (masters of an earlier run) item c runs only when asked for.
    """
    if "c" in wanted or (cals is None and wanted & {"a", "b", "L"}):
        got = attempt("c: the pODI night end to end", items.full_night, root)
        cals = got[1] if got else cals
    if cals is not None and wanted & {"a", "b"}:
        attempt("floor, a (cold), b (warm): the last science exposure", items.exposure_runs, root, cals,
                repeat=size["repeat"])
    warm = next((r["wall_s"] for r in attempt.rows if r["item"] == "b"), None)
    if cals is not None and "L" in wanted:
        attempt("L: watch latency", items.watch_latency, root, cals, warm, repeat=size["latency_repeat"])
    if "sched" in wanted:
        night, _ = simulate("night", size["sched_science"], data, log=attempt.log)
        attempt("sched: test-instrument night", items.scheduling, night)
    return cals


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repeat of each item")
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "podiflow-bench-data")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--items", default="c,a,b,L")
    parser.add_argument("--keep", action="store_true", help="keep the run folder (products and logs)")
    parser.add_argument("--profile", action="store_true", help="always add the cProfile run")
    parser.add_argument("--cals", type=Path, default=None,
                        help="the night's masters (bias_bin1.fits, dflat_odi_r_bin1.fits) from an earlier run "
                             "(--keep: <run>/work-night/<night>/cals), so items a, b and L need no item c")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    size = SIZES[mode]
    t_start = time.perf_counter()
    log = lambda msg: print(msg, flush=True)  # noqa: E731

    root, sim_s = simulate("podi", size["science"], args.data, log=log)
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=args.data))
    attempt = _Attempts(Runner(run_dir, log=log), args.out, log)
    profile = None
    t_measure = time.perf_counter()
    try:
        cals = _measure(attempt, root, set(args.items.split(",")), size, args.data,
                        args.cals.resolve() if args.cals else None)
        missed = [t for t in check_targets(attempt.rows) if t["met"] is False]
        if cals is not None and (args.profile or missed):
            log("bench: profile (cProfile, 1 worker)")
            try:
                profile = _profile(attempt.runner, root, cals)
            except Exception as exc:
                attempt.errors.append(f"profile: {exc}")
    finally:
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
    mem_gb = int(Path("/proc/meminfo").read_text().split()[1]) / 1e6
    meta = {"mode": mode, "date": datetime.now().isoformat(timespec="seconds"),
            "bench_wall_s": time.perf_counter() - t_start, "measure_wall_s": time.perf_counter() - t_measure,
            "simulation_s": sim_s, "cpus": os.cpu_count(), "mem_gb": round(mem_gb, 1),
            "load_before": os.getloadavg(), "errors": attempt.errors,
            "run_dir": str(run_dir) if args.keep else None, "profile": profile,
            "machine_note": f"{os.cpu_count()} CPUs, {mem_gb:.0f} GB RAM"}
    print(write(args.out, attempt.rows, meta))
    if profile:
        print("Top functions by own time (cProfile, 1 worker, one pODI exposure cold):")
        for f in profile["by_tottime"][:15]:
            print(f"  {f['tottime_s']:8.2f} s  {f['calls']:8d} calls  {f['function']}")
    return 1 if attempt.errors else 0


if __name__ == "__main__":
    sys.exit(main())
