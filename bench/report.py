"""``bench.json`` and ``bench.md``: the measured rows, the targets of issues 24 and 23 and whether they are met."""

from __future__ import annotations

import json
import platform
from pathlib import Path

__all__ = ["TARGETS", "GIB", "check_targets", "markdown", "write"]

#: Bytes per GiB over bytes per GB: procmon reports GB (1e9 bytes), the targets are in GiB.
GIB = 2**30 / 1e9

#: Targets of issues 24 and 23: (description, limit, function of the rows giving the measured value or None).
TARGETS = [
    ("(a) one pODI exposure cold / floor, wall", 1.4, lambda rows: _get(rows, item="a", key="ratio_floor")),
    ("(b) one pODI exposure warm / floor, wall", 1.2, lambda rows: _get(rows, item="b", key="ratio_floor")),
    ("(c) pODI night end to end, s", 160.0, lambda rows: _get(rows, item="c", key="wall_s")),
    ("(d) CPU s per science exposure in (c)", 18.0, lambda rows: _get(rows, item="c", key="cpu_per_science_s")),
    ("peak memory of (a), GiB (PSS, process tree)", 1.5, lambda rows: _gib(_get(rows, item="a", key="peak_pss_gb"))),
    ("peak memory of (b), GiB", 1.5, lambda rows: _gib(_get(rows, item="b", key="peak_pss_gb"))),
    ("peak memory of (c), GiB", 1.5, lambda rows: _gib(_get(rows, item="c", key="peak_pss_gb"))),
    ("(#23) watch latency / warm single-exposure time", 1.3, lambda rows: _get(rows, item="L", key="ratio_warm")),
]


def _gib(gb):
    return None if gb is None else gb / GIB


def _get(rows, *, key, **match):
    for row in rows:
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


def _peak_lines(row: dict) -> list[str]:
    """Markdown of a row's ``peak_breakdown`` (:func:`bench.runner.peak_breakdown`): who holds the peak."""
    peak = row.get("peak_breakdown")
    if not peak:
        return []
    lines = ["", f"Peak of item {row['item']} ({row['name']}): {_gib(row['peak_pss_gb']):.2f} GiB PSS, "
                 f"{peak['at_s']:.1f} s after the start, by process:", "",
             "| pid | task | PSS GiB | RSS GiB | task running for, s |", "|---|---|---|---|---|"]
    for p in peak["processes"]:
        lines.append(f"| {p['pid']} | {p['task']} | {_fmt(_gib(p['pss_gb']), 3)} | {_fmt(_gib(p['rss_gb']), 3)} | "
                     f"{_fmt(p['running_s'], 1)} |")
    return lines


def markdown(rows: list[dict], targets: list[dict], meta: dict) -> str:
    """The Markdown report: one table of medians, one of the targets, and the run's context."""
    lines = [f"# make bench ({meta['mode']}), {meta['date']}", "",
             f"{meta['machine']}; wall time of the bench {meta['bench_wall_s'] / 60:.1f} min. "
             "Times are medians over `n` runs of a fresh process each (imports included); memory is the peak of "
             "the summed PSS of the whole process tree, GiB. `ratio` = wall time / the floor's in the same run; "
             "`CPU` = user+system CPU seconds of the whole tree and `CPU ratio` the same ratio in CPU time (the "
             "robust one on a machine shared with other jobs). Item L's time is the latency, not a process's.", "",
             "| item | configuration | n | wall s (median) | min s | ratio | CPU s | CPU ratio | peak GiB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['item']} | {r['name']} | {r['n']} | {_fmt(r['wall_s'])} | {_fmt(r['wall_min_s'])} | "
                     f"{_fmt(r.get('ratio_floor', r.get('ratio_warm')))} | {_fmt(r.get('cpu_s'))} | "
                     f"{_fmt(r.get('ratio_floor_cpu'))} | {_fmt(_gib(r.get('peak_pss_gb')))} |")
    for r in rows:
        if "cpu_per_science_s" in r:
            lines.append(f"\n(d) {r['cpu_per_science_s']:.1f} CPU s per science exposure (the whole night's CPU, "
                         f"masters included, over its {r['exposures']} science exposures).")
        if "exposures_per_hour" in r:
            lines.append(f"\nTest-instrument night: {r['exposures_per_hour']:.0f} exposures per hour; scheduling "
                         f"{r['t_first_start']:.1f} s = {100 * r['sched_fraction']:.1f} % of the wall time.")
    for r in rows:
        lines += _peak_lines(r)
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
