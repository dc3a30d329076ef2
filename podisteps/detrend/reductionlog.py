"""The reduction log of one product: the ``_BIAS``-style cards, the ``CC-`` HISTORY lines and the files read.

Every step of the per-OTA detrending ends in one of three states, written as a card of the OTA header
(``_BIAS = 'successful'``, see ``docs/architecture.md``, "The reduction log"):

``successful``
    the step was applied;
``not selected``
    the options did not ask for it;
``missing data``
    it was asked for but its calibration file was not there (a fallback, warned once).

The files a step read are kept by role (``raw``, ``bias``, ``persistency`` ...); a task writes them as its
provenance (``PFINnnn = 'role:path'``) and the final MEF turns them into its ``ASSOCIATIONS`` table, so the
roles are declared here, in the order the files are read.
"""

from __future__ import annotations

from astropy.io import fits

__all__ = ["REDUCTION_LOG_KEYS", "ROLES", "ReductionLog", "APPLIED", "NOT_SELECTED", "MISSING"]

#: Step -> reduction-log keyword, in the order the cards are written.
REDUCTION_LOG_KEYS = {
    "overscan": "_OVERSCN", "crosstalk": "_XTALK", "gain": "_GAIN", "trimcell": "_TRIMCEL",
    "nonlinearity": "_NONLIN", "bias": "_BIAS", "dark": "_DARK", "flat": "_FLAT", "illumcorr": "_ILLUMCR",
    "bpm": "_BADPXLS", "persistency": "_PERSIST", "saturation": "_SATURAT", "wcs": "_WCSDIST",
    "cosmics": "_COSMICS", "techdata": "_TECHDAT", "photflat": "_FOTFLAT",
}

#: Roles of the files a detrended OTA was made from, in the order they are read (``saturation``: the
#: earlier exposures' saturation catalogues of the DAG; ``persistency``: catalogues from a ``-persistency``
#: folder).
ROLES = ("raw", "crosstalk", "nonlinearity", "bias", "dark", "flat", "illumcorr", "techdata", "bpm",
         "persistency", "photflat", "wcs", "saturation")

APPLIED, NOT_SELECTED, MISSING = "successful", "not selected", "missing data"


class ReductionLog:
    """What each step did to one OTA, and which files it read.

    Parameters
    ----------
    header : astropy.io.fits.Header
        The OTA header the ``CC-`` HISTORY lines and, by :meth:`write_cards`, the log cards go into.
    missing : iterable of str, optional
        Steps asked for whose file is not there: logged ``missing data`` unless they are applied later.
    """

    def __init__(self, header: fits.Header, *, missing=()):
        self.header = header
        self.status = dict.fromkeys(REDUCTION_LOG_KEYS, NOT_SELECTED)
        self.status.update(dict.fromkeys(missing, MISSING))
        self._files: dict = {}

    def applied(self, step: str, source=None, *, history: bool = False) -> None:
        """Record ``step`` as applied; ``source`` (a path, or a list of paths) is the file it read.

        With ``history`` a HISTORY line ``CC-<STEP>: <source>`` goes into the header (QuickReduce's record of
        the master calibrations used).
        """
        self.status[step] = APPLIED
        if source is not None:
            self.read(step, source)
        if history:
            self.header["HISTORY"] = f"CC-{step.upper()}: {source}"

    def missing(self, step: str) -> None:
        """Record ``step`` as asked for but without its file."""
        self.status[step] = MISSING

    def read(self, role: str, source) -> None:
        """Record a file (or a list of files) read in ``role`` (one of :data:`ROLES`)."""
        if role not in ROLES:
            raise ValueError(f"reduction log: unknown file role {role!r} (known: {', '.join(ROLES)})")
        self._files[role] = source

    def files(self) -> dict:
        """``role -> path or list of paths`` of every file read, in :data:`ROLES` order (empty lists left out)."""
        return {role: self._files[role] for role in ROLES if role in self._files and self._files[role] != []}

    def write_cards(self) -> None:
        """Write one ``_KEY = state`` card per step into the header, in :data:`REDUCTION_LOG_KEYS` order."""
        for step, key in REDUCTION_LOG_KEYS.items():
            self.header[key] = (self.status[step], f"reduction log: {step}")
