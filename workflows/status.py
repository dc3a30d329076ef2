"""What a night's products are: complete, missing, failed, stale (``podiflow status``), and removing
products with everything downstream of them (``podiflow invalidate``). docs/architecture.md, 'Identity and on-disk
layout'.

Two views are combined:

- **the DAG** of ``ReduceNight(night)`` with the current ``[reduction]`` options: every task's target is
  *complete* (it exists) or *missing*; failure records (:mod:`workflows.failures`) say which *failed*;
- **the files**: every podiflow product under ``<work>/<night>/`` and ``<out>/<night>/`` records its inputs
  (``PFINnnn`` = role:path, ``PFSUMnnn`` = SHA-1; :func:`workflows.base.provenance_cards`). A product is
  *stale* when an input it read has changed in place since (newer than the product and a different
  checksum), has gone, or is itself stale. Checksums are computed only for inputs newer than the product,
  so a status of an unchanged night costs one header read and a few stats per product.

A changed external input (a master flat replaced in place) also changes the identity of every task that
reads it (the file's size and mtime are part of it): the next run builds new products beside the stale
ones. ``invalidate --stale`` removes the stale ones so that nothing made from the old input stays around.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import luigi
from astropy.io import fits

from podisteps.qa.nightsummary import failure_text

from .base import file_checksum
from .paths import out_root, work_root

__all__ = ["Product", "scan_products", "stale_products", "downstream", "dag_status", "invalidate", "needed_tasks"]

#: File name endings of podiflow products.
PRODUCT_SUFFIXES = (".fits", ".fits.fz", ".json")


@dataclass(frozen=True)
class Product:
    """A product file and the inputs its provenance records.

    Attributes
    ----------
    path : str
        Absolute path.
    task : str
        Task family that wrote it (``PFTASK``).
    inputs : tuple
        ``(role, absolute path, SHA-1)`` per input.
    mtime_ns : int
        Modification time of the product, ns.
    """

    path: str
    task: str
    inputs: tuple = field(default=())
    mtime_ns: int = 0


def _provenance_from_header(header) -> tuple[str, tuple] | None:
    if "PFTASK" not in header:
        return None
    inputs = []
    n = 1
    while f"PFIN{n:03d}" in header:
        role, _, path = str(header[f"PFIN{n:03d}"]).partition(":")
        inputs.append((role, path, str(header.get(f"PFSUM{n:03d}", ""))))
        n += 1
    return str(header["PFTASK"]), tuple(inputs)


def read_provenance(path: str | os.PathLike) -> tuple[str, tuple] | None:
    """``(task family, inputs)`` recorded in a product (FITS primary header, or a JSON ``provenance`` key).

    Returns None for files that are not podiflow products (or cannot be read).
    """
    path = str(path)
    try:
        if path.endswith(".json"):
            cards = json.loads(Path(path).read_text()).get("provenance")
            return _provenance_from_header(dict(cards)) if cards else None
        return _provenance_from_header(fits.getheader(path, 0))
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def scan_products(folders) -> dict:
    """Every podiflow product under ``folders`` (recursively): ``path -> Product``.

    Temporary files of atomic writes (``.tmp-``) and symbolic links (the ``bias_bin1.fits``-style names in
    ``cals/``) are skipped.
    """
    found = {}
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for root, _, names in os.walk(folder):
            for name in names:
                joined = os.path.join(root, name)
                if not name.endswith(PRODUCT_SUFFIXES) or ".tmp-" in name or os.path.islink(joined):
                    continue
                path = os.path.realpath(joined)
                prov = read_provenance(path)
                if prov is not None:
                    found[path] = Product(path, prov[0], prov[1], os.stat(path).st_mtime_ns)
    return found


def stale_products(products: dict) -> dict:
    """``path -> reason`` of the stale products among ``products`` (see the module docstring)."""

    @functools.lru_cache(maxsize=None)
    def reason(path: str) -> str:
        product = products[path]
        for role, source, checksum in product.inputs:
            if source in products and reason(source):
                return f"input {role} {source} is stale"
            try:
                st = os.stat(source)
            except OSError:
                continue  # pruned (calibration-frame intermediates) or moved: nothing changed in place
            if st.st_mtime_ns > product.mtime_ns and checksum and file_checksum(source) != checksum:
                return f"input {role} {source} changed since the product was made"
        return ""

    return {p: r for p in sorted(products) if (r := reason(p))}


def downstream(products: dict, roots) -> set:
    """The products in ``roots`` and every product that read any of them, directly or not."""
    readers: dict = {}
    for product in products.values():
        for _, source, _ in product.inputs:
            readers.setdefault(source, set()).add(product.path)
    out, todo = set(), [str(Path(r).resolve()) for r in roots]
    while todo:
        path = todo.pop()
        if path in out:
            continue
        out.add(path)
        todo.extend(readers.get(path, ()))
    return out


def needed_tasks(root: luigi.Task, errors: list | None = None) -> list:
    """The tasks of the DAG under ``root`` that a run would look at (each once).

    As in a Luigi run, the requirements of a complete task are not needed (so pruned calibration-frame
    intermediates under a finished master are not "missing"); a task whose ``requires()`` raises counts
    without its requirements, and ``(task, exception)`` is appended to ``errors`` if given.
    """
    seen, order, todo = set(), [], [root]
    while todo:
        task = todo.pop()
        if task.task_id in seen:
            continue
        seen.add(task.task_id)
        order.append(task)
        try:
            if not luigi.task.flatten(task.output()) or not task.complete():
                todo.extend(luigi.task.flatten(task.requires()))
        except Exception as exc:  # noqa: BLE001  (reported by the caller; the rest of the DAG still counts)
            if errors is not None:
                errors.append((task, exc))
    return order


def dag_status(root: luigi.Task, failures: list) -> dict:
    """``{"complete": [...], "superseded": [...], "missing": [...], "failed": [...]}`` of the targets of the DAG
    under ``root``.

    *Superseded* targets exist but are not complete: made from other inputs or options than the current ones
    (a final MEF made with a master borrowed from another night), or older than what they were made from (QA
    plots of a rebuilt MEF); the next run rebuilds them. Wrapper tasks (no output) are left out; a missing
    target with a failure record is listed as failed (with the error) instead of missing. ``"other_failures"``
    holds every failure record not listed so (wrapper tasks, blocked exposures, tasks whose ``requires()``
    failed).
    """
    failed_ids = {f["task_id"]: f for f in failures}
    out = {"complete": [], "superseded": [], "missing": [], "failed": [], "other_failures": []}
    listed = set()
    for task in needed_tasks(root):
        targets = luigi.task.flatten(task.output())
        if not targets:
            continue
        path = getattr(targets[0], "path", str(targets[0]))
        if all(t.exists() for t in targets):
            out["complete" if task.complete() else "superseded"].append(path)
        elif task.task_id in failed_ids:
            out["failed"].append(f"{path}  ({failure_text(failed_ids[task.task_id])})")
            listed.add(task.task_id)
        else:
            out["missing"].append(path)
    out["other_failures"] = [f for f in failures if f["task_id"] not in listed]
    return out


def night_folders(night: str) -> list:
    """The folders holding a night's products: ``<work>/<night>`` and ``<out>/<night>``."""
    return [work_root() / night, out_root() / night]


def invalidate(products: dict, roots, *, dry_run: bool = False) -> list:
    """Remove ``roots`` and everything downstream of them; return the removed (or, dry run, the) paths."""
    doomed = sorted(p for p in downstream(products, roots) if os.path.exists(p))
    if not dry_run:
        for path in doomed:
            os.unlink(path)
    return doomed
