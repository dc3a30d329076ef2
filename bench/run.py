"""``make bench``: podiflow's speed, memory and scaling against a floor measured in the same run (issue 13).

Usage: ``python -m bench.run [--quick] [--data DIR] [--out bench/results] [--items a,b,1,2,3,4,6] [--keep]
[--profile]``.

Simulated nights are cached in ``--data`` (default ``$TMPDIR/podiflow-bench-data``); each run writes its
products into a fresh folder inside it, removed at the end unless ``--keep``. Results go to
``<out>/bench.json`` and ``<out>/bench.md``; the table is printed.

Items: ``b`` masters (bias, dark, 5-flat dome flat) of the pODI night, needed by everything else and timed on
their own; ``a`` one DetrendOTA; ``1``/``2`` the floor and podiflow on one pODI exposure, plain and .fz, 1 and 2
workers; ``3`` one full-size 5x6 exposure; ``4`` a 50-exposure test-instrument night with its no-op rerun;
``6`` 1-2-4-8 pODI and 1-2-4 5x6 exposures in one build. ``--profile`` (or any missed speed target) adds a
cProfile of podiflow on one pODI exposure with 1 worker.
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
from .datasets import exposures, simulate
from .report import check_targets, write
from .runner import Runner

__all__ = ["main", "SIZES"]

#: Sizes per mode: science exposures simulated, repeats, scaling sizes.
SIZES = {
    "full": {"podi_science": 8, "odi5x6_science": 4, "night_science": 50, "repeat": 3, "detrend_repeat": 5,
             "podi_sizes": (2, 4, 8), "odi5x6_sizes": (2, 4), "noop_repeat": 3},
    "quick": {"podi_science": 8, "odi5x6_science": 4, "night_science": 50, "repeat": 1, "detrend_repeat": 3,
              "podi_sizes": (2,), "odi5x6_sizes": (), "noop_repeat": 1},
}


def _profile(runner: Runner, podi: Path, cals: Path) -> dict:
    """cProfile of podiflow on the first pODI exposure, 1 worker (see ``bench.profile_run``)."""
    first = exposures(podi, "OBJECT")[0]
    from .datasets import raw_view, write_config

    cfg = write_config(runner.run_dir / "cfg" / "profile.cfg", raw=raw_view([first], runner.run_dir / "raw-prof"),
                       work=runner.run_dir / "work-profile", out=runner.run_dir / "out-profile", root=podi)
    prof, report = runner.run_dir / "podiflow.prof", runner.run_dir / "profile.json"
    runner.run("profile", [sys.executable, "-m", "bench.profile_run", str(prof), str(report), "collect", first.obsid,
                           *items.SCIENCE_FLAGS, f"-bias={cals}", f"-flat={cals}"], cfg)
    return json.loads(report.read_text())


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repeat, fewer sizes (about 15 min)")
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "podiflow-bench-data")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--items", default="b,a,1,2,3,4,6")
    parser.add_argument("--keep", action="store_true", help="keep the run folder (products and logs)")
    parser.add_argument("--profile", action="store_true", help="always add the cProfile run")
    parser.add_argument("--cals", type=Path, default=None,
                        help="use this folder of pODI masters (bias_bin1.fits, dflat_odi_r_bin1.fits) from an "
                             "earlier run instead of building them (item b is then not measured)")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    size = SIZES[mode]
    wanted = set(args.items.split(","))
    t_start = time.perf_counter()
    log = lambda msg: print(msg, flush=True)  # noqa: E731

    sim_s = {}
    podi, sim_s["podi"] = simulate("podi", size["podi_science"], args.data, log=log)
    odi, sim_s["odi5x6"] = (simulate("odi5x6", size["odi5x6_science"], args.data, log=log)
                            if wanted & {"3", "6"} else (None, 0.0))
    night, sim_s["night"] = (simulate("night", size["night_science"], args.data, log=log)
                             if "4" in wanted else (None, 0.0))
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=args.data))
    runner = Runner(run_dir, log=log)
    rows, errors, profile = [], [], None
    t_measure = time.perf_counter()

    def attempt(label, fn, *a, **kw):
        log(f"bench: {label}")
        try:
            got = fn(runner, *a, **kw)
            rows.extend(got)
            args.out.mkdir(parents=True, exist_ok=True)  # partial results survive an interrupted run
            (args.out / "bench.partial.json").write_text(json.dumps(rows, indent=1, default=str))
            return got
        except Exception as exc:  # one failed item must not lose the others' results
            errors.append(f"{label}: {exc}")
            log(f"bench: {label} FAILED: {exc}")
            return []

    try:
        cal_rows = []

        def masters(r, root):
            got, cals_dir = items.build_masters(r, root)
            cal_rows.append(cals_dir)
            return got

        if args.cals is None:
            attempt("b: masters of the pODI night", masters, podi)
        cals = args.cals.resolve() if args.cals is not None else (cal_rows[0] if cal_rows else None)
        # most important first: a slow machine may be stopped before the end and keep what matters
        if cals is not None and wanted & {"1", "2", "6"}:
            single = attempt("1-2: one pODI exposure", items.single_exposure, podi, cals, repeat=size["repeat"])
            base = next((r for r in single if r.get("who") == "podiflow" and r["format"] == "fits"
                         and r["procs"] == 2), None)
            if base is not None and "6" in wanted:
                rows.append({**base, "item": "6", "name": "podiflow, 1 pODI exposure(s), 2 workers (= item 2)",
                             "exposures": 1, "instrument": "pODI", "workers": 2, "s_per_exposure": base["wall_s"]})
        if wanted & {"3", "6"}:
            attempt("3: one 5x6 exposure", items.scaling, odi, (1,), "5x6", single_item="3")
        if cals is not None and "a" in wanted:
            attempt("a: DetrendOTA", items.detrend_ota, podi, cals, repeat=size["detrend_repeat"])
        if "4" in wanted:
            attempt("4: night", items.night, night, noop_repeat=size["noop_repeat"])
        if cals is not None and "6" in wanted:
            attempt("6: pODI scaling", items.scaling, podi, size["podi_sizes"], "pODI", cals=cals)
        if "6" in wanted:
            attempt("6: 5x6 scaling", items.scaling, odi, tuple(n for n in size["odi5x6_sizes"] if n > 1), "5x6")
        missed = [t for t in check_targets(rows) if t["met"] is False]
        if cals is not None and (args.profile or missed):
            log("bench: profile (cProfile, 1 worker)")
            try:
                profile = _profile(runner, podi, cals)
            except Exception as exc:
                errors.append(f"profile: {exc}")
    finally:
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
    mem_gb = int(Path("/proc/meminfo").read_text().split()[1]) / 1e6
    meta = {"mode": mode, "date": datetime.now().isoformat(timespec="seconds"),
            "bench_wall_s": time.perf_counter() - t_start, "measure_wall_s": time.perf_counter() - t_measure,
            "simulation_s": sim_s, "cpus": os.cpu_count(), "mem_gb": round(mem_gb, 1),
            "load_before": os.getloadavg(), "errors": errors, "run_dir": str(run_dir) if args.keep else None,
            "profile": profile}
    meta["machine_note"] = f"{os.cpu_count()} CPUs, {mem_gb:.0f} GB RAM"
    text = write(args.out, rows, meta)
    print(text)
    if profile:
        print("Top functions by own time (cProfile, 1 worker, one pODI exposure):")
        for f in profile["by_tottime"][:15]:
            print(f"  {f['tottime_s']:8.2f} s  {f['calls']:8d} calls  {f['function']}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
