"""cProfile of one podiflow build, in one process (``--workers 1`` runs every task in-process).

Usage: ``python -m bench.profile_run OUT.prof OUT.json collect OBSID [-flag ...]`` (arguments after the two
output files as for ``bench.luigi_run``). Writes the raw profile and the top functions by own time and by
cumulative time as ``file:line(function)`` with CPU seconds and call counts, and the CPU seconds of the whole
build (``cpu_s``, user + system). The profiler's clock is the process's CPU time, not the wall clock: on a
loaded machine wall-clock times mostly measure the wait for a core (time blocked in ``fsync`` or reads is
then not counted: ``bench.run`` measures wall time).
"""

from __future__ import annotations

import cProfile
import json
import pstats
import resource
import sys
import time
from pathlib import Path

__all__ = ["top_functions", "main"]


def top_functions(stats: pstats.Stats, sort: str, limit: int = 25) -> list[dict]:
    """The ``limit`` most expensive functions of ``stats`` by ``sort`` (``"tottime"`` or ``"cumulative"``)."""
    key = {"tottime": 2, "cumulative": 3}[sort]
    entries = sorted(stats.stats.items(), key=lambda kv: kv[1][key], reverse=True)[:limit]
    return [{"function": f"{Path(file).name if '/site-packages/' in file else file}:{line}({name})",
             "calls": nc, "tottime_s": round(tt, 3), "cumtime_s": round(ct, 3)}
            for (file, line, name), (_, nc, tt, ct, _) in entries]


def _cpu_s() -> float:
    """CPU seconds (user + system) used so far by this process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    import luigi

    from .luigi_run import build_tasks

    argv = sys.argv[1:] if argv is None else argv
    prof_path, json_path, mode, names, *flags = argv
    tasks = build_tasks(mode, names, flags, [])
    profiler = cProfile.Profile(time.process_time)
    cpu_start = _cpu_s()
    profiler.enable()
    result = luigi.build(tasks, workers=1, local_scheduler=True, detailed_summary=True, log_level="WARNING")
    profiler.disable()
    cpu_s = _cpu_s() - cpu_start
    profiler.dump_stats(prof_path)
    stats = pstats.Stats(prof_path)
    report = {"status": result.status.name, "total_s": stats.total_tt, "cpu_s": round(cpu_s, 2),
              "by_tottime": top_functions(stats, "tottime"), "by_cumtime": top_functions(stats, "cumulative", 40)}
    Path(json_path).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
