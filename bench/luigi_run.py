"""Run one podiflow Luigi build and record when its tasks ran (the subprocess ``make bench`` measures).

Usage::

    python -m bench.luigi_run collect OBSID[,OBSID...] --workers N --json OUT.json [-flag ...]
    python -m bench.luigi_run night NIGHT --workers N --json OUT.json
    python -m bench.luigi_run detrend OBSID:OTA --workers 1 --json OUT.json [-flag ...]
    python -m bench.luigi_run task FAMILY --param key=value ... --workers N --json OUT.json

``collect`` builds ``CollectCells`` for each exposure in one ``luigi.build``, with the ``podi_collectcells``
flags given (exactly the task ``podi_collectcells`` builds for one exposure); ``night`` builds
``ReduceNight``; ``detrend`` builds one ``DetrendOTA`` with the options those flags give it; ``task`` builds any task of ``workflows`` (e.g. ``MasterCalibration``). ``[podiflow]`` and
``[reduction]`` come from ``LUIGI_CONFIG_PATH``.

The JSON written holds ``t_import`` (seconds from interpreter start to the end of the imports),
``t_first_start`` (seconds from the call of ``luigi.build`` to the first task's ``run``; the scheduling phase),
``t_build`` (the whole ``luigi.build``), per task family the number of tasks that ran and the sum of their
run times (``families``), each task run with its process (``tasks``: ``pid``, ``family``, ``task`` as Luigi
prints it, ``start``, ``end`` in seconds since the epoch; ``bench.runner`` uses them to name the processes of
the memory peak), the build's own process (``pid``) and the build's status. Task start and end times are
collected through ``luigi.Event.START``/``SUCCESS`` handlers appending to a file, since with ``--workers > 1``
each task runs in a forked process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

_T_INTERPRETER = time.time()

__all__ = ["main", "build_tasks"]


def build_tasks(mode: str, names: str, flags: list[str], params: list[str]) -> list:
    """The tasks to build.

    Parameters
    ----------
    mode : {"collect", "night", "detrend", "task"}
        See the module docstring.
    names : str
        Comma list of exposures (``collect``), the night (``night``), ``OBSID:OTA`` (``detrend``) or the task
        family (``task``).
    flags : list of str
        ``podi_collectcells`` flags (``collect`` and ``detrend``).
    params : list of str
        ``key=value`` task parameters (``task`` only).
    """
    import workflows
    from workflows.base import options_param
    from workflows.options import parse_collectcells_args

    if mode in ("collect", "detrend"):
        _, options, _ = parse_collectcells_args(flags)
    if mode == "detrend":
        obsid, ota = names.split(":")
        return [workflows.DetrendOTA(obsid=obsid, ota=int(ota), options=options_param(options, ["DetrendOTA"]))]
    if mode == "collect":
        families = ["DetrendOTA", "OTACatalog", "FixWCS", "PhotCalib", "CollectCells"]
        return [workflows.CollectCells(obsid=o, options=options_param(options, families))
                for o in names.split(",")]
    if mode == "night":
        return [workflows.ReduceNight(night=names)]
    family = getattr(workflows, names)
    return [family.from_str_params(dict(p.split("=", 1) for p in params))]


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("collect", "night", "detrend", "task"))
    parser.add_argument("names")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--json", required=True)
    parser.add_argument("--param", action="append", default=[])
    args, flags = parser.parse_known_args(argv)

    import luigi

    from workflows.launch import build

    tasks = build_tasks(args.mode, args.names, flags, args.param)
    events = Path(tempfile.mkstemp(prefix="luigi-events-", suffix=".txt")[1])

    def _record(kind):
        def handler(task, *_):
            text = str(task).replace("\n", " ")
            with open(events, "a") as fh:
                fh.write(f"{kind} {time.time()} {os.getpid()} {task.get_task_family()} {task.task_id} {text}\n")
        return handler

    luigi.Task.event_handler(luigi.Event.START)(_record("start"))
    luigi.Task.event_handler(luigi.Event.SUCCESS)(_record("end"))

    t_import = time.time() - _T_INTERPRETER
    t0 = time.time()
    result = build(tasks, workers=args.workers, local_scheduler=True, detailed_summary=True,
                         log_level="WARNING")
    t_build = time.time() - t0
    lines = [line.split(maxsplit=5) for line in events.read_text().splitlines()]
    events.unlink()
    starts = {tid: (float(t), fam) for kind, t, _, fam, tid, _ in lines if kind == "start"}
    ends = {tid: float(t) for kind, t, _, _, tid, _ in lines if kind == "end"}
    families: dict = {}
    for tid, end in ends.items():
        if tid in starts:
            entry = families.setdefault(starts[tid][1], {"n": 0, "run_s": 0.0})
            entry["n"] += 1
            entry["run_s"] += end - starts[tid][0]
    runs = [{"pid": int(pid), "family": fam, "task": text, "start": float(t), "end": ends.get(tid)}
            for kind, t, pid, fam, tid, text in lines if kind == "start"]
    record = {
        "mode": args.mode, "names": args.names, "workers": args.workers, "flags": flags,
        "status": result.status.name, "t_import": t_import, "t_build": t_build,
        "t_first_start": (min(t for t, _ in starts.values()) - t0) if starts else None,
        "tasks_started": dict(Counter(f for _, f in starts.values())), "families": families,
        "pid": os.getpid(), "tasks": runs,
    }
    Path(args.json).write_text(json.dumps(record, indent=1))
    return 0 if result.status.name in ("SUCCESS", "SUCCESS_WITH_RETRY") else 1


if __name__ == "__main__":
    sys.exit(main())
