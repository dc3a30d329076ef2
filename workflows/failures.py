"""Failure records: what failed in a night run, kept on disk so the night summary can say why.

Luigi reports a failed task only to the scheduler and the log. Here every podiflow task (``PodiTask``) that
fails in a worker (an exception in ``run()``, a worker process that died, a time-out) leaves a small JSON
record in ``<work>/<night>/failures/``: task family, ``task_id``, ``obsid`` (when the task has one), error and
the end of the traceback, time. A later success of the same task removes its record. The summary reads the
records of the night (:func:`read_failures`); tasks not run because an upstream task failed leave none, so an
exposure's earliest record is its root cause.

The handlers are registered when this module is imported (``workflows`` imports it), and also print one
line per failure (the command line's progress).
"""

from __future__ import annotations

import hashlib
import json
import time
import traceback
from pathlib import Path

import luigi

from podisteps.atomic import write_text_atomic

from .base import PodiTask
from .paths import night_of, work_root

__all__ = ["failures_dir", "read_failures", "record_failure"]

#: Traceback lines kept in a record.
TRACEBACK_LINES = 12


def failures_dir(night: str) -> Path:
    """``<work>/<night>/failures/``."""
    return work_root() / night / "failures"


def _where(task) -> tuple[str | None, str | None]:
    """``(night, obsid)`` of a task: from its ``obsid`` or its ``night`` parameter; ``(None, None)`` otherwise."""
    obsid = getattr(task, "obsid", None)
    if obsid:
        return night_of(obsid), obsid
    return getattr(task, "night", None), None


def _record_path(task) -> Path | None:
    night, obsid = _where(task)
    if night is None:
        return None
    digest = hashlib.sha1(task.task_id.encode()).hexdigest()[:10]
    return failures_dir(night) / f"{task.get_task_family()}.{obsid or night}.{digest}.json"


def _label(task) -> str:
    """``DetrendOTA(ota=33)``: the family and the parameters that tell tasks of one exposure apart."""
    params = {k: v for k, v in task.to_str_params(only_significant=True).items()
              if k not in ("obsid", "night", "options")}
    return f"{task.get_task_family()}({', '.join(f'{k}={v}' for k, v in params.items())})"


def record_failure(task, error: str, trace: str = "") -> Path | None:
    """Write the failure record of ``task`` (see the module docstring); returns its path (None: no night)."""
    path = _record_path(task)
    if path is None:
        return None
    night, obsid = _where(task)
    record = {"task": _label(task), "task_id": task.task_id, "night": night, "obsid": obsid, "error": error,
              "traceback": "\n".join(trace.splitlines()[-TRACEBACK_LINES:]), "time": time.time()}
    write_text_atomic(json.dumps(record, indent=1), path)
    print(f"podiflow: {obsid or night}: FAILED {record['task']}: {error}", flush=True)
    return path


def read_failures(night: str) -> list[dict]:
    """The failure records of a night, oldest first."""
    folder = failures_dir(night)
    records = [json.loads(p.read_text()) for p in folder.glob("*.json")] if folder.is_dir() else []
    return sorted(records, key=lambda r: r["time"])


@PodiTask.event_handler(luigi.Event.FAILURE)
def _on_failure(task, exception) -> None:
    error = f"{type(exception).__name__}: {exception}".splitlines()[0]
    record_failure(task, error, "".join(traceback.format_exception(exception)))


@PodiTask.event_handler(luigi.Event.PROCESS_FAILURE)
def _on_process_failure(task, message) -> None:
    record_failure(task, str(message))


@PodiTask.event_handler(luigi.Event.TIMEOUT)
def _on_timeout(task, message) -> None:
    record_failure(task, str(message))


@PodiTask.event_handler(luigi.Event.SUCCESS)
def _on_success(task) -> None:
    path = _record_path(task)
    if path is not None:
        path.unlink(missing_ok=True)
