"""The measurements of ``make bench`` (issue 13), one function per item.

Every function takes a :class:`bench.runner.Runner`, the simulated night folder(s) and the number of
repeats, and returns a list of result rows (dicts with ``item``, ``name`` and the fields of
:func:`bench.runner.summarise`). Products of each configuration are removed before the next one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .datasets import exposures, fz_copy, raw_view, write_config
from .runner import Runner, summarise

__all__ = ["SCIENCE_FLAGS", "build_masters", "detrend_ota", "single_exposure", "scaling", "night"]

#: podiflow's options for the science exposures: the default steps (overscan, crosstalk, persistency,
#: canned WCS) plus the floor's bias and flat, -fixwcs and -photcalib, no QA plots.
SCIENCE_FLAGS = ["-fixwcs", "-photcalib", "-noqaplots"]

#: Name of the master-calibration night's work folder inside the run folder.
_CALS_WORK = "cals-work"


def _row(item: str, name: str, runs: list[dict], **extra) -> dict:
    return {"item": item, "name": name, **summarise(runs), **extra}


def _science_config(runner: Runner, tag: str, root: Path, raw: Path, reduction: dict | None = None) -> Path:
    work = runner.run_dir / f"work-{tag}"
    shutil.rmtree(work, ignore_errors=True)
    return write_config(runner.run_dir / "cfg" / f"{tag}.cfg", raw=raw, work=work,
                        out=runner.run_dir / f"out-{tag}", root=root, reduction=reduction)


def _clean(runner: Runner, tag: str) -> None:
    for prefix in ("work", "out"):
        shutil.rmtree(runner.run_dir / f"{prefix}-{tag}", ignore_errors=True)


def build_masters(runner: Runner, root: Path, workers: int = 2) -> tuple[list[dict], Path]:
    """Item (b): master bias, dark and dome flat (odi_r) of the pODI night, each timed on its own.

    Returns the rows and the ``cals`` folder (``bias_bin1.fits``, ``dflat_odi_r_bin1.fits`` links) that the
    floor and the science runs use. Each ``MasterCalibration`` gets the options its own input frames give
    the masters they need (``workflows.calibrations.frame_options``); with the default empty options the dark
    and the flat would not find the bias and dark masters built before and would build them again.
    """
    import json

    from workflows.calibrations import frame_options

    night = Path(exposures(root, "BIAS")[0].path).parent.name
    cfg = write_config(runner.run_dir / "cfg" / "cals.cfg", raw=root / "raw", work=runner.run_dir / _CALS_WORK,
                       out=runner.run_dir / "out-cals", root=root)
    rows = []
    for kind, filt in (("bias", ""), ("dark", ""), ("dflat", "odi_r")):
        n = len(exposures(root, kind.upper()))
        params = ["--param", f"night={night}", "--param", f"kind={kind}", "--param", f"filter={filt}",
                  "--param", f"options={json.dumps(frame_options({}, kind))}"]
        result = runner.luigi(f"master-{kind}", ["task", "MasterCalibration", *params, "--workers", str(workers)],
                              cfg)
        rows.append(_row("b", f"master {kind} ({n} frames, {workers} workers)", [result]))
    return rows, runner.run_dir / _CALS_WORK / night / "cals"


def _cal_flags(cals: Path) -> list[str]:
    return [f"-bias={cals}", f"-flat={cals}"]


def detrend_ota(runner: Runner, root: Path, cals: Path, repeat: int = 5, ota: int = 33) -> list[dict]:
    """Item (a): one full-size ``DetrendOTA`` in a fresh process, its output deleted before each run.

    A first run (not counted) also makes the OTA's ``SaturationCatalog``, which then stays complete.
    """
    first = exposures(root, "OBJECT")[0]
    cfg = _science_config(runner, "detrend", root, raw_view([first], runner.run_dir / "raw-detrend"))
    args = ["detrend", f"{first.obsid}:{ota}", "--workers", "1", *SCIENCE_FLAGS, *_cal_flags(cals)]
    runner.luigi("detrend-warmup", args, cfg)
    work = runner.run_dir / "work-detrend"
    runs = []
    for i in range(repeat):
        for path in work.glob(f"*/{first.obsid}/detrend/{first.obsid}.{ota:02d}.detrend.*"):
            path.unlink()
        runs.append(runner.luigi(f"detrend-{i}", args, cfg))
    _clean(runner, "detrend")
    row = _row("a", f"DetrendOTA OTA{ota} (full size, fresh process)", runs)
    row["task_s"] = row["families"].get("DetrendOTA", {}).get("run_s")
    return [row]


def single_exposure(runner: Runner, root: Path, cals: Path, repeat: int = 3,
                    workers: tuple = (1, 2)) -> list[dict]:
    """Items 1 and 2: the floor and podiflow on the first science exposure, plain and ``.fz`` input.

    Each repeat runs every configuration once (interleaved, so a slow spell of the machine hits them all).
    podiflow builds ``CollectCells`` (what ``podi_collectcells`` builds) from scratch in a fresh work folder
    with ``SCIENCE_FLAGS`` and the masters of :func:`build_masters`.
    """
    first = exposures(root, "OBJECT")[0]
    plain = raw_view([first], runner.run_dir / "raw-single")
    fz_raw = runner.run_dir / "raw-single-fz"
    fz_dir = fz_copy(Path(first.path), fz_raw)
    inputs = {"fits": (plain, Path(first.path)), "fz": (fz_raw, fz_dir)}
    runs: dict = {}
    for i in range(repeat):
        for fmt, (raw, folder) in inputs.items():
            for n in workers:
                runs.setdefault(("floor", fmt, n), []).append(
                    runner.floor(f"floor-{fmt}-{n}p-{i}", folder, cals, n))
                tag = f"single-{fmt}-{n}w"
                cfg = _science_config(runner, tag, root, raw)
                args = ["collect", first.obsid, "--workers", str(n), *SCIENCE_FLAGS, *_cal_flags(cals)]
                runs.setdefault(("podiflow", fmt, n), []).append(runner.luigi(f"{tag}-{i}", args, cfg))
                _clean(runner, tag)
    rows = []
    for (who, fmt, n), results in runs.items():
        unit = "process" if who == "floor" else "worker"
        name = f"{who}, 1 pODI exposure, .{fmt}, {n} {unit}{'es' if unit == 'process' and n > 1 else 's' if n > 1 else ''}"
        rows.append(_row("1" if who == "floor" else "2", name, results, who=who, format=fmt, procs=n))
    for row in rows:
        if row["who"] == "podiflow":
            floor = next(r for r in rows if r["who"] == "floor" and r["format"] == "fits" and r["procs"] == row["procs"])
            row["ratio_floor"] = row["wall_s"] / floor["wall_s"]
            row["ratio_floor_cpu"] = row["cpu_s"] / floor["cpu_s"]
    return rows


def scaling(runner: Runner, root: Path, sizes: tuple, label: str, cals: Path | None = None,
            workers: int = 2, repeat: int = 1, single_item: str = "6") -> list[dict]:
    """Item 6: podiflow on the first N science exposures in one build, for each N in ``sizes``.

    The row of N = 1 is reported as item ``single_item`` (item 3 for the 5x6).
    """
    sci = exposures(root, "OBJECT")
    flags = SCIENCE_FLAGS + (_cal_flags(cals) if cals else [])
    rows = []
    for n in sizes:
        raw = raw_view(sci[:n], runner.run_dir / f"raw-{label}-{n}")
        tag = f"{label}-{n}"
        results = []
        for i in range(repeat):
            cfg = _science_config(runner, tag, root, raw)
            args = ["collect", ",".join(e.obsid for e in sci[:n]), "--workers", str(workers), *flags]
            results.append(runner.luigi(f"{tag}-{i}", args, cfg))
            _clean(runner, tag)
        row = _row(single_item if n == 1 else "6", f"podiflow, {n} {label} exposure(s), {workers} workers",
                   results, exposures=n, instrument=label, workers=workers)
        row["s_per_exposure"] = row["wall_s"] / n
        rows.append(row)
    return rows


def night(runner: Runner, root: Path, workers: int = 2, noop_repeat: int = 3) -> list[dict]:
    """Item 4: a whole test-instrument night (masters, every science exposure) with ``ReduceNight``.

    Reports exposures per hour, the scheduling phase (``luigi.build`` call to the first task's ``run``) and
    the no-op rerun with everything complete, both through ``bench.luigi_run`` and through the ``luigi``
    command a user types. A rerun that runs tasks (e.g. the code changed the options between the runs)
    is not a no-op: its tasks are counted in its row.
    """
    import sys

    n_sci = len(exposures(root, "OBJECT"))
    night_name = Path(exposures(root, "OBJECT")[0].path).parent.name
    reduction = {"fixwcs": "true", "photcalib": "true", "noqaplots": "true"}
    cfg = _science_config(runner, "night", root, root / "raw", reduction)
    args = ["night", night_name, "--workers", str(workers)]
    full = runner.luigi("night-full", args, cfg)
    row = _row("4", f"night: {n_sci} test exposures + masters, ReduceNight, {workers} workers", [full],
               exposures=n_sci)
    row["exposures_per_hour"] = n_sci / full["wall_s"] * 3600
    row["sched_fraction"] = full["t_first_start"] / full["wall_s"]
    rows = [row]
    try:  # the full run's row survives a failed rerun
        noop = [runner.luigi(f"night-noop-{i}", args, cfg) for i in range(noop_repeat)]
        rows.append(_row("4", "night no-op rerun (bench.luigi_run)", noop))
        script = Path(sys.executable).parent / "luigi"
        luigi_cli = ([str(script)] if script.exists() else
                     [sys.executable, "-c", "import sys; from luigi.cmdline import luigi_run; luigi_run(sys.argv[1:])"])
        luigi_cli += ["--module", "workflows", "ReduceNight", "--night", night_name, "--local-scheduler",
                      "--workers", str(workers)]
        noop_cli = [runner.run(f"night-noop-cli-{i}", luigi_cli, cfg) for i in range(noop_repeat)]
        rows.append(_row("4", "night no-op rerun (`luigi --module workflows ReduceNight`)", noop_cli))
    except RuntimeError as exc:
        row["error"] = f"no-op rerun: {exc}"
    finally:
        _clean(runner, "night")
    return rows
