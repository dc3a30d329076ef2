"""Calibration selection: which master a science exposure uses (after LCO BANZAI's rules).

A master qualifies when its kind, filter (flats), binning and gain method match the exposure and it was
combined from at least ``min_frames`` frames. Among qualifying masters, the exposure's own night wins;
otherwise the nearest night inside ``validity_days`` (earlier nights win ties). When nothing qualifies the
error lists the criteria and the nearest candidates with the reason each was rejected.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from ..errors import PodiflowError

__all__ = ["MasterCandidate", "NoCalibrationError", "select_master", "night_distance"]


@dataclass(frozen=True)
class MasterCandidate:
    """A master calibration available for selection.

    Attributes
    ----------
    night : str
        ``YYYYMMDD`` of the frames it was made from.
    kind : str
        ``bias``, ``dark``, ``dflat`` or ``tflat``.
    binning : int
    filter : str
        Filter (flats), else ``""``.
    gain_method : str
        ``GAINMTHD`` of the master (``none`` if no gain correction was applied).
    ncombine : int
        Number of frames combined.
    path : str
        Where it is (or will be) written.
    """

    night: str
    kind: str
    binning: int
    filter: str = ""
    gain_method: str = "none"
    ncombine: int = 0
    path: str = ""


class NoCalibrationError(PodiflowError, LookupError):
    """No master fits an exposure; the message gives the criteria and the rejected candidates."""


def night_distance(a: str, b: str) -> int:
    """Nights from ``a`` to ``b`` (``YYYYMMDD``; positive when ``b`` is later)."""
    da = date(int(a[:4]), int(a[4:6]), int(a[6:8]))
    db = date(int(b[:4]), int(b[4:6]), int(b[6:8]))
    return (db - da).days


def _rejection(c: MasterCandidate, *, night, kinds, binning, filtername, gain_method, validity_days,
               min_frames) -> str:
    """Why ``c`` does not qualify ("" if it does)."""
    if c.kind not in kinds:
        return f"kind {c.kind}"
    if c.binning != binning:
        return f"binning {c.binning}"
    if filtername and c.filter != filtername:
        return f"filter {c.filter or '(none)'}"
    if c.gain_method != gain_method:
        return f"gain method {c.gain_method}"
    if c.ncombine < min_frames:
        return f"only {c.ncombine} frame(s)"
    if abs(night_distance(night, c.night)) > validity_days:
        return f"{abs(night_distance(night, c.night))} nights away"
    return ""


def select_master(
    candidates,
    *,
    night: str,
    kinds: tuple[str, ...],
    binning: int,
    filtername: str = "",
    gain_method: str = "none",
    validity_days: int = 0,
    min_frames: int = 2,
) -> MasterCandidate:
    """Choose the master an exposure of ``night`` uses.

    Parameters
    ----------
    candidates : iterable of MasterCandidate
        The masters available (any nights, kinds).
    night : str
        The exposure's observing night ``YYYYMMDD``.
    kinds : tuple of str
        Acceptable kinds in order of preference, e.g. ``("tflat", "dflat")``.
    binning : int
    filtername : str, optional
        Required filter ("" for bias and dark).
    gain_method : str, optional
        Required ``GAINMTHD``.
    validity_days : int, optional
        Largest distance in nights to another night's master (0 = own night only).
    min_frames : int, optional
        Fewest combined frames.

    Returns
    -------
    MasterCandidate

    Raises
    ------
    NoCalibrationError
        Nothing qualifies; the message lists the criteria and up to five nearest candidates with reasons.
    """
    criteria = dict(night=night, kinds=kinds, binning=binning, filtername=filtername, gain_method=gain_method,
                    validity_days=validity_days, min_frames=min_frames)
    candidates = list(candidates)
    good = [c for c in candidates if not _rejection(c, **criteria)]
    if good:
        return min(good, key=lambda c: (abs(night_distance(night, c.night)), night_distance(night, c.night) > 0,
                                        kinds.index(c.kind), -c.ncombine))
    nearest = sorted(candidates, key=lambda c: abs(night_distance(night, c.night)))[:5]
    listed = "; ".join(f"{c.kind} {c.filter or ''} bin{c.binning} of {c.night}: {_rejection(c, **criteria)}"
                       for c in nearest) or "no candidates at all"
    raise NoCalibrationError(
        f"no {'/'.join(kinds)} master for night {night} (bin{binning}"
        f"{', filter ' + filtername if filtername else ''}, gain method {gain_method}, at least {min_frames} "
        f"frames, within {validity_days} nights); nearest: {listed}"
    )
