"""``bench.json`` and ``bench.md``: the measured rows, the targets of issue 13 and whether they are met."""

from __future__ import annotations

import json
import platform
from pathlib import Path

__all__ = ["TARGETS", "check_targets", "markdown", "write"]

#: Targets of issue 13: (description, limit, function of the rows giving the measured value or None).
TARGETS = [
    ("podiflow / floor, 1 pODI exposure, -fixwcs -photcalib, no QA, 2 workers", 2.0,
     lambda rows: _get(rows, who="podiflow", format="fits", procs=2, key="ratio_floor")),
    ("same in CPU time (user+system of all processes)", 2.0,
     lambda rows: _get(rows, who="podiflow", format="fits", procs=2, key="ratio_floor_cpu")),
    ("no-op rerun of the 50-exposure night, s (luigi command)", 5.0,
     lambda rows: _get(rows, name_has="no-op rerun (`luigi", key="wall_s")),
    ("scheduling phase / night wall time", 0.10,
     lambda rows: _get(rows, name_has="night:", key="sched_fraction")),
    ("peak memory, 1 pODI exposure, 2 workers, GB (PSS of all processes)", 3.0,
     lambda rows: _get(rows, who="podiflow", format="fits", procs=2, key="peak_pss_gb")),
    ("peak memory, 1 full-size 5x6 exposure, 2 workers, GB (PSS of all processes)", 6.0,
     lambda rows: _get(rows, instrument="5x6", exposures=1, key="peak_pss_gb")),
]


def _get(rows, *, key, name_has=None, **match):
    for row in rows:
        if name_has is not None and name_has not in row["name"]:
            continue
        if all(row.get(k) == v for k, v in match.items()):
            return row.get(key)
    return None


def check_targets(rows: list[dict]) -> list[dict]:
    """Each target with its measured value and ``met`` (None when not measured in this run)."""
    out = []
    for text, limit, value in TARGETS:
        v = value(rows)
        out.append({"target": text, "limit": limit, "value": v, "met": None if v is None else bool(v <= limit)})
    return out


def _fmt(value, digits=2):
    return "" if value is None else f"{value:.{digits}f}"


def markdown(rows: list[dict], targets: list[dict], meta: dict) -> str:
    """The Markdown report: one table of medians, one of the targets, and the run's context."""
    lines = [f"# make bench ({meta['mode']}), {meta['date']}", "",
             f"{meta['machine']}; wall time of the bench {meta['bench_wall_s'] / 60:.1f} min. "
             "Times are medians over `n` runs of a fresh process each (imports included); memory is the peak of "
             "the summed PSS of the whole process tree (RSS in bench.json). `ratio` = wall time / the floor's "
             "with the same number of processes on plain .fits; `CPU` = user+system CPU seconds of the whole tree "
             "and `CPU ratio` the same ratio in CPU time (the robust one on a machine shared with other jobs). "
             "`sched` = time from `luigi.build` to the first "
             "task's run.", "",
             "| item | configuration | n | wall s (median) | min s | ratio | CPU s | CPU ratio | peak GB | s/exposure "
             "| sched s | tasks |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        tasks = sum(r.get("tasks_started", {}).values()) if r.get("tasks_started") else ""
        lines.append(f"| {r['item']} | {r['name']} | {r['n']} | {_fmt(r['wall_s'])} | {_fmt(r['wall_min_s'])} | "
                     f"{_fmt(r.get('ratio_floor'))} | {_fmt(r.get('cpu_s'))} | {_fmt(r.get('ratio_floor_cpu'))} | "
                     f"{_fmt(r['peak_pss_gb'])} | {_fmt(r.get('s_per_exposure'))} | "
                     f"{_fmt(r.get('t_first_start'))} | {tasks} |")
    extra = [r for r in rows if "exposures_per_hour" in r or "task_s" in r]
    for r in extra:
        if "exposures_per_hour" in r:
            lines.append(f"\nNight: {r['exposures_per_hour']:.0f} exposures per hour; scheduling "
                         f"{r['t_first_start']:.1f} s = {100 * r['sched_fraction']:.1f} % of the wall time.")
        if "task_s" in r:
            lines.append(f"\nDetrendOTA: {r['task_s']:.2f} s inside the task (median run), "
                         f"{r['wall_s']:.2f} s for the process.")
    lines += ["", "| target | limit | measured | met |", "|---|---|---|---|"]
    for t in targets:
        met = "not measured" if t["met"] is None else ("yes" if t["met"] else "**no**")
        lines.append(f"| {t['target']} | {t['limit']} | {_fmt(t['value'])} | {met} |")
    if meta.get("errors"):
        lines += ["", "Errors:"] + [f"- {e}" for e in meta["errors"]]
    return "\n".join(lines) + "\n"


def write(out_dir: Path, rows: list[dict], meta: dict) -> str:
    """Write ``bench.json`` and ``bench.md`` into ``out_dir``; return the Markdown text."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {"machine": f"{platform.node()}, {platform.processor() or platform.machine()}, "
                       f"Python {platform.python_version()}, {meta.get('machine_note', '')}", **meta}
    targets = check_targets(rows)
    (out_dir / "bench.json").write_text(json.dumps({"meta": meta, "rows": rows, "targets": targets}, indent=1,
                                                   default=str))
    text = markdown(rows, targets, meta)
    (out_dir / "bench.md").write_text(text)
    return text
