"""``podiflow watch NIGHT``: reduce each exposure of an observing night as it lands.

The telescope writes an exposure as one folder of OTA files, one file after the other, each in pieces. An
exposure is *complete* when the folder holds a file for every OTA its focal plane has at its MJD and no file
has changed (name, size, modification time) for a settling time; only then is any of it read (one primary
header, for the MJD). A complete exposure is linked into a view of the raw night under
``<work>/watch/raw/<night>/``, and the watcher's Luigi builds read raw data only through that view: a file
still being written is never opened by a task. A folder whose files have settled but stay incomplete or
unreadable (a truncated transfer) is reported once and skipped until it changes again.

Each complete science exposure is reduced through the same DAG as ``podiflow reduce`` (``ReduceExposure``:
persistency from the exposures before it, masters from the night's calibration frames, or from the nearest
night within ``-calwindow`` while the night's own sequence is incomplete), one line is printed per
exposure, and the night summary is rewritten. The watcher stops when the stop file appears, on Ctrl-C, or
(``--idle-exit``) after a quiet spell; atomic writes leave nothing half-written, and a new start resumes.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from podisteps import instrument
from podisteps.io.rawio import OTA_FILE_RE, RawFormatError, read_primary_header

__all__ = ["ArrivalTracker", "Arrival", "WatchSettings", "watch_night", "SUMMARY_REFRESH_S"]

#: While watching, the night summary page reloads itself this often, seconds.
SUMMARY_REFRESH_S = 30


@dataclass(frozen=True)
class Arrival:
    """One exposure folder whose files have settled.

    Attributes
    ----------
    folder : pathlib.Path
        The exposure folder in the raw night.
    obstype : str
        ``OBSTYPE`` of its primary header (``OBJECT``, ``BIAS``, ...); empty when ``problem`` is set.
    problem : str
        Why the settled folder cannot be used (missing OTAs, an unreadable file); empty when complete.
    """

    folder: Path
    obstype: str = ""
    problem: str = ""


def _state(folder: Path) -> tuple:
    """``(name, size, mtime_ns)`` of every raw OTA file in ``folder``, sorted (one stat per file)."""
    entries = []
    for name in sorted(os.listdir(folder)):
        if OTA_FILE_RE.match(name):
            st = os.stat(folder / name)
            entries.append((name, st.st_size, st.st_mtime_ns))
    return tuple(entries)


def _judge(folder: Path, state: tuple) -> Arrival:
    """Check a settled folder: every OTA of its focal plane present, each file a whole number of FITS blocks."""
    for name, size, _ in state:
        if size == 0 or size % 2880:
            return Arrival(folder, problem=f"{folder / name}: truncated ({size} bytes, not a whole number of "
                                           "2880-byte FITS blocks)")
    try:
        header = read_primary_header(folder / state[0][0])
        mjd = float(header["MJD-OBS"])
    except (RawFormatError, KeyError, ValueError, TypeError) as exc:
        return Arrival(folder, problem=f"{folder / state[0][0]}: {exc}")
    expected = instrument.layout_for_mjd(mjd).otas_at(mjd)
    present = {int(OTA_FILE_RE.match(name)["ota"]) for name, _, _ in state}
    missing = sorted(set(expected) - present)
    if missing:
        return Arrival(folder, problem=f"{folder}: {len(missing)} OTA file(s) missing "
                                       f"({', '.join(f'{o:02d}' for o in missing[:5])}{' ...' if len(missing) > 5 else ''})")
    return Arrival(folder, obstype=str(header.get("OBSTYPE", "")).strip().upper())


@dataclass
class ArrivalTracker:
    """Follows the exposure folders of one raw night folder and reports each once it has settled.

    Parameters
    ----------
    night_dir : pathlib.Path
        ``<raw>/<night>/``.
    settle : float
        Seconds a folder's files must stay unchanged before the folder is judged.
    clock : callable
        Monotonic clock in seconds (injected by tests).
    """

    night_dir: Path
    settle: float
    clock: callable = time.monotonic
    _seen: dict = field(default_factory=dict)
    _judged: dict = field(default_factory=dict)

    def poll(self) -> list[Arrival]:
        """Folders that settled since the last call (complete ones, or with their problem), oldest name first."""
        now, arrivals = self.clock(), []
        names = sorted(os.listdir(self.night_dir)) if self.night_dir.is_dir() else []
        for name in names:
            folder = self.night_dir / name
            if not folder.is_dir():
                continue
            state = _state(folder)
            if not state or self._judged.get(name) == state:
                continue
            previous = self._seen.get(name)
            if previous is None or previous[0] != state:
                self._seen[name] = (state, now)
                continue
            if now - previous[1] >= self.settle:
                self._judged[name] = state
                arrivals.append(_judge(folder, state))
        return arrivals


@dataclass(frozen=True)
class WatchSettings:
    """How ``podiflow watch`` runs.

    Attributes
    ----------
    workers : int
        Luigi worker processes per build.
    settle : float
        Seconds an exposure's files must stay unchanged before it is complete.
    poll : float
        Seconds between two looks at the raw folder.
    idle_exit : float or None
        Stop after this many seconds without a new exposure and with nothing left to reduce (None: never).
    stop_file : pathlib.Path or None
        Stop when this file exists (checked between builds).
    scheduler : dict
        Luigi ``build`` keywords choosing the scheduler (``local_scheduler`` or ``scheduler_host``/``_port``).
    """

    workers: int = 1
    settle: float = 10.0
    poll: float = 2.0
    idle_exit: float | None = None
    stop_file: Path | None = None
    scheduler: dict = field(default_factory=lambda: {"local_scheduler": True})


def _link(folder: Path, view: Path) -> None:
    """Link one complete exposure folder into the raw view (idempotent)."""
    link = view / folder.name
    if not link.is_symlink():
        view.mkdir(parents=True, exist_ok=True)
        link.symlink_to(folder.resolve(), target_is_directory=True)


def _reduce(obsids: list[str], night: str, settings: WatchSettings, say) -> None:
    """Reduce the newly complete science exposures, then rewrite the night summary; one line per exposure."""
    import luigi

    from podisteps.qa.nightsummary import progress_line

    from .launch import build
    from .night import ReduceExposure
    from .paths import work_root
    from .qa import NightSummary, exposure_records
    from .runlock import build_lease

    for obsid in obsids:
        with build_lease(work_root()):  # a reduce run meanwhile keeps the intermediates this build may need
            build([ReduceExposure(obsid=obsid)], workers=settings.workers, log_level="ERROR",
                        **settings.scheduler)
        for record in exposure_records(night, {obsid})[0]:
            say(progress_line(record))
    luigi.build([NightSummary(night=night, refresh_s=SUMMARY_REFRESH_S)], workers=1, log_level="ERROR",
                **settings.scheduler)


def watch_night(night: str, settings: WatchSettings, *, say=print) -> int:
    """Watch ``<raw>/<night>/`` and reduce each exposure as it completes; return the exit status.

    Parameters
    ----------
    night : str
        ``YYYYMMDD``.
    settings : WatchSettings
    say : callable
        Receives each console line.

    Returns
    -------
    int
        0 after a stop (stop file, idle exit); 130 after Ctrl-C.
    """
    import luigi

    from .paths import raw_root, work_root

    source = raw_root() / night
    view_root = work_root() / "watch" / "raw"
    _link_other_nights(raw_root(), view_root, night)
    tracker = ArrivalTracker(source, settings.settle)
    config = luigi.configuration.get_config()
    configured_raw = config.get("podiflow", "raw_dir", "raw")
    config.set("podiflow", "raw_dir", str(view_root))
    luigi.task_register.Register.clear_instance_cache()
    say(f"podiflow watch: night {night}: watching {source} (settle {settings.settle:g} s); "
        f"stop with Ctrl-C or {settings.stop_file or 'a stop file'}")
    try:
        return _watch_loop(night, tracker, view_root, settings, say)
    finally:
        config.set("podiflow", "raw_dir", configured_raw)
        luigi.task_register.Register.clear_instance_cache()


def _link_other_nights(raw: Path, view_root: Path, night: str) -> None:
    """Link every other night of the raw root into the view: masters may be borrowed from them."""
    view_root.mkdir(parents=True, exist_ok=True)
    for other in raw.iterdir() if raw.is_dir() else ():
        link = view_root / other.name
        if other.name != night and other.is_dir() and not link.is_symlink():
            link.symlink_to(other.resolve(), target_is_directory=True)


def _drop_gone(view: Path, say) -> None:
    """Remove the view's links to exposure folders that are gone (deleted or moved since they were linked),
    with one line each. The night index already leaves such links out (`podisteps.io.nightindex.night_signature`); this tells
    the observer and keeps the view tidy."""
    for link in view.iterdir() if view.is_dir() else ():
        if link.is_symlink() and not link.exists():
            link.unlink(missing_ok=True)
            say(f"podiflow watch: {link.name}: its folder is no longer in the raw night: left out")


def _watch_loop(night: str, tracker: ArrivalTracker, view_root: Path, settings: WatchSettings, say) -> int:
    """Poll, link and reduce until stopped (see :func:`watch_night`)."""
    last_news = time.monotonic()
    try:
        while not (settings.stop_file and settings.stop_file.exists()):
            _drop_gone(view_root / night, say)
            arrivals = tracker.poll()
            science = []
            for arrival in arrivals:
                if arrival.problem:
                    say(f"podiflow watch: skipped {arrival.folder.name}: {arrival.problem}")
                    continue
                _link(arrival.folder, view_root / night)
                if arrival.obstype == "OBJECT":
                    science.append(arrival.folder.name)
            if arrivals:
                last_news = time.monotonic()
            if science:
                _reduce(science, night, settings, say)
            elif settings.idle_exit is not None and time.monotonic() - last_news >= settings.idle_exit:
                say(f"podiflow watch: night {night}: nothing new for {settings.idle_exit:g} s: stopped")
                return 0
            time.sleep(settings.poll)
    except KeyboardInterrupt:
        say(f"podiflow watch: night {night}: interrupted; a new start resumes where this one stopped")
        return 130
    say(f"podiflow watch: night {night}: stop file {settings.stop_file} found: stopped")
    return 0


def add_parser(sub) -> None:
    """Add ``watch`` to the ``podiflow`` sub-commands."""
    p = sub.add_parser("watch", help="reduce each exposure of a night as it lands (paths and options from "
                                     "luigi.cfg)")
    p.add_argument("night", help="observing night YYYYMMDD (its raw folder may not exist yet)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes (default: cores)")
    p.add_argument("--settle", type=float, default=10.0,
                   help="seconds an exposure's files must stay unchanged before it is read (default 10)")
    p.add_argument("--poll", type=float, default=2.0, help="seconds between looks at the raw folder (default 2)")
    p.add_argument("--stop-file", type=Path, help="stop when this file appears (default <work>/<night>/STOP)")
    p.add_argument("--idle-exit", type=float, help="stop after this many seconds with nothing new")
    p.add_argument("--scheduler-host", help="a central luigid (default: a local scheduler)")
    p.add_argument("--scheduler-port", type=int, default=8082)


def main(args) -> int:
    """Run ``podiflow watch`` from parsed arguments; return the exit status."""
    from .paths import work_root

    scheduler = ({"scheduler_host": args.scheduler_host, "scheduler_port": args.scheduler_port}
                 if args.scheduler_host else {"local_scheduler": True})
    settings = WatchSettings(workers=args.workers, settle=args.settle, poll=args.poll, idle_exit=args.idle_exit,
                             stop_file=args.stop_file or work_root() / args.night / "STOP", scheduler=scheduler)
    return watch_night(args.night, settings, say=lambda line: print(line, flush=True))
