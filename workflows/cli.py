"""The ``podiflow`` command (``podi_collectcells`` is :mod:`workflows.collectcells`)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
from dataclasses import asdict
from pathlib import Path

from podisteps import __version__

from .collectcells import collectcells, collectcells_main  # both commands' entry points in one place

__all__ = ["podiflow_main", "collectcells_main", "collectcells"]


def _cmd_index(args) -> int:
    from podisteps.io.nightindex import load_night_index, scan_night

    night_dir = Path(args.night_dir)
    if not night_dir.is_dir():
        print(f"podiflow index: {night_dir}: no such night folder", file=sys.stderr)
        return 2
    index = load_night_index(night_dir, args.cache) if args.cache else scan_night(night_dir)
    if args.json:
        print(json.dumps([asdict(e) for e in index.exposures], indent=1))
        return 0
    print(f"night {index.night}: {len(index.exposures)} exposures, {len(index.failed)} unreadable")
    for e in index.exposures:
        if e.error:
            print(f"  {e.obsid:22s} ERROR {e.error}")
        else:
            print(f"  {e.obsid:22s} {e.obstype:7s} {e.filter:8s} bin{e.binning} {e.exptime:7.1f}s "
                  f"MJD {e.mjd:.5f} {len(e.otas):2d} OTAs{' fz' if e.fz else ''}  {e.object}")
        for ota, why in e.bad_otas:
            print(f"  {'':22s} OTA{ota:02d} left out: {why}")
    for _, why in index.strays:
        print(f"  {why}")
    return 0


def _cmd_simulate(argv: list[str]) -> int:
    from podisteps.simulate.cli import main

    return main(argv)


def _cmd_status(args) -> int:
    from podisteps.qa.nightsummary import failure_text

    from .failures import NothingToDo, read_failures
    from .night import ReduceNight, science_exposures
    from .status import dag_status, night_folders, scan_products, stale_products

    try:
        science_exposures(args.night)
    except NothingToDo as exc:
        print(f"podiflow status: {exc}", file=sys.stderr)
        return 2
    failures = read_failures(args.night)
    dag = dag_status(ReduceNight(night=args.night), failures)
    stale = stale_products(scan_products(night_folders(args.night)))
    print(f"night {args.night}: {len(dag['complete'])} complete, {len(dag['superseded'])} superseded, "
          f"{len(dag['missing'])} missing, {len(dag['failed'])} failed, {len(stale)} stale")
    for what in ("failed", "superseded", "missing") + (("complete",) if args.verbose else ()):
        for path in dag[what]:
            print(f"  {what:8s} {path}")
    for f in dag["other_failures"]:
        print(f"  {'not run' if f.get('kind') == 'blocked' else 'failed':8s} {f['obsid'] or f['night']}: "
              f"{failure_text(f)}")
    for path, reason in stale.items():
        print(f"  stale    {path}  ({reason})")
    return 1 if failures else 0


def _cmd_invalidate(args) -> int:
    from .status import invalidate, night_folders, scan_products, stale_products

    products = scan_products(night_folders(args.night))
    roots = [str(Path(t).resolve()) for t in args.targets]
    unknown = [t for t in roots if t not in products]
    if unknown:
        print(f"podiflow invalidate: not podiflow products of night {args.night}: {', '.join(unknown)}",
              file=sys.stderr)
        return 2
    if args.stale:
        roots += list(stale_products(products))
    if args.superseded:
        from .night import ReduceNight
        from .status import dag_status

        roots += [str(Path(p).resolve()) for p in dag_status(ReduceNight(night=args.night), [])["superseded"]]
    removed = invalidate(products, roots, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for path in removed:
        print(f"  {verb} {path}")
    print(f"podiflow invalidate: {verb} {len(removed)} product(s) of night {args.night}")
    return 0


def _nights(spec: str) -> list[str]:
    """``YYYYMMDD``, a comma list of them, or a Luigi date interval (``2013-10-04-2013-10-06``, end exclusive)."""
    import luigi

    if re.fullmatch(r"\d{8}(,\d{8})*", spec):
        return spec.split(",")
    return [d.strftime("%Y%m%d") for d in luigi.DateIntervalParameter().parse(spec).dates()]


def _cmd_reduce(args) -> int:
    """One Luigi client per night, in turn (docs/architecture.md, 'The DAG'), then the night's summary.

    Exit code: 0 when every night was reduced, 1 when anything failed, 2 when there was nothing to do or the
    set-up is wrong.
    """
    from .failures import NothingToDo
    from .night import science_exposures
    from .paths import SetupError, preflight, raw_root

    try:
        nights = _nights(args.nights)
    except ValueError as exc:
        print(f"podiflow reduce: {args.nights}: {exc}", file=sys.stderr)
        return 2
    try:  # the set-up first: a typo in luigi.cfg is worth knowing before anything else
        preflight([night for night in nights if (raw_root() / night).is_dir()])
    except SetupError as exc:
        print(f"podiflow reduce: {exc}", file=sys.stderr)
        return 2
    todo = []
    for night in nights:
        try:
            todo.append((night, science_exposures(night)))
        except NothingToDo as exc:
            if len(nights) == 1:
                print(f"podiflow reduce: {exc}", file=sys.stderr)
    if not todo:
        if len(nights) > 1:
            print(f"podiflow reduce: no night of {args.nights} has science exposures under {raw_root()}: "
                  "nothing to do", file=sys.stderr)
        return 2
    if args.scheduler_host:  # with other workers on the night, wait for their tasks rather than stop early
        import luigi

        luigi.configuration.get_config().set("worker", "keep_alive", "true")
    ok = [_reduce_night(night, len(science), args) for night, science in todo]
    return 0 if all(ok) else 1


def _reduce_night(night: str, n_science: int, args) -> bool:
    """Reduce one night under its lock (none with a central scheduler), with the run log and the live count;
    write and print its summary.

    Returns True if every science exposure was reduced.
    """
    import luigi

    from .console import run_log
    from .failures import clear_failures, read_failures, record_blocked
    from .launch import build
    from .night import ReduceNight
    from .paths import night_index, work_root
    from .progress import live_progress
    from .runlock import build_lease, night_lock

    where = ({"scheduler_host": args.scheduler_host, "scheduler_port": args.scheduler_port}
             if args.scheduler_host else {"local_scheduler": True})
    print(f"podiflow reduce: night {night}: {n_science} science exposures, {args.workers} workers", flush=True)
    # with a central scheduler, luigid coordinates the workers of a night: no lock
    lock = contextlib.nullcontext() if args.scheduler_host else night_lock(work_root() / night,
                                                                          what=f"podiflow reduce {night}")
    with lock, build_lease(work_root()), run_log(work_root(), f"reduce-{night}", level=args.log_level) as log:
        clear_failures(night)  # this run reports what it produced, not what an earlier one left
        task = ReduceNight(night=night)
        with live_progress(log.with_suffix(".progress"), [task]):
            build([task], workers=args.workers, detailed_summary=True, **where)
        # judged by the targets: with a central scheduler, tasks another worker ran count as "not granted"
        done = task.complete()
        if not done:
            record_blocked(luigi.task.flatten(task.requires()))
        done = done and not read_failures(night)  # an old product does not make a failed run a success
        done = done and not night_index(night).failed  # unreadable raw data: listed in the summary below
        _print_night_summary(night, log)
    return done


def _print_night_summary(night: str, log: Path) -> None:
    """Write the night summary (always afresh) and print it on one screen: counts, every failure, paths."""
    from astropy.table import Table

    from .qa import NightSummary

    summary = NightSummary(night=night)
    try:
        summary.run()
    except OSError as exc:
        print(f"podiflow reduce: night {night}: cannot write the summary: {exc}; full log: {log}", flush=True)
        return
    table = Table.read(summary.output()["ecsv"].path, format="ascii.ecsv")
    science = table[table["status"] != "calibration"]
    counts = {s: int((science["status"] == s).sum()) for s in ("reduced", "failed", "not run")}
    print(f"podiflow reduce: night {night}: " + ", ".join(f"{n} {s}" for s, n in counts.items()), flush=True)
    for row in science[science["status"] != "reduced"]:
        print(f"  {row['status']:7s} {row['obsid']}: {row['error'] or 'no reason recorded'}")
    print(f"  summary: {summary.output()['html'].path}\n  full log: {log}", flush=True)


def podiflow_main(argv: list[str] | None = None) -> int:
    """Entry point of ``podiflow``: ``simulate``, ``index``, ``options``, ``reduce``, ``status``, ``invalidate``,
    ``watch``."""
    from . import watch

    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="podiflow", description="podiflow: the WIYN ODI reduction pipeline as a Luigi DAG."
    )
    parser.add_argument("--version", action="version", version=f"podiflow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("simulate", help="simulate a night of raw ODI data (see `podiflow simulate -h`)",
                   add_help=False)
    p_index = sub.add_parser("index", help="list the exposures of a raw night folder")
    p_index.add_argument("night_dir", help="<raw>/<night> folder")
    p_index.add_argument("--cache", help="JSON cache file to use and refresh")
    p_index.add_argument("--json", action="store_true", help="print the records as JSON")
    sub.add_parser("options", help="list every reduction option with its default and meaning")
    p_reduce = sub.add_parser("reduce", help="reduce nights (paths and options from luigi.cfg), then write each "
                                             "night's summary")
    p_reduce.add_argument("nights", help="YYYYMMDD, a comma list, or an interval 2013-10-04-2013-10-06 "
                                         "(end exclusive)")
    p_reduce.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                          help="worker processes (default: the number of cores)")
    p_reduce.add_argument("--scheduler-host", help="a central luigid (default: a local scheduler)")
    p_reduce.add_argument("--scheduler-port", type=int, default=8082)
    p_reduce.add_argument("--log-level", default="INFO", help="level of the run log under <work>/logs/ "
                                                              "(default INFO; the console gets no Luigi logging)")
    p_status = sub.add_parser("status", help="complete, missing, failed and stale products of a night "
                                             "(paths and options from luigi.cfg)")
    p_status.add_argument("night", help="observing night YYYYMMDD")
    p_status.add_argument("-v", "--verbose", action="store_true", help="also list the complete products")
    p_inv = sub.add_parser("invalidate", help="remove products of a night and everything made from them")
    p_inv.add_argument("night", help="observing night YYYYMMDD")
    p_inv.add_argument("targets", nargs="*", help="product files to remove (with everything downstream)")
    p_inv.add_argument("--stale", action="store_true", help="remove every stale product (and downstream)")
    p_inv.add_argument("--superseded", action="store_true",
                       help="remove every superseded product: one made from other inputs or options (and downstream)")
    p_inv.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    watch.add_parser(sub)
    if argv and argv[0] == "simulate":
        return _cmd_simulate(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "index":
        return _cmd_index(args)
    if args.command == "reduce":
        return _cmd_reduce(args)
    if args.command == "status":
        return _cmd_status(args)
    if args.command == "invalidate":
        return _cmd_invalidate(args)
    if args.command == "watch":
        return watch.main(args)
    return _cmd_options()


def _cmd_options() -> int:
    from .options import OPTIONS

    for opt in OPTIONS:
        state = "" if opt.available else f"  [arrives with issue {opt.issue}]"
        print(f"{opt.cli_flag:20s} {opt.kind:7s} default={opt.format(opt.default) or '-':8s} {opt.doc}{state}")
    return 0
