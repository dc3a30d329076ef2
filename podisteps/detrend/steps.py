"""The order of the per-OTA detrending steps, and how far each frame kind goes (stated once, as data).

:data:`STEPS` is the order :func:`podisteps.detrend.detrend_ota` runs its steps in. A calibration frame is
detrended only as far as the master it goes into needs (as LCO BANZAI's ``LAST_STAGE``): a bias frame is
not bias-subtracted, a dark frame is bias-subtracted but not dark-subtracted, a flat frame has bias and dark
removed but is not flat-fielded. :data:`LAST_STAGE` gives that last step of the signal chain
(:data:`SIGNAL_CHAIN`) per frame kind; the masking, WCS and sky-box steps run for every kind.
"""

from __future__ import annotations

__all__ = ["STEPS", "SIGNAL_CHAIN", "MASTER_STEPS", "LAST_STAGE", "steps_after", "prerequisites"]

#: Every step in the order it is applied (``docs/architecture.md``, "Detrending one OTA").
STEPS = ("crosstalk", "overscan", "nonlinearity", "assemble", "bias", "dark", "flat", "illumcorr", "gain",
         "bpm", "saturation", "persistency", "cosmics", "photflat", "wcs", "skyboxes")

#: The steps that change the signal after the cells are assembled, in order: a frame kind stops after its
#: :data:`LAST_STAGE`.
SIGNAL_CHAIN = ("bias", "dark", "flat", "illumcorr", "gain", "cosmics", "photflat")

#: Steps whose calibration can be a night master built by the pipeline (``-masters``).
MASTER_STEPS = ("bias", "dark", "flat")

#: Frame kind -> the last step of :data:`SIGNAL_CHAIN` it gets (None: none of them).
LAST_STAGE = {
    "bias": None,
    "dark": "bias",
    "dflat": "dark",
    "tflat": "dark",
    "object": SIGNAL_CHAIN[-1],
}


def steps_after(kind: str) -> tuple[str, ...]:
    """The steps of :data:`SIGNAL_CHAIN` a frame of ``kind`` does not get.

    Parameters
    ----------
    kind : str
        A key of :data:`LAST_STAGE`.

    Returns
    -------
    tuple of str
        In :data:`SIGNAL_CHAIN` order.
    """
    last = LAST_STAGE[kind]
    return SIGNAL_CHAIN if last is None else SIGNAL_CHAIN[SIGNAL_CHAIN.index(last) + 1:]


def prerequisites(kind: str) -> tuple[str, ...]:
    """The masters (of :data:`MASTER_STEPS`) a frame of ``kind`` is detrended with: bias none, dark the
    bias, flats bias and dark."""
    skipped = steps_after(kind)
    return tuple(s for s in MASTER_STEPS if s not in skipped)
