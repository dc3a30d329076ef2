"""A live count for the console: tasks and exposures done of total, the current stage, the time left.

Luigi runs tasks in forked worker processes, so the count cannot live in one process's memory. While
:func:`live_progress` is active, every task event is appended as one line to a small journal file (named
in the environment, which forked workers inherit): ``todo`` for every task the run has to make (found
before the build by the same walk as ``podiflow status``), then ``start``, ``done`` and ``failed``. A thread of the command reads the journal and prints the count: one line
rewritten in place on a terminal, else a plain line every :data:`PLAIN_INTERVAL_S` seconds; every printed
count also goes to the run log (logger ``podiflow.progress``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import luigi

__all__ = ["live_progress", "ProgressState", "read_journal", "PLAIN_INTERVAL_S"]

#: Environment variable naming the journal file of the running command.
JOURNAL_ENV = "PODIFLOW_PROGRESS_JOURNAL"
#: Seconds between plain progress lines when the console is not a terminal.
PLAIN_INTERVAL_S = 30.0
#: Seconds between updates of the in-place line on a terminal.
TTY_INTERVAL_S = 1.0
#: The task family whose completion counts an exposure as done.
EXPOSURE_FAMILY = "CollectCells"

_log = logging.getLogger("podiflow.progress")


def _journal(event: str, task) -> None:
    """Append one event of ``task`` to the journal, if a command keeps one (never fails the task)."""
    path = os.environ.get(JOURNAL_ENV)
    if not path or isinstance(task, luigi.WrapperTask):
        return
    line = f"{event} {task.task_id} {task.get_task_family()} {getattr(task, 'obsid', '') or '-'}\n"
    try:
        with open(path, "a") as fh:
            fh.write(line)
    except OSError:
        pass  # a full disk costs the progress line, not the run


@dataclass
class ProgressState:
    """What the journal says: task ids by state, exposures, the latest stage, the first start time."""

    todo: set = field(default_factory=set)
    done: set = field(default_factory=set)
    exposures: set = field(default_factory=set)
    exposures_done: set = field(default_factory=set)
    stage: str = ""

    def line(self, elapsed_s: float) -> str:
        """``podiflow: 12/40 tasks, 0/1 exposures, now DetrendOTA, about 3 min left``."""
        total, done = len(self.todo | self.done), len(self.done)
        text = f"podiflow: {done}/{total} tasks"
        if self.exposures:
            text += f", {len(self.exposures_done)}/{len(self.exposures)} exposures"
        if self.stage:
            text += f", now {self.stage}"
        if 0 < done < total:
            left_s = elapsed_s * (total - done) / done
            text += f", about {left_s / 60:.0f} min left" if left_s >= 90 else f", about {left_s:.0f} s left"
        return text


def read_journal(path: str | os.PathLike) -> ProgressState:
    """Parse a progress journal (see the module docstring)."""
    state = ProgressState()
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return state
    for line in lines:
        parts = line.split(" ")
        if len(parts) != 4:
            continue  # a line being written
        event, task_id, family, obsid = parts
        if event == "todo":
            state.todo.add(task_id)
            if family == EXPOSURE_FAMILY:
                state.exposures.add(obsid)
        elif event == "start":
            state.stage = family
        else:
            state.done.add(task_id)
            if family == EXPOSURE_FAMILY:
                state.exposures_done.add(obsid)
    return state


def _printer(path: Path, stop: threading.Event, stream, started: float) -> None:
    """Print the count until ``stop`` is set; then the last count, once."""
    tty = stream.isatty()
    interval = TTY_INTERVAL_S if tty else PLAIN_INTERVAL_S
    last = ""
    while True:
        stopping = stop.wait(interval)
        state = read_journal(path)
        text = state.line(time.monotonic() - started) if state.todo or state.done else last
        if text != last:
            stream.write(f"\r\x1b[K{text}" if tty else f"{text}\n")
            stream.flush()
            _log.info(text)
            last = text
        if stopping:
            if tty and last:
                stream.write("\n")
                stream.flush()
            return


@contextlib.contextmanager
def live_progress(journal: str | os.PathLike, roots=(), *, stream=None):
    """Keep a progress journal at ``journal`` and print the count on ``stream`` (default stdout) for the
    ``with`` block.

    Parameters
    ----------
    journal : path-like
        The journal file (removed at the end).
    roots : sequence of luigi.Task
        What the block builds: its missing tasks are the total.
    stream : file-like, optional
        Where the count goes.
    """
    from .status import needed_tasks

    journal = Path(journal)
    journal.parent.mkdir(parents=True, exist_ok=True)
    journal.write_text("")
    previous = os.environ.get(JOURNAL_ENV)
    os.environ[JOURNAL_ENV] = str(journal)
    for root in roots:
        for task in needed_tasks(root):
            if luigi.task.flatten(task.output()) and not task.complete():
                _journal("todo", task)
    stop = threading.Event()
    thread = threading.Thread(target=_printer, args=(journal, stop, stream or sys.stdout, time.monotonic()),
                              daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        if previous is None:
            os.environ.pop(JOURNAL_ENV, None)
        else:
            os.environ[JOURNAL_ENV] = previous
        journal.unlink(missing_ok=True)


@luigi.Task.event_handler(luigi.Event.START)
def _on_start(task) -> None:
    _journal("start", task)


@luigi.Task.event_handler(luigi.Event.SUCCESS)
def _on_success(task) -> None:
    _journal("done", task)


@luigi.Task.event_handler(luigi.Event.FAILURE)
def _on_failure(task, exception) -> None:
    _journal("failed", task)
