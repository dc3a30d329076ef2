"""The bench's inputs: simulated nights (cached), raw views, ``.fz`` copies and Luigi configurations.

Simulated nights are cached under the data folder as ``<name>-<n_science>-<hash>/`` (the hash covers the
spec text and the podiflow version), so repeated ``make bench`` runs do not simulate again; everything a
run writes goes into its own run folder, removed at the end.
"""

from __future__ import annotations

import configparser
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

from podisteps import __version__
from podisteps.io.nightindex import scan_night

from .nights import night_spec

__all__ = ["REPO", "PODIFLOW", "python_env", "simulate", "exposures", "raw_view", "write_config"]

#: The repository root (the folder holding bench/).
REPO = Path(__file__).resolve().parent.parent

#: ``python -c`` code running the ``podiflow`` command with the arguments after it.
PODIFLOW = "import sys; from workflows.cli import podiflow_main; sys.exit(podiflow_main(sys.argv[1:]))"


def python_env(config: Path | None = None) -> dict:
    """Environment for the bench's subprocesses: the repository on ``PYTHONPATH``, ``config`` as Luigi's."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    if config is not None:
        env["LUIGI_CONFIG_PATH"] = str(config)
    return env


def simulate(name: str, n_science: int, data_dir: Path, *, log=print) -> tuple[Path, float]:
    """Simulate bench night ``name`` into the cache unless it is there; return (its folder, seconds spent).

    Parameters
    ----------
    name : str
        A key of ``bench.nights.NIGHTS``.
    n_science : int
        Science exposures.
    data_dir : Path
        The cache folder.
    log : callable
        Progress messages.
    """
    spec = night_spec(name, n_science)
    key = hashlib.sha1(f"{spec}{__version__}".encode()).hexdigest()[:10]
    root = Path(data_dir) / f"{name}-{n_science}-{key}"
    if (root / ".complete").exists():
        return root, 0.0
    root.mkdir(parents=True, exist_ok=True)
    (root / "spec.toml").write_text(spec)
    log(f"bench: simulating {name} ({n_science} science exposures) into {root}")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", PODIFLOW, "simulate", str(root / "spec.toml"), str(root)],
                   env=python_env(), check=True, stdout=subprocess.DEVNULL)
    (root / ".complete").write_text("")
    return root, time.perf_counter() - t0


def exposures(root: Path, obstype: str) -> list:
    """Night-index records of the ``obstype`` exposures of the (only) night under ``root/raw``, in time order."""
    (night_dir,) = sorted((Path(root) / "raw").iterdir())
    return sorted(scan_night(night_dir).select(obstype=obstype), key=lambda e: e.mjd)


def raw_view(records, dest: Path) -> Path:
    """A raw tree ``dest/<night>/<obsid>`` of links to the given exposures only; returns ``dest``.

    A science-only view keeps the calibration frames out of the persistency window of the first science
    exposure, so one exposure's reduction is only that exposure's work.
    """
    for rec in records:
        folder = Path(rec.path).parent if Path(rec.path).is_file() else Path(rec.path)
        link = Path(dest) / folder.parent.name / folder.name
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(folder.resolve(), target_is_directory=True)
    return Path(dest)


def write_config(path: Path, *, raw: Path, work: Path, out: Path, root: Path, reduction: dict | None = None,
                 workers_memory_gb: int | None = None) -> Path:
    """Write a Luigi configuration: the repository's ``luigi.cfg`` with the bench's folders and options.

    Parameters
    ----------
    path : Path
        File to write.
    raw, work, out : Path
        ``[podiflow] raw_dir``, ``work_dir``, ``out_dir``.
    root : Path
        Simulated night folder: its ``mastercals/`` and ``refcat/refcat.fits`` are used.
    reduction : dict, optional
        ``[reduction]`` options (text values).
    workers_memory_gb : int, optional
        Overrides ``[resources] memory_gb``.
    """
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(REPO / "luigi.cfg")
    cfg["podiflow"].update({"raw_dir": str(raw), "work_dir": str(work), "out_dir": str(out),
                            "mastercals_dir": str(Path(root) / "mastercals"),
                            "refcat": str(Path(root) / "refcat" / "refcat.fits")})
    cfg["reduction"] = dict(reduction or {})
    if workers_memory_gb is not None:
        cfg["resources"]["memory_gb"] = str(workers_memory_gb)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        cfg.write(fh)
    return path
