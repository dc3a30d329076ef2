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


def podiflow_main(argv: list[str] | None = None) -> int:
    """Entry point of ``podiflow``: ``simulate``, ``index``, ``options``."""
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
    if argv and argv[0] == "simulate":
        return _cmd_simulate(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "index":
        return _cmd_index(args)
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
    result = luigi.build([task], local_scheduler=True, workers=max(1, options.ncpu), detailed_summary=True,
                         log_level="WARNING")
    if result.status.name != "SUCCESS" or not output.exists():
        print(f"podi_collectcells: {files.obsid} failed ({result.status.name}); see the messages above",
              file=sys.stderr)
        return 2
    print(f"podi_collectcells: wrote {output}")
    return 0
