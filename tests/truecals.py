"""The simulator's true detector calibrations and true signal of one exposure, for pull tests.

Shared by ``test_detrend_accuracy`` (through Luigi) and ``test_detrend_composite`` (``detrend_ota`` alone).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from podisteps import instrument
from podisteps.detrend import nonlinearity
from podisteps.masters.mastermef import master_hdulist
from podisteps.simulate import detector, distortion, effects, load_night, render_exposure, simulate_night

SEED = 11
EXPTIME = 120.0
#: Seeing, arcsec: FWHM 3 px on the 0.9"/px test instrument. At 1" (FWHM 1.1 px) stars are undersampled and
#: L.A.Cosmic cannot tell them from cosmic rays (measured: 57 % of star pixels flagged); real ODI pixels are
#: 0.11", so stars are always well sampled there.
SEEING = 2.7


def spec(**effect_changes) -> dict:
    """One odi_r science exposure of the test instrument (pODI) with a saturating star on OTA43."""
    eff = {"fringes": False, "pupil_ghost": False, "cosmic_rays": False, "persistence": False}
    eff.update(effect_changes)
    return {
        "night": {"name": "accuracy", "start": "2013-10-05T03:00:00", "instrument": "test", "binning": 1,
                  "seed": SEED, "star_density": 3000.0},
        "field": [{"name": "F1", "ra": "22:15:30.0", "dec": "+15:30:00"}],
        "sequence": [{"type": "object", "field": "F1", "filter": "odi_r", "count": 1, "exptime": EXPTIME,
                      "dither": "none", "pointing_error": 1.0, "rotator_offset": 0.2, "seeing": SEEING,
                      "airmass": 1.15, "bright_star": {"mag": 9.0, "ota": 43, "x": 1800, "y": 1300}}],
        "effects": eff,
    }


def frame(cells: dict, geo, factors=None, fill=np.nan) -> np.ndarray:
    """Cells' data sections placed in the OTA frame (float64), each times ``factors[i]``."""
    out = np.full((geo.ota_size, geo.ota_size), fill, np.float64)
    for i, (cx, cy) in enumerate(instrument.CELL_IDS):
        rows, cols = geo.target_region(cx, cy)
        block = np.asarray(cells[(cx, cy)][:geo.data_ny, :geo.data_nx], np.float64)
        out[rows, cols] = block * (1.0 if factors is None else factors[i])
    return out


class Sim:
    """A night simulated into ``root`` from ``spec``, and its (first) science exposure."""

    def __init__(self, root: Path, spec: dict):
        self.root, self.spec = root, spec
        simulate_night(spec, root, seed=SEED)
        self.night = load_night(spec, seed=SEED)
        self.exposure = next(e for e in self.night.exposures if e.obstype == "OBJECT")
        self.obsid = self.exposure.dirname

    @property
    def raw(self):
        return self.root / "raw"

    @property
    def mastercals(self):
        return self.root / "mastercals"


def true_calibrations(sim: Sim, folder: Path, otas=None) -> dict:
    """Bias, dark (ADU/s), flat and non-linearity table from the simulator's detector model."""
    folder.mkdir(parents=True, exist_ok=True)
    e = sim.exposure
    geo = e.geometry
    lay = instrument.layout(e.layout)
    n = geo.ota_size
    bias, dark, flat, nl_rows = {}, {}, {}, {}
    for ota in otas or e.otas:
        serial = lay.serial(ota)
        props = effects.detector_props(serial, geo.kind, geo.binning)
        gains = detector.cell_gains(serial)
        response = effects.flat_response(serial, geo, distortion.models(e.layout)[ota].crpix, defects=True)
        hot = np.zeros((64, geo.data_ny, geo.data_nx), np.float64)
        for d in props.defects:
            if d.kind == "hot":
                hot[d.cell, d.rows[0]:d.rows[1], d.cols[0]:d.cols[1]] += d.value
        b, k, f = np.zeros((n, n)), np.zeros((n, n)), np.ones((n, n))
        for i, (cx, cy) in enumerate(instrument.CELL_IDS):
            rows, cols = geo.target_region(cx, cy)
            row, col = effects.bias_structure(props, geo, i)
            b[rows, cols] = row[:geo.data_ny, None] + col[None, :geo.data_nx]
            k[rows, cols] = (detector.DARK_CURRENT * geo.scale**2 + effects.glow_map(props, geo, i) + hot[i]) / gains[i]
            f[rows, cols] = response[i] * detector.NOMINAL_GAIN / gains[i]
            # the non-linearity table is per detector and full-size cell: the true coefficients
            nl_rows[(ota, cx, cy)] = nonlinearity.CellNonlinearity(
                c2=float(props.c2[i]), c3=float(props.c3[i]), relative_gain=float(gains[i] / detector.NOMINAL_GAIN),
                satlevel=float(props.satlevel[i]), in_table=True)
        bias[ota], dark[ota], flat[ota] = b, k, f
    paths = {"bias": folder / "bias_bin1.fits", "dark": folder / "dark_yes_bin1.fits",
             "flat": folder / "dflat_odi_r_bin1.fits", "nonlinearity": folder / "nonlinearity_true.fits"}
    master_hdulist(bias, filelist=["truth"], primary={"OBSTYPE": "BIAS", "BINNING": 1}).writeto(paths["bias"])
    master_hdulist(dark, filelist=["truth"], primary={"OBSTYPE": "DARK", "BINNING": 1, "EXPMEAS": 1.0,
                                                     "EXPTIME": 1.0}).writeto(paths["dark"])
    master_hdulist(flat, filelist=["truth"], primary={"OBSTYPE": "DFLAT", "BINNING": 1, "FILTER": "odi_r"},
                   ota_headers={o: {"FILTER": "odi_r"} for o in flat}).writeto(paths["flat"])
    nonlinearity.nonlinearity_hdulist(nl_rows).writeto(paths["nonlinearity"])
    return {**{k: str(v) for k, v in paths.items()}, "flat_frames": flat}


def signal_and_sigma(sim: Sim, cals: dict, otas=None) -> dict:
    """Per OTA: (true signal in the detrended units, true noise of the detrended pixel)."""
    e, night, geo = sim.exposure, sim.night, sim.exposure.geometry
    light_only = dict(flat_response=False, crosstalk=False, nonlinearity=False, saturation=False,
                      broken_cells=False, video_cells=False, bad_pixels=False, cosmic_rays=False,
                      persistence=False)
    # sky + stars x flat response: cells record rint(signal * response * 1.3 / GAIN) = signal x true flat
    # (with the response in, so that no unsaturated pixel is clipped at 65535 by the render)
    # (bad pixels on: dead defects scale the light like the flat; hot ones need dark=True, off here)
    sig = render_exposure(e, night, noise=False, bias=False, dark=False, otas=otas,
                          effects={**light_only, "flat_response": True, "bad_pixels": True})
    # expected electrons of the raw pixel (response, dark, glow, hot pixels): cells record rint(E / GAIN)
    ele = render_exposure(e, night, noise=False, bias=False, dark=True, otas=otas,
                          effects={**light_only, "flat_response": True, "bad_pixels": True})
    out = {}
    for ota, r in sig.otas.items():
        gains = r.gains
        signal = frame(r.cells, geo) / cals["flat_frames"][ota]
        adu = frame(ele.otas[ota].cells, geo)
        per_cell_gain = frame({c: np.full((geo.data_ny, geo.data_nx), g) for c, g in zip(instrument.CELL_IDS, gains)},
                               geo)
        var_raw = adu / per_cell_gain + detector.READ_NOISE_ADU**2 + 1.0 / 12.0  # + ADC quantisation
        out[ota] = (signal, np.sqrt(var_raw) / cals["flat_frames"][ota])
    return out
