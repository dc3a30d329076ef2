"""The ``podiflow`` and ``podi_collectcells`` commands."""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict
from pathlib import Path

from podisteps import __version__

__all__ = ["podiflow_main", "collectcells_main"]


def _cmd_index(args) -> int:
    from podisteps.nightindex import load_night_index, scan_night

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
    return 0


def _cmd_simulate(argv: list[str]) -> int:
    from podisteps.simulate.cli import main

    return main(argv)


def _cmd_status(args) -> int:
    from .failures import read_failures
    from .night import ReduceNight
    from .status import dag_status, night_folders, scan_products, stale_products

    dag = dag_status(ReduceNight(night=args.night), read_failures(args.night))
    stale = stale_products(scan_products(night_folders(args.night)))
    print(f"night {args.night}: {len(dag['complete'])} complete, {len(dag['missing'])} missing, "
          f"{len(dag['failed'])} failed, {len(stale)} stale")
    for what in ("failed", "missing") + (("complete",) if args.verbose else ()):
        for path in dag[what]:
            print(f"  {what:8s} {path}")
    for path, reason in stale.items():
        print(f"  stale    {path}  ({reason})")
    return 1 if dag["failed"] else 0


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
    """One Luigi client per night, in turn (ARCHITECTURE section 8), then the night's summary."""
    import luigi

    from .night import ReduceNight
    from .paths import out_root, raw_root
    from .qa import NightSummary

    try:
        nights = [n for n in _nights(args.nights) if (raw_root() / n).is_dir()]
    except ValueError as exc:
        print(f"podiflow reduce: {args.nights}: {exc}", file=sys.stderr)
        return 2
    if not nights:
        print(f"podiflow reduce: no night of {args.nights} under {raw_root()}", file=sys.stderr)
        return 2
    where = ({"scheduler_host": args.scheduler_host, "scheduler_port": args.scheduler_port}
             if args.scheduler_host else {"local_scheduler": True})
    if args.scheduler_host:  # with other workers on the night, wait for their tasks rather than stop early
        luigi.configuration.get_config().set("worker", "keep_alive", "true")
    failed = []
    for night in nights:
        print(f"podiflow reduce: night {night}", flush=True)
        task = ReduceNight(night=night)
        result = luigi.build([task], workers=args.workers, detailed_summary=True, log_level=args.log_level, **where)
        # judged by the targets: with a central scheduler, tasks another worker ran count as "not granted"
        if not task.complete():
            failed.append(night)
            print(result.summary_text, flush=True)
        luigi.build([NightSummary(night=night)], workers=1, log_level=args.log_level, **where)
        print(f"podiflow reduce: night {night}: {'FAILURES, see' if night in failed else 'done,'} "
              f"{out_root() / night / 'summary.html'}", flush=True)
    return 1 if failed else 0


def podiflow_main(argv: list[str] | None = None) -> int:
    """Entry point of ``podiflow``: ``simulate``, ``index``, ``options``, ``reduce``, ``status``, ``invalidate``."""
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
    p_reduce.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p_reduce.add_argument("--scheduler-host", help="a central luigid (default: a local scheduler)")
    p_reduce.add_argument("--scheduler-port", type=int, default=8082)
    p_reduce.add_argument("--log-level", default="WARNING", help="Luigi log level (default WARNING)")
    p_status = sub.add_parser("status", help="complete, missing, failed and stale products of a night "
                                             "(paths and options from luigi.cfg)")
    p_status.add_argument("night", help="observing night YYYYMMDD")
    p_status.add_argument("-v", "--verbose", action="store_true", help="also list the complete products")
    p_inv = sub.add_parser("invalidate", help="remove products of a night and everything made from them")
    p_inv.add_argument("night", help="observing night YYYYMMDD")
    p_inv.add_argument("targets", nargs="*", help="product files to remove (with everything downstream)")
    p_inv.add_argument("--stale", action="store_true", help="remove every stale product (and downstream)")
    p_inv.add_argument("--dry-run", action="store_true", help="only list what would be removed")
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
    return _cmd_options()


def _cmd_options() -> int:
    from .options import OPTIONS

    for opt in OPTIONS:
        state = "" if opt.available else f"  [arrives with issue {opt.issue}]"
        print(f"{opt.cli_flag:20s} {opt.kind:7s} default={opt.format(opt.default) or '-':8s} {opt.doc}{state}")
    return 0


def _raw_view(files, work: Path) -> str:
    """Link the exposure's folder, and every other exposure folder beside it, into ``<work>/raw/<night>/``.

    The DAG then finds the exposure where it expects it, and its neighbours serve as persistency sources
    and calibration frames (``-masters``). Returns the night.
    """
    from podisteps.rawio import OBSID_PATTERN

    from .paths import night_of

    night = night_of(files.obsid)
    folder = work / "raw" / night
    folder.mkdir(parents=True, exist_ok=True)
    for sibling in files.directory.resolve().parent.iterdir():
        if sibling.is_dir() and re.fullmatch(OBSID_PATTERN, sibling.name) and night_of(sibling.name) == night:
            link = folder / sibling.name
            if link.is_symlink() and link.resolve() != sibling:
                link.unlink()
            if not link.exists():
                link.symlink_to(sibling, target_is_directory=True)
    return night


def collectcells_main(argv: list[str] | None = None) -> int:
    """Entry point of ``podi_collectcells INPUT OUTPUT.fits [-flag[=value] ...]``.

    INPUT is an exposure folder or one of its OTA files. Checkpoints go to ``[podiflow] work_dir`` if
    luigi.cfg sets one, else ``podiflow-work/`` beside OUTPUT. Exit codes: 0 success, 2 failure or bad
    command line.
    """
    import luigi

    from podisteps.rawio import RawFormatError, find_exposure_files

    from .base import options_param
    from .collect import CollectCells
    from .options import OptionError, parse_collectcells_args
    from .saturation import ExposureError, check_persistency_folder

    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "-help"):
        print("usage: podi_collectcells INPUT OUTPUT.fits [-flag[=value] ...]\n"
              "INPUT is an exposure folder or any one of its OTA files; `podiflow options` lists the flags.")
        return 0 if argv else 2
    try:
        positionals, options, warnings = parse_collectcells_args(argv)
    except OptionError as exc:
        print(f"podi_collectcells: {exc}", file=sys.stderr)
        return 2
    for w in warnings:
        print(f"podi_collectcells: warning: {w}", file=sys.stderr)
    if len(positionals) != 2:
        print("podi_collectcells: expected INPUT and OUTPUT.fits", file=sys.stderr)
        return 2
    try:
        check_persistency_folder(options.persistency)
    except ExposureError as exc:
        print(f"podi_collectcells: {exc}", file=sys.stderr)
        return 2
    try:
        files = find_exposure_files(positionals[0])
    except RawFormatError as exc:
        print(f"podi_collectcells: {exc}", file=sys.stderr)
        return 2
    output = Path(positionals[1]).expanduser().resolve()
    if output.name.endswith("/") or output.is_dir():
        output = output / "collectcells.fits"
    if not output.name.endswith(".fits"):
        output = output.with_name(output.name + ".fits")
    if output.exists():
        if options.noclobber:
            print(f"podi_collectcells: {output} exists and -noclobber is set: nothing to do")
            return 0
        output.unlink()  # QuickReduce replaces an existing output; checkpoints are reused either way
    cfg = luigi.configuration.get_config()
    configured = cfg.get("podiflow", "work_dir", "").strip()
    # luigi.cfg's default "work" is relative to wherever luigi runs: podi_collectcells keeps its own
    # checkpoints beside OUTPUT unless a work folder is really configured
    work = (Path(configured) if configured not in ("", "work") else output.parent / "podiflow-work").resolve()
    _raw_view(files, work)
    cfg.set("podiflow", "raw_dir", str(work / "raw"))
    cfg.set("podiflow", "work_dir", str(work))
    if options.verbose:
        print(f"podi_collectcells: {files.obsid}: {len(files.files)} OTA files; work folder {work}")
    families = ["DetrendOTA", "OTACatalog", "FixWCS", "PhotCalib", "CollectCells"]
    task = CollectCells(obsid=files.obsid, output_path=str(output), options=options_param(options, families))
    if not options.noqaplots:  # the QA plots beside OUTPUT (they require the MEF)
        from .qa import QAPlots

        task = QAPlots(obsid=files.obsid, output_path=str(output), options=options_param(options, families + ["QAPlots"]))
    result = luigi.build([task], local_scheduler=True, workers=max(1, options.ncpu), detailed_summary=True,
                         log_level="WARNING")
    if result.status.name != "SUCCESS" or not output.exists():
        print(f"podi_collectcells: {files.obsid} failed ({result.status.name}); see the messages above",
              file=sys.stderr)
        return 2
    print(f"podi_collectcells: wrote {output}")
    return 0
