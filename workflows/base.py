"""The shared base of podiflow's Luigi tasks: target identity, atomic outputs, provenance, progress.

Target identity (docs/architecture.md, 'Identity and on-disk layout'): a product's file name carries ``<id>``, a short
hash of

- the task family and its significant parameters (including the reduction options that shape it),
- the ids of the upstream products it reads,
- for files from outside the DAG (raw frames, ``-cals`` files, mastercals): path, size and mtime.

So reducing with different options gives different products side by side, and a replaced input gives
a new id downstream; ``complete()`` stays a stat. Computing an id never reads a file's content.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import re
from functools import cached_property, lru_cache
from pathlib import Path

import luigi
import xxhash
from astropy.io import fits
from luigi.parameter import ParameterVisibility

from podisteps import __version__
from podisteps.io.atomic import TornFileError, check_checkpoint, write_fits_atomic, write_text_atomic
from podisteps.io.rawio import OTA_FILE_RE

from .options import OPTIONS, ReductionOptions
from .paths import work_root

__all__ = [
    "PodiTask",
    "FitsTarget",
    "CheckpointTarget",
    "fingerprint",
    "file_checksum",
    "cached_checksum",
    "input_identity",
    "provenance_cards",
    "options_variant",
    "variant_record",
    "options_param",
    "ID_LENGTH",
]

#: Hex digits of the identity hash in file names.
ID_LENGTH = 10


def fingerprint(path: str | os.PathLike) -> list:
    """Return ``[absolute path, size, mtime_ns]`` of a file from outside the DAG (one stat)."""
    p = Path(path).resolve()
    st = p.stat()
    return [str(p), st.st_size, st.st_mtime_ns]


#: Map every page of a window at once (Linux) instead of one page fault per page.
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)


def file_checksum(path: str | os.PathLike, *, window: int = 1 << 25) -> str:
    """Return the XXH3-128 hex digest of a file's content (for provenance and identity).

    XXH3 reads several GB/s, ten times SHA-1 here, and inputs are gigabytes per exposure; it guards against
    changed files, not against tampering. The file is hashed through read-only memory maps of ``window`` bytes
    (32 MiB; populated when mapped, unmapped after each): no copy into a buffer, about half the CPU of reading it
    (872 MB master in the page cache: 0.19-0.22 -> 0.11-0.12 CPU-s; a 35 MB raw OTA file 11.5 -> 6.3 ms), the
    same digest. A file truncated while it is hashed ends the process with SIGBUS instead of a short digest.
    """
    h = xxhash.xxh3_128()
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        for offset in range(0, size, window):
            with mmap.mmap(fh.fileno(), min(window, size - offset), offset=offset, prot=mmap.PROT_READ,
                           flags=mmap.MAP_SHARED | _POPULATE) as view:
                h.update(view)
    return h.hexdigest()


#: Digests already looked up in this process, by file state.
_DIGESTS: dict = {}

#: A whole XXH3-128 hex digest (32 hex digits).
DIGEST_RE = re.compile(r"[0-9a-f]{32}")


def cached_checksum(path: str | os.PathLike) -> str:
    """:func:`file_checksum` remembered per file state (path, size, mtime) in ``<work>/.checksums/``.

    A master MEF read by every OTA of every exposure is hashed once, not once per task. The cache is a file
    per input state, written atomically; a changed or touched file has another state and is hashed again.
    It is only a cache, so it is written without fsync: an entry a machine crash cut short is not a digest
    (:data:`DIGEST_RE`) and is made again.
    """
    state = tuple(fingerprint(path))
    digest = _DIGESTS.get(state)
    if digest is not None:
        return digest
    key = hashlib.sha1(json.dumps(state).encode()).hexdigest()
    entry = work_root() / ".checksums" / key[:2] / f"{key}.xxh3"
    try:
        digest = entry.read_text().strip()
    except OSError:
        digest = ""
    if not DIGEST_RE.fullmatch(digest):
        digest = file_checksum(path)
        entry.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(digest, entry, durable=False)
    _DIGESTS[state] = digest
    return digest


def input_identity(path: str | os.PathLike) -> list:
    """What of an external input enters a product's identity.

    Raw OTA frames are immutable once written: their fingerprint (path, size, mtime) stands for them and
    costs one stat. Every other input (mastercals, ``-cals`` masters, templates, reference catalogues) counts
    by its content, so a touched or re-copied file with the same bytes changes no identity.
    """
    if OTA_FILE_RE.match(Path(path).name):
        return fingerprint(path)
    return ["content", cached_checksum(path)]


def provenance_cards(task: "PodiTask", inputs: dict) -> list:
    """Header cards recording how a product was made.

    Parameters
    ----------
    task : PodiTask
        The task writing the product.
    inputs : dict
        ``role -> path or list of paths`` of every file read (upstream products and external files).

    Returns
    -------
    list of tuple
        ``(keyword, value, comment)``: ``PFVERS``, ``PFTASK``, ``PFID``, ``PFPARAMS`` (JSON), and per
        input ``PFINnnn`` (role:path) with ``PFSUMnnn`` (XXH3-128, :func:`file_checksum`). No time stamp:
        a product rebuilt from the same inputs is byte-identical (the file's mtime says when it was written).
    """
    cards = [
        ("PFVERS", __version__, "podiflow version"),
        ("PFTASK", task.get_task_family(), "podiflow task family"),
        ("PFID", task.identity, "podiflow product identity"),
        ("PFPARAMS", json.dumps(_recorded_params(task), sort_keys=True), ""),
    ]
    n = 0
    for role, paths in inputs.items():
        for path in paths if isinstance(paths, (list, tuple)) else [paths]:
            n += 1
            cards.append((f"PFIN{n:03d}", f"{role}:{Path(path).resolve()}", ""))
            cards.append((f"PFSUM{n:03d}", cached_checksum(path), "XXH3-128 of PFIN"))
    return cards


def _recorded_params(task: "PodiTask") -> dict:
    """The parameters ``PFPARAMS`` records: all but the hidden insignificant ones, which name no property of the
    product (e.g. which task makes an upstream file: ``workflows.focalplane`` ``catalogs``)."""
    unrecorded = {name for name, p in task.get_params()
                  if not p.significant and p.visibility == ParameterVisibility.HIDDEN}
    return {k: v for k, v in task.to_str_params().items() if k not in unrecorded}


class FitsTarget(luigi.LocalTarget):
    """A FITS product written atomically (temporary name keeping the suffix, then rename) and durably (fsync)."""

    #: fsync before and after the rename (:func:`podisteps.io.atomic.atomic_path`).
    durable = True

    def write_hdulist(self, hdulist: fits.HDUList) -> None:
        """Write ``hdulist`` to the target atomically."""
        write_fits_atomic(hdulist, self.path, durable=self.durable)


class CheckpointTarget(FitsTarget):
    """An intermediate checkpoint (a detrended or corrected OTA, a catalogue): atomic, not fsynced.

    A machine crash can cost a rerun of it, never a wrong product: a copy cut short is recognised when a task
    reads it (:meth:`PodiTask.input`, :func:`podisteps.io.atomic.check_checkpoint`), removed, and made again by the
    next run (docs/integrity.md, 'Durability').
    """

    durable = False

    def check_whole(self) -> None:
        """Raise :class:`podisteps.io.atomic.TornFileError` (after removing the file) if it was cut short.

        A file state (path, size, mtime) found whole is remembered in this process: a task reading its inputs
        several times, or many tasks reading one checkpoint, walk its headers once.
        """
        state = tuple(fingerprint(self.path))
        if state in _WHOLE:
            return
        try:
            check_checkpoint(self.path)
        except TornFileError as exc:
            Path(self.path).unlink(missing_ok=True)
            raise TornFileError(f"{exc}; removed: the next run makes it again") from None
        _WHOLE.add(state)


#: File states (:func:`fingerprint`) of checkpoints found whole in this process.
_WHOLE: set = set()


def options_param(options: ReductionOptions, families) -> dict:
    """Return the text form of the options that shape any of ``families`` (a task's ``options`` value)."""
    wanted = set(families)
    return {
        o.name: o.format(getattr(options, o.name))
        for o in OPTIONS
        if wanted.intersection(o.shapes)
    }


def options_variant(options) -> str:
    """Short id (6 hex digits) of an ``options`` mapping, ``"default"`` for an empty one (see
    :attr:`PodiTask.variant`)."""
    if not options:
        return "default"
    blob = json.dumps(dict(options), sort_keys=True).encode()
    return hashlib.sha1(blob).hexdigest()[:6]


#: ``get_params()`` per task class.
_PARAMS: dict = {}


@lru_cache(maxsize=512)
def _parsed_options(options) -> ReductionOptions:
    """``ReductionOptions`` of a task's frozen ``options`` mapping (hashable; the result is immutable)."""
    return ReductionOptions.from_mapping(dict(options))


class PodiTask(luigi.Task):
    """Base of every podiflow task.

    Subclasses set ``stage`` (output folder name) and implement ``external_inputs()`` (files from
    outside the DAG that the product depends on) and ``run()``. ``identity`` and ``progress()`` are
    provided.
    """

    stage = "task"

    #: Options that shape this product, in text form (see :func:`options_param`). Hidden from the web UI,
    #: the execution summary and the logs, which show the short :attr:`variant` instead; Luigi's task_id
    #: hashes only public parameters, so :meth:`to_str_params` adds ``variant`` to them.
    options = luigi.DictParameter(default={}, significant=True, visibility=ParameterVisibility.HIDDEN)

    #: Task families whose reduction options shape this task's products (:meth:`options_for`); empty: the
    #: task's own family.
    option_families: tuple = ()

    #: Peak memory of one run of this task, GB (Luigi resource ``memory_gb``).
    memory_gb = 0

    @property
    def resources(self) -> dict:
        """``{"memory_gb": N}`` when luigi.cfg has a ``[resources] memory_gb`` pool, else nothing.

        Luigi treats an unconfigured resource as a pool of 1, which would never grant a task needing 2.
        """
        pool = luigi.configuration.get_config().getint("resources", "memory_gb", 0)
        return {"memory_gb": min(self.memory_gb, pool)} if pool and self.memory_gb else {}

    @classmethod
    def options_for(cls, options: ReductionOptions) -> dict:
        """This task's ``options`` value for a full set of reduction options (those of :attr:`option_families`)."""
        return options_param(options, cls.option_families or (cls.get_task_family(),))

    @classmethod
    def with_options(cls, options: ReductionOptions, **params) -> "PodiTask":
        """The task with ``params`` and the part of ``options`` that shapes it (:meth:`options_for`)."""
        return cls(options=cls.options_for(options), **params)

    @property
    def reduction_options(self) -> ReductionOptions:
        """The parsed reduction options of this task (defaults for options it does not carry)."""
        return _parsed_options(self.options)

    @classmethod
    def get_params(cls):
        """Luigi's parameter list, computed once per class (Luigi scans ``dir(cls)`` on every
        instantiation: a night's scheduling creates ~10^4 task objects)."""
        params = _PARAMS.get(cls)
        if params is None:
            params = _PARAMS[cls] = super().get_params()
        return list(params)

    @cached_property
    def variant(self) -> str:
        """Short id of this task's options (``"default"`` without any): one id per set of options."""
        return options_variant(self.options)

    def to_str_params(self, only_significant=False, only_public=False) -> dict:
        """Luigi's parameter text; the public view (task_id, web UI) carries ``variant`` for ``options``."""
        params = super().to_str_params(only_significant=only_significant, only_public=only_public)
        if only_public:
            params["variant"] = self.variant
        return params

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in self.to_str_params(only_significant=True, only_public=True).items())
        return f"{self.get_task_family()}({shown})"

    def external_inputs(self) -> list:
        """Files from outside the DAG this product depends on (raw frames, external calibrations)."""
        return []

    def input(self):
        """Luigi's targets of :meth:`requires`, each :class:`CheckpointTarget` among them checked to be whole
        (its headers only: about a millisecond a file)."""
        targets = super().input()
        for target in luigi.task.flatten(targets):
            if isinstance(target, CheckpointTarget):
                target.check_whole()
        return targets

    def reads(self) -> list:
        """The upstream tasks whose products this task reads (their identities enter :attr:`identity`): those of
        :meth:`requires`; a task that runs an upstream step itself names that step's task instead."""
        return [t for t in luigi.task.flatten(self.requires()) if isinstance(t, PodiTask)]

    def identity_for(self, reader: "PodiTask") -> str:
        """The identity of the product of this task that ``reader`` reads: :attr:`identity`; a task that writes
        two products says which one."""
        return self.identity

    @cached_property
    def identity(self) -> str:
        """Short hash of family, parameters, upstream identities and external inputs (:func:`input_identity`)."""
        upstream = sorted(t.identity_for(self) for t in self.reads())
        payload = {
            "family": self.get_task_family(),
            "params": self.to_str_params(only_significant=True),
            "upstream": upstream,
            "external": [input_identity(p) for p in self.external_inputs()],
        }
        blob = json.dumps(payload, sort_keys=True).encode()
        return hashlib.sha1(blob).hexdigest()[:ID_LENGTH]

    def add_provenance(self, header: fits.Header, inputs: dict) -> None:
        """Write this task's provenance cards (:func:`provenance_cards`) into ``header`` (a product's primary).

        Parameters
        ----------
        header : astropy.io.fits.Header
            Changed in place.
        inputs : dict
            ``role -> path or list of paths`` of every file read.
        """
        for key, value, comment in provenance_cards(self, inputs):
            header[key] = (value, comment)

    def progress(self, percent: float, message: str) -> None:
        """Report progress to the scheduler's web UI (no-op outside a worker, e.g. in unit tests)."""
        if self.set_progress_percentage is not None:
            self.set_progress_percentage(int(percent))
        if self.set_status_message is not None:
            self.set_status_message(message)


def variant_record(variant: str) -> Path:
    """``<work>/variants/<variant>.json``: the full options of one :attr:`PodiTask.variant`."""
    return work_root() / "variants" / f"{variant}.json"


@PodiTask.event_handler(luigi.Event.SUCCESS)
def _record_variant(task: PodiTask) -> None:
    """Record a successful task's options once per variant, so ``variant=3f2a9c`` can be looked up."""
    path = variant_record(task.variant)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(json.dumps(dict(task.options), indent=1, sort_keys=True) + "\n", path)
