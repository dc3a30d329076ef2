"""The ``podi_collectcells`` command: one exposure, QuickReduce's flags, through the DAG."""

from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path

from podisteps import __version__
from podisteps.errors import PodiflowError

__all__ = ["collectcells_main", "collectcells"]


def _raw_view(files, work: Path) -> str:
    """Link the exposure's folder, and every other exposure folder beside it, into ``<work>/raw/<night>/``.

    The DAG then finds the exposure where it expects it, and its neighbours serve as persistency sources
    and calibration frames (``-masters``). Returns the night.
    """
    from podisteps.io.rawio import OBSID_PATTERN

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
    from podisteps.io.mef import parse_fits_key

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
    files : podisteps.io.rawio.ExposureFiles
    output : pathlib.Path or None
    work : pathlib.Path
        Checkpoint folder: ``work_dir``, else ``[podiflow] work_dir`` if really configured, else
        ``podiflow-work/`` beside OUTPUT (or in the current folder without OUTPUT).
    """
    import luigi
    from astropy.io import fits

    from podisteps.io.atomic import remove_stale_temporaries
    from podisteps.io.nightindex import exposure_record
    from podisteps.io.outputname import format_filename, output_path
    from podisteps.io.rawio import RawFormatError, find_exposure_files

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

    from .console import run_log
    from .launch import build
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
            result = build(tasks, workers=max(1, options.ncpu), detailed_summary=True, **where)
        ok = result.status.name == "SUCCESS" and all(t.complete() for t in tasks)
    if not ok:
        _print_cc_failures(obsid, night, since=started, log=log)
    return ok


def _print_cc_failures(obsid: str, night: str, *, since: float, log: Path) -> None:
    """The closing lines of a failed podi_collectcells run: each failure of this run, and the log's path."""
    from podisteps.qa.nightsummary import failure_text

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
    code = "import sys; from workflows.collectcells import collectcells_main; sys.exit(collectcells_main(sys.argv[1:]))"
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

    from podisteps.io.atomic import write_fits_atomic

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
