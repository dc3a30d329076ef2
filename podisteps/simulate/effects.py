"""Detector and optics effects of part 2 (docs/instrument.md, 'Cell modes and guide cells' and 'Focal-plane layouts';
docs/reduction-steps.md, 'Per-OTA steps'; docs/calibrations.md, 'Pupil-ghost templates', 'Fringe templates and vectors'
and 'File formats').

Everything fixed per detector (crosstalk, non-linearity, full well, bias structure, glow, defects, flat
response, fringe pattern) is drawn from generators keyed by ``DETECTOR_SEED`` and the detector serial
(and, for pixel positions, the detector kind and binning), so it is the same every night and in every
layout the detector sits in. Per-exposure effects (video cells, cosmic rays, persistence, the pupil
ghost's rotation, the fringe and ghost amplitudes) follow the night seed and the exposure.

Units: "ADU" without qualification means raw ADU of the cell (``electrons / GAIN``); "nominal ADU" are
ADU at the nominal gain 1.3 e-/ADU. Pixel coordinates ``x, y`` are 0-based; "frame" pixels are pixels of
the simulated geometry (test instrument: 8x8 full-size pixels), "full-size" pixels are bin1 pixels of
the real 4096x4096 OTA.

This module holds the night's effect switches (:class:`Effects`) and the truth-mask bits; the effects live
in modules named for them, and every name is importable from here too, the documented way to evaluate the
truth of the analytic effects (``docs/simulator.md``, "Truth of the detector"):

- ``detectorprops``: defects, non-linearity coefficients, full well, cell steps, bias structure, glow;
- ``readout``: crosstalk, the non-linear response, the full-well reading;
- ``response``: vignetting and the flat-field response;
- ``videocells``: video (guide) and broken cells;
- ``ghostfringe``: the pupil ghost and the fringe pattern;
- ``transients``: persistence, cosmic rays, bleeding.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .detectorprops import DETECTOR_SEED, Defect, DetectorProps, bias_structure, detector_props, glow_map
from .ghostfringe import (FRINGE_AMPLITUDE, PUPIL_GHOST, PUPIL_GHOST_OFFSET, FringePattern, fringe_pattern,
                          fringe_vectors, pupil_ghost_centre, pupil_ghost_profile)
from .readout import (FULL_WELL_READOUT, apply_crosstalk, crosstalk_fwd, inverse_nonlinearity_table,
                      invert_nonlinearity_cells, nonlinear_forward)
from .response import VIGNETTING_DEPTH, VIGNETTING_RADIUS, VIGNETTING_WIDTH, flat_response, pixel_response, vignetting
from .transients import (COSMIC_EXTRA_TIME, COSMIC_RAY_RATE, PERSISTENCE_AMPLITUDES, PERSISTENCE_TAUS,
                         PERSISTENCE_WINDOW, PIXEL_CM, bleed_columns, cosmic_rays, persistence_amplitude)
from .videocells import GUIDE_OTAS, broken_cell_content, video_cell_content, video_cells

__all__ = [
    "Effects", "EFFECT_SWITCHES", "MASK_BITS",
    # the effects themselves, from the modules named for them (importable from here as before)
    "DETECTOR_SEED", "Defect", "DetectorProps", "detector_props", "bias_structure", "glow_map",
    "FULL_WELL_READOUT", "crosstalk_fwd", "apply_crosstalk", "nonlinear_forward", "inverse_nonlinearity_table",
    "invert_nonlinearity_cells", "VIGNETTING_RADIUS", "VIGNETTING_DEPTH", "VIGNETTING_WIDTH", "vignetting",
    "pixel_response", "flat_response", "GUIDE_OTAS", "video_cells", "video_cell_content", "broken_cell_content",
    "PUPIL_GHOST", "PUPIL_GHOST_OFFSET", "FRINGE_AMPLITUDE", "pupil_ghost_profile", "pupil_ghost_centre",
    "FringePattern", "fringe_pattern", "fringe_vectors", "PERSISTENCE_AMPLITUDES", "PERSISTENCE_TAUS",
    "PERSISTENCE_WINDOW", "COSMIC_RAY_RATE", "PIXEL_CM", "COSMIC_EXTRA_TIME", "persistence_amplitude",
    "cosmic_rays", "bleed_columns",
]

#: Night-spec switches (``[effects]``), all on by default.
EFFECT_SWITCHES = ("crosstalk", "nonlinearity", "saturation", "persistence", "broken_cells", "video_cells",
                   "bad_pixels", "bias_structure", "dark_glow", "flat_response", "cosmic_rays", "pupil_ghost",
                   "fringes", "dome_illumination")

#: Bits of the truth masks (``masks.fits``).
MASK_BITS = {"BADPIX": 1, "SATURATED": 2, "BLEED": 4, "PERSISTENCE": 8, "COSMIC": 16, "CELL": 32}


@dataclass(frozen=True)
class Effects:
    """The effect switches of a night (``[effects]`` in the night spec); every effect on by default.

    ``cosmic_ray_rate`` is in events per cm^2 per s.
    """

    crosstalk: bool = True
    nonlinearity: bool = True
    saturation: bool = True
    persistence: bool = True
    broken_cells: bool = True
    video_cells: bool = True
    bad_pixels: bool = True
    bias_structure: bool = True
    dark_glow: bool = True
    flat_response: bool = True
    cosmic_rays: bool = True
    pupil_ghost: bool = True
    fringes: bool = True
    dome_illumination: bool = True
    cosmic_ray_rate: float = COSMIC_RAY_RATE

    @classmethod
    def from_spec(cls, table: dict | None) -> "Effects":
        """From the ``[effects]`` table: switch names -> bool, ``all = false`` first turns all off."""
        table = dict(table or {})
        base = {}
        if "all" in table:
            everything = bool(table.pop("all"))
            base = dict.fromkeys(EFFECT_SWITCHES, everything)
        unknown = set(table) - set(EFFECT_SWITCHES) - {"cosmic_ray_rate"}
        if unknown:
            raise ValueError(f"night spec [effects]: unknown key(s) {', '.join(sorted(unknown))}; known: all, "
                             f"{', '.join(EFFECT_SWITCHES)}, cosmic_ray_rate")
        values = {**base, **{k: (float(v) if k == "cosmic_ray_rate" else bool(v)) for k, v in table.items()}}
        return cls(**values)

    def replace(self, **changes) -> "Effects":
        """A copy with some switches changed."""
        return dataclasses.replace(self, **changes)

    def none(self) -> "Effects":
        """A copy with every effect off."""
        return dataclasses.replace(self, **{k: False for k in EFFECT_SWITCHES})

    def as_dict(self) -> dict:
        """JSON-ready."""
        return dataclasses.asdict(self)
