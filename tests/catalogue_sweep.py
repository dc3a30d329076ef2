"""Catalogue and astrometry fidelity over several full-size simulated pODI exposures (issue 20), run by hand.

Not a test (it takes about ten minutes per exposure on two cores): the measurement behind the tables of
``docs/catalogue.md``. Two stages, each writing into ``--root``:

``simulate``
    For each ``SEED:INDEX`` (the demo night's seed and the index of its odi_r exposure), simulate that
    exposure at full size, reduce it with Luigi to ``FixWCS`` (``-fixwcs``), and write
    ``<tag>/summary.json``: per OTA the SExtractor comparison at S/N > 50 (:func:`sextractor_stats`) and the
    point sources' median FWHM. The detrended OTAs are deleted unless ``--keep`` names the tag. With
    ``--masters`` the science is detrended with a master bias and dark as a real reduction is: the demo
    night's 3 biases and 2 darks (seed 42) are simulated once into ``<root>/masters`` and combined there by
    the pipeline (``MasterCalibration``, as ``-masters=bias,dark`` builds them), and every exposure is
    detrended with those two files (``-bias``/``-dark``). The detector's defects, glow and dark current
    depend only on the detector, not on the seed, so another night's master describes them as it would at
    the telescope; its noise and its cosmic-ray rejection residuals are those of a real 2-frame master.
``astrometry``
    Re-solve every simulated exposure from its cached catalogues and reference catalogue as ``FixWCS``
    does (the posterior mean under the canned model's prior, pairs weighted by their reference and
    centroid errors), and print per OTA the p90 error over a 15 x 15 grid of its pixels against the true
    WCS, with the canned model's (after the focal-plane fit) and the solution without the reference
    catalogue's stated errors beside it; the summary judges the OTAs with at least 8 matches. Also the
    exposure's seeing as the psf/seeing QA plots and the MEF's ``SEEING`` measure it, and its duplicate
    rate (:func:`exposure_seeing`). With ``--gaia-class MAS`` it also solves each exposure with Gaia-class
    reference positions of the same stars (:func:`gaia_class_references`): what the same estimator gives when
    the reference stars' errors are ``MAS`` instead of the simulated catalogue's 15-50 mas.

Usage::

    .venv/bin/python -m tests.catalogue_sweep simulate --root /tmp/sweep 42:0 42:1 1:1 2:1
    .venv/bin/python -m tests.catalogue_sweep simulate --root /tmp/dark 42:0 42:1 1:1 --masters
    .venv/bin/python -m tests.catalogue_sweep astrometry --root /tmp/sweep
    .venv/bin/python -m tests.catalogue_sweep astrometry --root /tmp/sweep --gaia-class 1.0
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import tomllib
from pathlib import Path

os.environ.setdefault("LUIGI_CONFIG_PATH", str(Path(__file__).resolve().parent.parent / "luigi.cfg"))

import luigi  # noqa: E402  (after LUIGI_CONFIG_PATH is set)
import numpy as np  # noqa: E402
from astropy.io import fits  # noqa: E402
from astropy.table import Table, vstack  # noqa: E402
from scipy.spatial import cKDTree  # noqa: E402

from podisteps.astrometry import header_wcs, sky_offsets, solve_focal_plane  # noqa: E402
from podisteps.catalog import refcat  # noqa: E402
from podisteps.catalog.detect import point_sources, source_catalog  # noqa: E402
from podisteps.instrument.packagedata import configs_dir  # noqa: E402
from podisteps.photometry import photcalib  # noqa: E402
from podisteps.simulate import load_night, simulate_night  # noqa: E402
from tests.sextractor_golden import run_sextractor  # noqa: E402
from workflows.astrometry import FixWCS, _selected_sources, _wcs_header  # noqa: E402
from workflows.base import options_param  # noqa: E402
from workflows.detrend import detrend_options  # noqa: E402
from workflows.masters import MasterCalibration  # noqa: E402
from workflows.options import ReductionOptions  # noqa: E402
from workflows.paths import night_of  # noqa: E402

#: OTAs judged for the astrometry: at least this many final matches.
MIN_MATCHED = 8


def _exposure(seed: int, index: int):
    spec = tomllib.loads((configs_dir() / "nights" / "demo.toml").read_text())
    spec["night"]["seed"] = seed
    return spec, [e for e in load_night(spec).exposures if e.obstype == "OBJECT" and e.filter == "odi_r"][index]


def _configure(root: Path) -> None:
    cfg = luigi.configuration.get_config()
    for key, folder in (("raw_dir", "sim/raw"), ("mastercals_dir", "sim/mastercals"), ("work_dir", "work"),
                        ("out_dir", "out")):
        cfg.set("podiflow", key, str(root / folder))
    cfg.set("podiflow", "refcat", str(root / "sim" / "refcat" / "refcat.fits"))
    luigi.task_register.Register.clear_instance_cache()


def sextractor_stats(data, mask, header, *, ota: int, folder: Path) -> dict:
    """podiflow's catalogue of one OTA against SExtractor's clean S/N > 50 sources (as the golden test).

    Returns counts (``n``, ``found``), the unmatched SExtractor rows (``missed``: x, y, S/N, flux radius,
    masked pixels within 10 px), the position differences of the found ones (``dpos``, px) and the 3"
    magnitude differences of those with complete apertures (``dmag``, podiflow - SExtractor), and the point
    sources' median ``FWHM_WORLD`` (``seeing``, arcsec).
    """
    gain = float(header["GAIN"])
    ours = source_catalog(data, header, ota=ota, mask=mask, gain=gain)
    theirs = run_sextractor(data, mask, gain=gain, aperture_px=3.0 / ours.meta["APERSCL"], folder=folder)
    snr = 1.0857 / np.asarray(theirs["MAGERR_APER"], float)
    ny, nx = mask.shape
    ix = np.rint(theirs["XWIN_IMAGE"] - 1.0).astype(int).clip(0, nx - 1)
    iy = np.rint(theirs["YWIN_IMAGE"] - 1.0).astype(int).clip(0, ny - 1)
    ref = theirs[(snr > 50) & (theirs["FLAGS"] == 0) & (mask[iy, ix] == 0)]
    dist, row = cKDTree(np.column_stack([ours["X"], ours["Y"]])).query(
        np.column_stack([ref["XWIN_IMAGE"], ref["YWIN_IMAGE"]]))
    found = dist < 1.0
    complete = found & (np.asarray(ours["MASKFRAC_D30"])[row] == 0)
    dmag = np.asarray(ours["MAG_D30"], float)[row] - np.asarray(ref["MAG_APER"], float)
    missed = []
    for src in ref[~found]:
        x, y = int(round(src["XWIN_IMAGE"] - 1)), int(round(src["YWIN_IMAGE"] - 1))
        near = mask[max(y - 10, 0):y + 11, max(x - 10, 0):x + 11]
        missed.append({"x": float(src["XWIN_IMAGE"]), "y": float(src["YWIN_IMAGE"]),
                       "snr": float(1.0857 / src["MAGERR_APER"]), "flux_radius": float(src["FLUX_RADIUS"]),
                       "masked_near": int((near != 0).sum())})
    shutil.rmtree(folder)
    return {"n": len(ref), "found": int(found.sum()), "missed": missed, "dpos": dist[found].tolist(),
            "dmag": dmag[complete].tolist(),
            "seeing": float(np.median(ours["FWHM_WORLD"][point_sources(ours)]))}


def build_masters(root: Path) -> dict:
    """The demo night's master bias and dark, simulated and built once under ``<root>/masters``.

    Returns
    -------
    dict
        ``{"bias": path, "dark": path}`` of the master MEFs (``bias_bin1``, ``dark_yes_bin1``).
    """
    tag = root / "masters"
    spec = tomllib.loads((configs_dir() / "nights" / "demo.toml").read_text())
    frames = [e for e in load_night(spec).exposures if e.obstype in ("BIAS", "DARK")]
    if not (tag / "sim" / "raw").is_dir():
        simulate_night(spec, tag / "sim", only=[e.dirname for e in frames])
    _configure(tag)
    options = detrend_options(ReductionOptions().replace(masters=("bias", "dark")))
    tasks = {kind: MasterCalibration(night=night_of(frames[0].dirname), kind=kind, binning=1, options=options)
             for kind in ("bias", "dark")}
    assert luigi.build(list(tasks.values()), local_scheduler=True, workers=1, log_level="WARNING")
    return {kind: Path(task.output().path) for kind, task in tasks.items()}


def simulate(root: Path, seed: int, index: int, *, keep: bool, masters: dict | None = None) -> None:
    """Simulate and reduce one exposure; write ``summary.json`` (see the module docstring).

    ``masters``: ``{"bias": path, "dark": path}`` (:func:`build_masters`) subtracted as ``-bias``/``-dark``;
    None subtracts neither.
    """
    tag = root / f"s{seed}e{index}"
    spec, exposure = _exposure(seed, index)
    simulate_night(spec, tag / "sim", only=[exposure.dirname])
    _configure(tag)
    options = ReductionOptions().replace(fixwcs=True, **{k: str(v) for k, v in (masters or {}).items()})
    task = FixWCS(obsid=exposure.dirname, options=options_param(options, ["FixWCS", "OTACatalog", "DetrendOTA"]))
    assert luigi.build([task], local_scheduler=True, workers=1, log_level="WARNING")
    truth = json.loads((tag / "sim" / "truth" / night_of(exposure.dirname) / exposure.dirname
                        / "exposure.json").read_text())
    summary = {"obsid": exposure.dirname, "seeing_true": truth["psf"]["fwhm_arcsec"], "otas": {}}
    for path in sorted((tag / "work").rglob(f"{exposure.dirname}.*.detrend.*.fits")):
        with fits.open(path) as hdul:
            header, data, mask = hdul[1].header, hdul[1].data.astype(np.float32), hdul[2].data
        ota = int(path.name[len(exposure.dirname) + 1:].split(".")[0])
        summary["otas"][ota] = sextractor_stats(data, mask, header, ota=ota, folder=tag / f"sex{ota}")
        if not keep:
            path.unlink()
    if not keep:
        shutil.rmtree(tag / "sim" / "raw")
    (tag / "summary.json").write_text(json.dumps(summary, indent=1))
    n = sum(s["n"] for s in summary["otas"].values())
    found = sum(s["found"] for s in summary["otas"].values())
    dpos = np.concatenate([s["dpos"] for s in summary["otas"].values()])
    dmag = np.concatenate([s["dmag"] for s in summary["otas"].values()])
    print(f"{tag.name}: SExtractor S/N>50 {found}/{n} = {found / max(n, 1):.4f}; position median "
          f"{np.median(dpos):.5f} px, 3\" mag median |d| {np.median(np.abs(dmag)):.5f} ({dmag.size}); seeing "
          f"{np.median([s['seeing'] for s in summary['otas'].values()]):.3f} (truth {summary['seeing_true']})",
          flush=True)


def _inputs(tag: Path, obsid: str):
    """The headers, sources and reference stars ``FixWCS`` solved, from its cached inputs."""
    sized, sources = {}, {}
    for path in sorted((tag / "work").rglob(f"{obsid}.*.catalog.*.fits")):
        with fits.open(path) as hdul:
            hdr = hdul["CAT.ODI"].header
            ota = int(path.name[len(obsid) + 1:].split(".")[0])
            sized[ota] = _wcs_header(hdr)
            sized[ota]["NAXIS1"], sized[ota]["NAXIS2"] = int(hdr["IMWIDTH"]), int(hdr["IMHEIGHT"])
            sources[ota] = _selected_sources(Table(hdul["CAT.ODI"].data))
    refpath = next((tag / "work").rglob("*.refcat.*.fits"))
    refs = Table.read(refpath, hdu="CAT.WCSREF")
    return sized, sources, refs


def exposure_seeing(tag: Path, obsid: str, true: dict) -> tuple[float, float, float]:
    """The psf/seeing QA plots' median FWHM (point sources of all OTAs) and the MEF's ``SEEING``
    (:func:`podisteps.photometry.photcalib`), arcsec, with positions through the true WCS; and the fraction
    of ``CAT.ODI`` rows with another row of their OTA within 1.5 px."""
    cats, twins = [], 0
    for path in sorted((tag / "work").rglob(f"{obsid}.*.catalog.*.fits")):
        cat = Table.read(path, hdu="CAT.ODI")
        ota = int(path.name[len(obsid) + 1:].split(".")[0])
        if len(cat) > 1:
            xy = np.column_stack([cat["X"], cat["Y"]])
            twins += int((cKDTree(xy).query(xy, k=2)[0][:, 1] < 1.5).sum())
        cat["RA"], cat["DEC"] = header_wcs(true[ota]).all_pix2world(cat["X"], cat["Y"], 1)
        cats.append(cat)
    cat = vstack(cats, metadata_conflicts="silent")
    truth = json.loads((tag / "sim" / "truth" / night_of(obsid) / obsid / "exposure.json").read_text())
    ref = refcat.load_reference(tag / "sim" / "refcat" / "refcat.fits", float(np.median(cat["RA"])),
                                float(np.median(cat["DEC"])), 0.6, epoch=truth["epoch"])
    result = photcalib(cat, ref, filtername=truth["filter"], exptime=truth["exptime"], airmass=truth["airmass"])
    return float(np.median(cat["FWHM_WORLD"][point_sources(cat)])), result.seeing, twins / max(len(cat), 1)


def _p90(true: dict, headers: dict) -> dict:
    g = np.linspace(1.0, 4096.0, 15)
    xx, yy = (v.ravel() for v in np.meshgrid(g, g))
    out = {}
    for ota, hdr in headers.items():
        ra_t, dec_t = header_wcs(true[ota]).all_pix2world(xx, yy, 1)
        ra_s, dec_s = header_wcs(hdr).all_pix2world(xx, yy, 1)
        out[ota] = float(np.percentile(np.hypot(*sky_offsets(ra_s, dec_s, ra_t, dec_t)), 90))
    return out


def gaia_class_references(tag: Path, refs: Table, *, sigma_mas: float, rng) -> tuple:
    """Gaia-class positions of the reference stars ``refs`` (a ``CAT.WCSREF`` cut-out at the exposure epoch).

    Each row is matched to the nearest star of the simulator's true population moved to the cut-out's epoch
    (the simulated catalogue's errors are well below the stars' separations), and gets that star's true
    position plus a Gaussian error of ``sigma_mas`` mas per axis.

    Returns
    -------
    tuple
        ``((ra, dec), sigma)``: deg, shape ``(n,)`` each, and the stated error per axis, arcsec, shape ``(n,)``.
    """
    pop = Table.read(tag / "sim" / "truth" / "population.fits")
    years = float(refs["epoch"][0]) - float(pop.meta["EPOCH"])
    dec = np.asarray(pop["dec"]) + np.asarray(pop["pmdec"]) * years / 3.6e6
    ra = np.asarray(pop["ra"]) + np.asarray(pop["pmra"]) * years / 3.6e6 / np.cos(np.radians(pop["dec"]))
    squeeze = math.cos(math.radians(float(np.median(refs["dec"]))))
    _, nearest = cKDTree(np.column_stack([ra * squeeze, dec])).query(
        np.column_stack([np.asarray(refs["ra"]) * squeeze, refs["dec"]]))
    ra, dec, n = ra[nearest], dec[nearest], len(refs)
    dec_out = dec + rng.normal(0.0, sigma_mas, n) / 3.6e6
    ra_out = ra + rng.normal(0.0, sigma_mas, n) / 3.6e6 / np.cos(np.radians(dec))
    return (ra_out, dec_out), np.full(n, sigma_mas / 1000.0)


def astrometry(root: Path, *, gaia_class: float | None = None) -> list:
    """Per-OTA p90 errors of the canned model and of the solution for every exposure under ``root``
    (and of the solution with Gaia-class reference positions of ``gaia_class`` mas, when given)."""
    rows, rng = [], np.random.default_rng(2026)
    for summary_path in sorted(root.glob("*/summary.json")):
        tag, obsid = summary_path.parent, json.loads(summary_path.read_text())["obsid"]
        sized, sources, refs = _inputs(tag, obsid)
        with fits.open(tag / "sim" / "truth" / night_of(obsid) / obsid / "wcs.fits") as hdul:
            true = {int(h.name[3:5]): h.header for h in hdul[1:]}
        radec = (np.asarray(refs["ra"]), np.asarray(refs["dec"]))
        sigma = np.hypot(refs["ra_error"], refs["dec_error"]) / math.sqrt(2.0) / 1000.0
        canned = _p90(true, solve_focal_plane(sized, sources, radec, mode="rotation").headers)
        equal = _p90(true, solve_focal_plane(sized, sources, radec, mode="otashear").headers)
        sol = solve_focal_plane(sized, sources, radec, mode="otashear", ref_sigma_arcsec=sigma)
        p90 = _p90(true, sol.headers)
        if gaia_class is not None:
            gaia_radec, gaia_sigma = gaia_class_references(tag, refs, sigma_mas=gaia_class, rng=rng)
            gaia = _p90(true, solve_focal_plane(sized, sources, gaia_radec, mode="otashear",
                                                ref_sigma_arcsec=gaia_sigma).headers)
        summary = json.loads(summary_path.read_text())
        print(f"{tag.name}: seeing truth {summary['seeing_true']}, QA plots %.3f, SEEING %.3f; rows with "
              "another within 1.5 px %.4f" % exposure_seeing(tag, obsid, true))
        for ota in sorted(p90):
            rows.append((tag.name, ota, len(sol.matches[ota][0]), canned[ota], p90[ota], equal[ota])
                        + ((gaia[ota],) if gaia_class is not None else ()))
    for r in rows:
        print(f"{r[0]} OTA{r[1]:02d} matched {r[2]:3d} canned {r[3]:.4f} no ref errors {r[5]:.4f} solved {r[4]:.4f}"
              + ("  WORSE" if r[4] > 1.05 * r[3] + 0.002 else "") + ("  OVER" if r[2] >= MIN_MATCHED
                                                                      and r[4] > 0.05 else "")
              + (f"  gaia-class {r[6]:.4f}" if gaia_class is not None else ""))
    _judge(rows, 4, "solved")
    if gaia_class is not None:
        _judge(rows, 6, f"solved with Gaia-class positions ({gaia_class:g} mas)")
    return rows


def _judge(rows: list, column: int, name: str) -> None:
    """Print the acceptance figures of the solution in ``column`` of ``rows``."""
    judged = [r for r in rows if r[2] >= MIN_MATCHED]
    print(f"{name}: OTAs with >= {MIN_MATCHED} matches: {len(judged)}, p90 > 0.05\": "
          f"{sum(r[column] > 0.05 for r in judged)}, worst {max((r[column] for r in judged), default=float('nan')):.4f}, "
          f"median p90 (all OTAs) {np.median([r[column] for r in rows]):.4f}; worse than canned (all OTAs): "
          f"{sum(r[column] > 1.05 * r[3] + 0.002 for r in rows)}, strictly worse {sum(r[column] > r[3] for r in rows)}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=("simulate", "astrometry"))
    parser.add_argument("exposures", nargs="*", help="SEED:INDEX of the demo night's odi_r exposures")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--keep", nargs="*", default=[], help="tags (s42e0) whose detrended OTAs are kept")
    parser.add_argument("--masters", action="store_true", help="subtract a master bias and dark (built once)")
    parser.add_argument("--gaia-class", type=float, default=None, metavar="MAS",
                        help="astrometry: also solve with Gaia-class positions of the same stars, MAS mas per axis")
    args = parser.parse_intermixed_args(argv)
    if args.stage == "astrometry":
        astrometry(args.root, gaia_class=args.gaia_class)
        return
    masters = build_masters(args.root) if args.masters else None
    for item in args.exposures:
        seed, index = (int(v) for v in item.split(":"))
        simulate(args.root, seed, index, keep=f"s{seed}e{index}" in args.keep, masters=masters)


if __name__ == "__main__":
    main()
