"""Failure records: what failed in a night run, and why, for the console, the night summary and ``status``.

Luigi reports a failed task only to the scheduler and the log. Here every podiflow task that fails leaves a
small JSON record in ``<work>/<night>/failures/``: task label (family and distinguishing parameters, e.g.
``DetrendOTA(ota=33)``), ``task_id``, ``obsid`` (when the task has one), the error (the exception's message,
not its class path), the end of the traceback and the time. Recorded are

- exceptions in ``run()``, worker processes that died and time-outs (podiflow tasks);
- errors raised while Luigi schedules, in ``requires()`` of any task (``BROKEN_TASK``, e.g. an unknown
  FILTER);
- exposures that were not run because a task they need failed (:func:`record_blocked`): their record names
  the task that blocked them.

A later success of the same task removes its record; ``podiflow reduce`` clears a night's records before
it runs it (:func:`clear_failures`), so the summary reports the state that run produced. If the work disk
cannot take a record (full, read-only) it goes to a fallback folder under the system's temporary folder,
which :func:`read_failures` reads as well.

The console gets one line per failure (:func:`failure_line`; Luigi's retries of a task that fail the same
way add none); the night summary and ``podiflow status`` show
the same cause (:func:`podisteps.qa.nightsummary.failure_text`). The handlers are registered when this module
is imported (``workflows`` imports it).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
import traceback
from pathlib import Path

import luigi

from podisteps.errors import PodiflowError
from podisteps.io.atomic import write_text_atomic
from podisteps.qa.nightsummary import failure_text

from .base import PodiTask
from .paths import night_of, work_root

__all__ = ["NothingToDo", "failures_dir", "read_failures", "record_failure", "failure_line", "error_text", "clear_failures",
           "record_blocked"]

#: Traceback lines kept in a record.
TRACEBACK_LINES = 12

#: Built-in exceptions whose message alone says too little (``KeyError: 'x'``): their class name is kept.
_TERSE = (KeyError, IndexError, AttributeError, NameError, TypeError, ZeroDivisionError, AssertionError)


class NothingToDo(PodiflowError):
    """A wrapper task or command found no raw data to reduce: one line on the console, no failure record."""


def failures_dir(night: str) -> Path:
    """``<work>/<night>/failures/``."""
    return work_root() / night / "failures"


def _fallback_dir(night: str) -> Path:
    """Where records go when the work disk cannot take them: one folder per work root in the temporary
    folder."""
    root = hashlib.sha1(str(work_root()).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / "podiflow-failures" / root / night


def _folders(night: str) -> tuple[Path, Path]:
    return failures_dir(night), _fallback_dir(night)


def _where(task) -> tuple[str | None, str | None]:
    """``(night, obsid)`` of a task: from its ``obsid`` or its ``night`` parameter; ``(None, None)`` otherwise."""
    obsid = getattr(task, "obsid", None)
    if obsid:
        return night_of(obsid), obsid
    night = getattr(task, "night", None)
    return (night, None) if isinstance(night, str) else (None, None)


def _record_name(task) -> str | None:
    night, obsid = _where(task)
    if night is None:
        return None
    digest = hashlib.sha1(task.task_id.encode()).hexdigest()[:10]
    return f"{task.get_task_family()}.{obsid or night}.{digest}.json"


def _label(task) -> str:
    """``DetrendOTA(ota=33)``: the family and the parameters that tell tasks of one exposure apart."""
    params = {k: v for k, v in task.to_str_params(only_significant=True).items()
              if k not in ("obsid", "night", "options", "output_path")}
    family = getattr(task, "step_family", None) or task.get_task_family()  # OTACatalog detrending: DetrendOTA
    return f"{family}({', '.join(f'{k}={v}' for k, v in params.items())})" if params else family


def error_text(exception: BaseException) -> str:
    """The first line of an exception's message (its class name too for terse built-in errors)."""
    message = str(exception).strip().splitlines()[0] if str(exception).strip() else ""
    if not message or isinstance(exception, _TERSE):
        return f"{type(exception).__name__}: {message}".rstrip(": ")
    return message


def failure_line(record: dict) -> str:
    """The console line of a failure record: ``podiflow: FAILED <obsid or night>: <task>: <error>``."""
    return f"podiflow: FAILED {record.get('obsid') or record.get('night')}: {failure_text(record)}"


def _write(record: dict, name: str) -> Path | None:
    """Write a record to the night's failure folder, else to the fallback folder; None if neither takes it."""
    for folder in _folders(record["night"]):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            return write_text_atomic(json.dumps(record, indent=1), folder / name)
        except OSError:
            continue
    return None


def record_failure(task, error: str, trace: str = "", *, echo: bool = True, blocked: bool = False) -> Path | None:
    """Record the failure of ``task`` (see the module docstring) and print its line (``echo``); ``blocked``:
    the task was not run because another failed.

    Returns
    -------
    pathlib.Path or None
        The record (None: the task belongs to no night, or no folder could take it).
    """
    name = _record_name(task)
    if name is None:
        return None
    night, obsid = _where(task)
    record = {"task": _label(task), "task_id": task.task_id, "night": night, "obsid": obsid, "error": error,
              "traceback": "\n".join(trace.splitlines()[-TRACEBACK_LINES:]), "time": time.time(),
              "kind": "blocked" if blocked else "failed"}
    if echo and not _recorded(record, name):  # a retry that fails the same way is not news
        print(failure_line(record), flush=True)
    return _write(record, name)


def _recorded(record: dict, name: str) -> bool:
    """Whether the same failure (task and error) is on record already."""
    for folder in _folders(record["night"]):
        try:
            if json.loads((folder / name).read_text())["error"] == record["error"]:
                return True
        except (OSError, ValueError, KeyError):
            continue
    return False


def read_failures(night: str) -> list[dict]:
    """The failure records of a night (work disk and fallback folder), oldest first; unreadable ones skipped."""
    records = {}
    for folder in _folders(night):
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if record["task_id"] not in records or records[record["task_id"]]["time"] < record["time"]:
                records[record["task_id"]] = record
    return sorted(records.values(), key=lambda r: r["time"])


def clear_failures(night: str) -> None:
    """Remove every failure record of a night (before a run that will record its own)."""
    for folder in _folders(night):
        for path in folder.glob("*.json") if folder.is_dir() else ():
            path.unlink(missing_ok=True)


def _blocker(task, failed: dict, errors: list) -> dict | None:
    """The first failure record among the tasks ``task`` needs (its own included), walking its DAG;
    ``(task, exception)`` of every scheduling error met on the way is appended to ``errors``."""
    from .status import needed_tasks

    return next((failed[t.task_id] for t in needed_tasks(task, errors) if t.task_id in failed), None)


def record_blocked(tasks) -> int:
    """Give every exposure wrapper of ``tasks`` that did not finish and has no failure record of its own one
    naming the failed task that blocked it (``not run: blocked by <obsid>: <task>: <error>``); a task whose
    ``requires()`` or ``complete()`` raises on the way gets its own record (Luigi gave it none).

    Parameters
    ----------
    tasks : sequence of luigi.Task
        ``ReduceExposure``-like tasks (with an ``obsid``), after a build.

    Returns
    -------
    int
        The number of records written.
    """
    count = 0
    by_night: dict = {}
    for task in tasks:
        night, obsid = _where(task)
        if night is None or task.complete():
            continue
        if night not in by_night:
            by_night[night] = read_failures(night)
        records = by_night[night]
        if any(r["obsid"] == obsid for r in records):
            continue
        errors: list = []
        blocker = _blocker(task, {r["task_id"]: r for r in records}, errors)
        if blocker is None and errors:  # Luigi met it in a completeness check, which carries no message
            broken, exc = errors[0]
            record_failure(broken, f"cannot be scheduled: {error_text(exc)}",
                           "".join(traceback.format_exception(exc)))
            blocker = {"task": _label(broken), "obsid": _where(broken)[1], "night": night,
                       "error": f"cannot be scheduled: {error_text(exc)}"}
            if blocker["obsid"] == obsid:
                count += 1
                continue
        error = ("not run: blocked by "
                 f"{blocker['obsid'] or blocker['night']}: {failure_text(blocker)}" if blocker else "not run")
        record_failure(task, error, echo=False, blocked=True)
        count += 1
    return count


@PodiTask.event_handler(luigi.Event.FAILURE)
def _on_failure(task, exception) -> None:
    record_failure(task, error_text(exception), "".join(traceback.format_exception(exception)))


@luigi.Task.event_handler(luigi.Event.BROKEN_TASK)
def _on_broken(task, exception) -> None:
    if isinstance(exception, NothingToDo):
        print(f"podiflow: {exception}", flush=True)
        return
    record_failure(task, f"cannot be scheduled: {error_text(exception)}",
                   "".join(traceback.format_exception(exception)))


@PodiTask.event_handler(luigi.Event.PROCESS_FAILURE)
@PodiTask.event_handler(luigi.Event.TIMEOUT)
def _on_process_end(task, message) -> None:
    record_failure(task, (str(message).strip().splitlines() or ["worker process ended"])[0], str(message))


@PodiTask.event_handler(luigi.Event.SUCCESS)
def _on_success(task) -> None:
    name = _record_name(task)
    if name is not None:
        for folder in _folders(_where(task)[0]):
            (folder / name).unlink(missing_ok=True)
