"""The ``podiflow`` and ``podi_collectcells`` commands."""

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
from podisteps.errors import PodiflowError

__all__ = ["podiflow_main", "collectcells_main", "collectcells"]


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
        for ota, why in e.bad_otas:
            print(f"  {'':22s} OTA{ota:02d} left out: {why}")
    for _, why in index.strays:
        print(f"  {why}")
    return 0


def _cmd_simulate(argv: list[str]) -> int:
    from podisteps.simulate.cli import main

    return main(argv)


def _cmd_status(args) -> int:
    from podisteps.nightsummary import failure_text

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
            luigi.build([task], workers=args.workers, detailed_summary=True, **where)
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


class _CollectCellsError(PodiflowError):
    """A podi_collectcells problem found before the reduction starts (message for stderr, exit code 2)."""


#: Set in the child process that runs the Luigi build of podi_collectcells.
_CHILD_ENV = "PODIFLOW_COLLECTCELLS_CHILD"
#: Exit codes of podi_collectcells (QuickReduce's returnvalue_meaning).
EXIT_OK, EXIT_TIMEOUT, EXIT_FAILED = 0, 1, 2
#: Seconds between SIGTERM and SIGKILL of a timed-out run's process group.
_KILL_GRACE_S = 3.0


#: Flags shown by ``podi_collectcells -h`` (every flag: ``podiflow options``).
COMMON_FLAGS = ("cals", "bias", "dark", "flat", "masters", "bpm", "nonlinearity", "crosstalk", "persistency",
                "fixwcs", "photcalib", "noqaplots", "fpack", "singleota", "ncpu", "timeout", "noclobber",
                "verbose")


def _cc_usage() -> str:
    """The usage text of ``podi_collectcells -h``: synopsis, exit codes and the common flags."""
    from .options import OPTIONS_BY_NAME

    lines = ["usage: podi_collectcells INPUT OUTPUT.fits [-flag[=value] ...]",
             "INPUT is an exposure folder or any one of its OTA files; OUTPUT may hold %OBSID %OBJECT %FILTER "
             "%EXPTIME %OBSSEQ %KEYWORD.", "Exit status: 0 success, 1 time-out, 2 failure.", "", "common flags:"]
    for name in COMMON_FLAGS:
        opt = OPTIONS_BY_NAME[name]
        lines.append(f"  {opt.cli_flag:16s} {opt.doc.split('. ')[0].rstrip('.')}")
    lines.append("every flag, its default and meaning: podiflow options")
    return "\n".join(lines)


def _misspelled_flags(flags: list[str]) -> None:
    """Refuse ``--flag`` (two dashes), naming the one-dash flag meant.

    Raises
    ------
    _CollectCellsError
        For the first argument starting with two dashes.
    """
    from .options import OptionError, option_for_flag

    for arg in flags:
        if arg.startswith("--") and len(arg) > 2:
            name = arg[2:].partition("=")[0]
            try:
                hint = f": did you mean {option_for_flag(name).cli_flag}?"
            except OptionError:
                hint = ""
            raise _CollectCellsError(f"{arg}: misspelled flag (podi_collectcells flags take one dash){hint}")


def _cc_options(flags: list[str]):
    """Parse podi_collectcells arguments: ``(positionals, options)``; warnings go to stderr.

    Raises
    ------
    _CollectCellsError
        For a bad or refused flag, or a bad -addfitskey.
    """
    from podisteps.mef import parse_fits_key

    from .options import OptionError, parse_collectcells_args

    _misspelled_flags(flags)
    try:
        positionals, options, warnings = parse_collectcells_args(flags)
        for item in options.addfitskey:
            parse_fits_key(item)
    except (OptionError, ValueError) as exc:
        raise _CollectCellsError(str(exc)) from None
    for w in warnings:
        print(f"podi_collectcells: warning: {w}", file=sys.stderr)
    return positionals, options


def _cc_setup(input_path: str, output: str | None, options, *, work_dir: str | None = None):
    """Find the exposure, resolve OUTPUT (name template, suffix), link the raw view and point luigi.cfg's
    ``[podiflow]`` raw and work folders at it.

    Returns
    -------
    files : podisteps.rawio.ExposureFiles
    output : pathlib.Path or None
    work : pathlib.Path
        Checkpoint folder: ``work_dir``, else ``[podiflow] work_dir`` if really configured, else
        ``podiflow-work/`` beside OUTPUT (or in the current folder without OUTPUT).
    """
    import luigi
    from astropy.io import fits

    from podisteps.outputname import format_filename, output_path
    from podisteps.atomic import remove_stale_temporaries
    from podisteps.nightindex import exposure_record
    from podisteps.rawio import RawFormatError, find_exposure_files

    from .paths import SetupError, check_reduction_config, check_writable

    from .saturation import ExposureError, check_persistency_folder

    try:
        check_persistency_folder(options.persistency)
        files = find_exposure_files(input_path)
        record = exposure_record(files)  # every OTA file's headers and layout: a bad exposure fails here, in one line
    except (ExposureError, RawFormatError, ValueError) as exc:
        raise _CollectCellsError(str(exc)) from None
    if output is not None:
        template = output if "%" not in output else format_filename(output, fits.getheader(
            files.files[record.otas[0]]))  # a good OTA file's header
        output = output_path(template, fpack=options.fpack)
    cfg = luigi.configuration.get_config()
    configured = cfg.get("podiflow", "work_dir", "").strip()
    # luigi.cfg's default "work" is relative to wherever luigi runs: podi_collectcells keeps its own
    # checkpoints beside OUTPUT unless a work folder is really configured
    default = (output.parent if output is not None else Path.cwd()) / "podiflow-work"
    work = Path(work_dir or (configured if configured not in ("", "work") else default)).resolve()
    try:  # before any work: settings, folders writable; then what killed runs left behind is removed
        check_reduction_config()
        check_writable(work, "work folder")
        if output is not None:
            check_writable(output.parent, "OUTPUT's folder")
    except SetupError as exc:
        raise _CollectCellsError(str(exc)) from None
    remove_stale_temporaries(work / _raw_view(files, work))
    cfg.set("podiflow", "raw_dir", str(work / "raw"))
    cfg.set("podiflow", "work_dir", str(work))
    if options.mastercals:  # -mastercals=DIR: a QuickReduce checkout's mastercals/ folder
        if not Path(options.mastercals).is_dir():
            raise _CollectCellsError(f"-mastercals={options.mastercals}: no such folder")
        cfg.set("podiflow", "mastercals_dir", str(Path(options.mastercals).resolve()))
    return files, output, work


def _cc_build(tasks: list, options, *, work: Path, obsid: str) -> bool:
    """Run ``tasks`` through Luigi (local scheduler, or the ``-scheduler=host:port`` luigid); True on success.

    The run holds the lock of the night's work folder (unless a central luigid coordinates), logs to
    ``<work>/logs/`` and shows the live count;
    a failed run ends with its causes and the log's path.
    """
    import time

    import luigi

    from .console import run_log
    from .paths import night_of
    from .progress import live_progress
    from .runlock import build_lease, night_lock

    where = {"local_scheduler": True}
    if options.scheduler:
        host, _, port = options.scheduler.partition(":")
        where = {"scheduler_host": host, "scheduler_port": int(port or 8082)}
    started = time.time()
    night = night_of(obsid)
    lock = contextlib.nullcontext() if options.scheduler else night_lock(
        work / night, what=f"podi_collectcells {obsid}", program="podi_collectcells")
    with lock, build_lease(work), run_log(work, "collectcells") as log:
        with live_progress(log.with_suffix(".progress"), tasks):
            result = luigi.build(tasks, workers=max(1, options.ncpu), detailed_summary=True, **where)
        ok = result.status.name == "SUCCESS" and all(t.complete() for t in tasks)
    if not ok:
        _print_cc_failures(obsid, night, since=started, log=log)
    return ok


def _print_cc_failures(obsid: str, night: str, *, since: float, log: Path) -> None:
    """The closing lines of a failed podi_collectcells run: each failure of this run, and the log's path."""
    from podisteps.nightsummary import failure_text

    from .failures import read_failures

    records = [r for r in read_failures(night) if r["time"] >= since]
    print(f"podi_collectcells: {obsid}: {len(records) or 'no'} failure(s) recorded", file=sys.stderr)
    for record in records:
        print(f"  {record['obsid'] or night}: {failure_text(record)}", file=sys.stderr)
    print(f"  full log: {log}", file=sys.stderr, flush=True)


def _cc_child(argv: list[str], work: Path, timeout: float | None) -> int:
    """Run podi_collectcells ``argv`` in a child process group; kill the whole group after ``timeout`` s
    (None: no limit).

    The child gets this process's Luigi configuration through a file in ``work``. Returns the exit code:
    the child's (0 or 2), or 1 on time-out. If this process is interrupted (Ctrl-C, SIGTERM), the group is
    killed too before the interruption goes on.
    """
    import signal
    import subprocess

    import luigi

    work.mkdir(parents=True, exist_ok=True)
    cfg_path = work / f".podi_collectcells-{os.getpid()}.cfg"
    with open(cfg_path, "w") as fh:
        luigi.configuration.get_config().write(fh)
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, _CHILD_ENV: "1", "LUIGI_CONFIG_PATH": str(cfg_path),
           "PYTHONPATH": os.pathsep.join([root] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
    code = "import sys; from workflows.cli import collectcells_main; sys.exit(collectcells_main(sys.argv[1:]))"
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(EXIT_FAILED))
    proc = subprocess.Popen([sys.executable, "-c", code, *argv], env=env, start_new_session=True)
    try:
        return EXIT_OK if proc.wait(timeout=timeout) == 0 else EXIT_FAILED
    except subprocess.TimeoutExpired:
        _stop_group(proc)
        print(f"podi_collectcells: time-out after {timeout:g} s: run stopped (process group {proc.pid} killed)",
              file=sys.stderr)
        return EXIT_TIMEOUT
    except BaseException:
        _stop_group(proc)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        cfg_path.unlink(missing_ok=True)


def _stop_group(proc) -> None:
    """SIGTERM the process group ``proc`` leads, SIGKILL it after a grace period, and wait until it is gone
    (killed workers take a moment)."""
    import signal
    import subprocess
    import time

    for sig, grace in ((signal.SIGTERM, _KILL_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)  # the child leads its own group: Luigi's workers are in it too
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    proc.wait()
    end = time.monotonic() + _KILL_GRACE_S
    while time.monotonic() < end:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)


def _mef_task(obsid: str, output: Path | None, options):
    """The CollectCells task of an exposure (writing to ``output``, or to the out tree)."""
    from .collect import CollectCells

    return CollectCells.with_options(options, obsid=obsid, output_path=str(output or ""))


def _cc_task(obsid: str, output: Path, options):
    """What podi_collectcells builds: CollectCells, or QAPlots around it (the plots beside OUTPUT)."""
    if options.noqaplots:
        return _mef_task(obsid, output, options)
    from .qa import QAPlots

    return QAPlots.with_options(options, obsid=obsid, output_path=str(output))


def collectcells(input_path: str, output: str | None = None, *, flags=(), work_dir: str | None = None):
    """QuickReduce's ``collectcells(batchmode=True)``: reduce one exposure and return its final MEF in memory.

    The checkpoints are written as usual (so a second call reuses them); the MEF is written only when
    ``output`` is given. Runs in this process, without a time-out.

    Parameters
    ----------
    input_path : str
        Exposure folder or one of its OTA files.
    output : str, optional
        Where to write the MEF as well (name template and -fpack suffix as on the command line).
    flags : sequence of str
        podi_collectcells flags, e.g. ``["-fixwcs", "-singleota=33"]``.
    work_dir : str, optional
        Checkpoint folder (default as for the command).

    Returns
    -------
    astropy.io.fits.HDUList
        The final MEF, uncompressed, with its data in memory.

    Raises
    ------
    RuntimeError
        If a flag is bad or the reduction fails.
    """
    import luigi
    from astropy.io import fits

    from podisteps.atomic import write_fits_atomic

    try:
        _, options = _cc_options(list(flags))
        files, out, work = _cc_setup(input_path, output, options, work_dir=work_dir)
    except _CollectCellsError as exc:
        raise RuntimeError(f"podi_collectcells: {exc}") from None
    task = _mef_task(files.obsid, out, options)
    if not _cc_build(list(luigi.task.flatten(task.requires())), options, work=work, obsid=files.obsid):
        raise RuntimeError(f"podi_collectcells: {files.obsid}: the reduction failed; see the messages above")
    with task.opened_inputs() as (opened, extra):
        hdul = fits.HDUList([h.copy() for h in task.build_hdulist(opened, extra)])
    if out is not None:
        write_fits_atomic(task.for_writing(hdul), out)
    return hdul


@contextlib.contextmanager
def _previous_output(output: Path):
    """Move an existing OUTPUT aside for the run (its target must be missing for the MEF to be rebuilt) and
    put it back unless the run wrote a new one: a failed or killed run never costs the old OUTPUT.

    Yields the aside path (None: there was no OUTPUT).
    """
    if not output.exists():
        yield None
        return
    aside = output.with_name(f".{output.name}.previous-{os.getpid()}")
    os.replace(output, aside)
    try:
        yield aside
    finally:
        if output.exists():
            aside.unlink()
        else:
            os.replace(aside, output)


def collectcells_main(argv: list[str] | None = None) -> int:
    """Entry point of ``podi_collectcells INPUT OUTPUT.fits [-flag[=value] ...]``.

    INPUT is an exposure folder or one of its OTA files; OUTPUT may hold ``%OBSID``-style tokens. The Luigi
    build runs in a child process group, bounded by ``-timeout`` if given (bare: 900 s). Checkpoints go to
    ``[podiflow] work_dir`` if luigi.cfg sets one, else ``podiflow-work/`` beside OUTPUT. Exit codes: 0
    success (or nothing to do with -noclobber), 1 time-out, 2 failure or bad command line.
    """

    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "-help"):
        print(_cc_usage())
        return EXIT_OK if argv else EXIT_FAILED
    child = os.environ.get(_CHILD_ENV) == "1"
    try:
        positionals, options = _cc_options(argv)
        if len(positionals) != 2:
            raise _CollectCellsError("expected INPUT and OUTPUT.fits")
        files, output, work = _cc_setup(positionals[0], positionals[1], options)
    except _CollectCellsError as exc:
        print(f"podi_collectcells: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if child:
        return EXIT_OK if _cc_build([_cc_task(files.obsid, output, options)], options, work=work,
                                    obsid=files.obsid) else EXIT_FAILED
    if output.exists() and options.noclobber:
        print(f"podi_collectcells: {output} exists and -noclobber is set: nothing to do")
        return EXIT_OK
    if not options.bgmode:
        print(f"podi_collectcells (podiflow {__version__}): {files.obsid}, {len(files.files)} OTAs -> {output}",
              flush=True)
    if options.verbose:
        changed = {k: v for k, v in vars(options).items() if v != getattr(type(options)(), k)}
        print(f"podi_collectcells: options {changed}; work folder {work}; time-out {options.timeout} s",
              flush=True)
    with _previous_output(output) as previous:
        code = _cc_child(argv, work, options.timeout)
    if code == EXIT_FAILED or (code == EXIT_OK and not output.exists()):
        kept = f"; the previous {output} is kept" if previous else ""
        print(f"podi_collectcells: {files.obsid} failed: no new output{kept}", file=sys.stderr)
        return EXIT_FAILED
    if code == EXIT_OK:
        print(f"podi_collectcells: wrote {output}")
    return code
