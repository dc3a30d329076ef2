"""What podiflow's commands print, and the run log that takes everything else.

A reduction run by ``podiflow reduce`` or ``podi_collectcells`` prints only podiflow's own lines: one line
per failed task (:mod:`workflows.failures`), the progress (:mod:`workflows.progress`) and a closing summary.
Luigi's logging, tracebacks included, goes to a log file under the work folder,
``<work>/logs/<command>-<UTC time>-<pid>.log`` (:func:`run_log`); if that folder cannot be written (a full
or read-only disk) the log goes to the system's temporary folder instead, and the summary says where.

The ``luigi`` command (``luigi --module workflows ...``) configures its own logging; when it imports
``workflows``, :func:`quiet_luigi_command` takes that over the same way: tracebacks to
``<work>/logs/luigi-....log``, and on the console only podiflow's failure lines and Luigi's execution
summary, followed by the log's path.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import os
import tempfile
import time
from pathlib import Path

import luigi

__all__ = ["run_log", "LOGGERS", "quiet_luigi_command"]

#: Loggers whose records go to the run log and not to the console.
LOGGERS = ("luigi-interface", "luigi", "podiflow")

_FORMAT = "%(asctime)s %(name)s[%(process)d] %(levelname)s: %(message)s"


def _log_handler(work: Path, command: str) -> logging.FileHandler:
    """A file handler on ``<work>/logs/<command>-<time>-<pid>.log``, else on the same name in the temporary
    folder."""
    name = f"{command}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}.log"
    for folder in (work / "logs", Path(tempfile.gettempdir()) / "podiflow-logs"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(folder / name, delay=False)
        except OSError:
            continue
        handler.setFormatter(logging.Formatter(_FORMAT))
        return handler
    raise OSError(f"{work / 'logs'}: cannot write the run log there nor in {tempfile.gettempdir()}")


@contextlib.contextmanager
def run_log(work: str | os.PathLike, command: str, *, level: str = "INFO"):
    """Send Luigi's logging to a run log file, and none of it to the console, for the ``with`` block.

    Parameters
    ----------
    work : path-like
        The work folder; the log goes to its ``logs/`` folder.
    command : str
        Start of the log file's name (``reduce``, ``collectcells``).
    level : str
        Lowest level logged (a :mod:`logging` level name).

    Yields
    ------
    pathlib.Path
        The log file.
    """
    cfg = luigi.configuration.get_config()
    saved_cfg = cfg.get("core", "no_configure_logging", None)
    cfg.set("core", "no_configure_logging", "true")  # luigi.build must not add its console handler
    handler = _log_handler(Path(work), command)
    saved = {}
    for name in LOGGERS:
        logger = logging.getLogger(name)
        saved[name] = (logger.handlers[:], logger.level, logger.propagate)
        logger.handlers = [handler, _warnings_to_console()] if name == "podiflow" else [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
    try:
        yield Path(handler.baseFilename)
    finally:
        for name, (handlers, level, propagate) in saved.items():
            logger = logging.getLogger(name)
            logger.handlers, logger.propagate = handlers, propagate
            logger.setLevel(level)
        handler.close()
        if saved_cfg is None:
            cfg.remove_option("core", "no_configure_logging")
        else:
            cfg.set("core", "no_configure_logging", saved_cfg)


def _warnings_to_console() -> logging.Handler:
    """podiflow's own warnings (a step skipped for want of a calibration, an input ignored) on the console
    too, one line each: the user must see what was not applied."""
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.WARNING)
    console.setFormatter(logging.Formatter("podiflow: warning: %(message)s"))
    return console


class _SummaryOnly(logging.Filter):
    """Pass Luigi's execution summary (with the run log's path appended), nothing else."""

    def __init__(self, log: str):
        super().__init__()
        self.log = log

    def filter(self, record: logging.LogRecord) -> bool:
        if "Luigi Execution Summary" not in record.getMessage():
            return False
        record.msg, record.args = f"{record.getMessage()}\nfull log: {self.log}", None
        return True


def quiet_luigi_command() -> Path | None:
    """Under the ``luigi`` command, send Luigi's logging to a run log and only its summary to the console.

    Does nothing in any other program (``podiflow`` and tests set up their own, see :func:`run_log`).
    Returns the log file (None: not the ``luigi`` command).
    """
    import sys

    from .paths import work_root

    if "luigi.cmdline" not in sys.modules or luigi.configuration.get_config().getboolean(
            "core", "no_configure_logging", False):
        return None
    luigi.configuration.get_config().set("core", "no_configure_logging", "true")
    handler = _log_handler(work_root(), "luigi")
    console = logging.StreamHandler()
    console.addFilter(_SummaryOnly(handler.baseFilename))
    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = [handler, console]
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return Path(handler.baseFilename)
