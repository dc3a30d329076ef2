"""The summary of an observing night: one row per exposure, as an ECSV table and a self-contained HTML page.

Each exposure gets a status:

``reduced``
    its final MEF exists and no failure was recorded after it was written;
``failed``
    its raw files cannot be read, or a task of its reduction failed (the error is the earliest recorded one,
    the root cause; tasks that were not run because of it leave no record);
``calibration``
    a bias, dark or flat frame (it goes into the night's masters, not into a final MEF);
``not run``
    a science exposure without a final MEF and without a failure of its own (the error then names the failed
    task that blocked it, when one did).

Quality columns come from the final MEF's primary header: ``WCS_RMS`` (with a valid WCS), ``PHOTZP``,
``SEEING``, ``SKYLEVEL``, ``SKYMAG`` and the depth.

Depth: the 5-sigma limiting magnitude of a point source measured in a circular aperture of radius equal to
the seeing FWHM, against the sky's Poisson noise and the read noise,
``depth5 = PHOTZP_X - 2.5 log10(5 sqrt(N (SKYLEVEL GAIN + RN^2)) / GAIN)`` with ``N = pi (SEEING / scale)^2``
pixels, i.e. ``PHOTDPTH - 2.5 log10(5)`` (``PHOTDPTH`` is the 1-sigma limit of
:func:`podisteps.photometry.photometric_depth`). No aperture correction: a Gaussian PSF puts 94 % of its flux
inside r = FWHM, so the true point-source limit is 0.07 mag brighter.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.table import MaskedColumn, Table
from PIL import Image

from ..io.atomic import write_text_atomic
from ..io.mef import lost_otas

__all__ = ["COLUMNS", "depth_5sigma", "header_quality", "exposure_record", "summary_table", "progress_line",
           "render_html", "write_summary", "THUMBNAILS", "failure_text"]

#: Header value meaning "undefined" (QuickReduce's -99, -1 for some counts and rms).
_UNDEFINED = -99.0

#: Focal-plane plots shown as thumbnails in the HTML page, in this order (PNG only).
THUMBNAILS = ("seeing", "wcs1", "photZP")

#: Thumbnail width, pixels.
THUMB_WIDTH = 120

#: Summary columns: name -> (unit, description). Floats are masked where undefined.
COLUMNS = {
    "obsid": (None, "exposure name"),
    "obstype": (None, "OBSTYPE: OBJECT, BIAS, DARK, DFLAT, ..."),
    "object": (None, "OBJECT"),
    "filter": (None, "FILTER"),
    "exptime": (u.s, "exposure time"),
    "mjd": (u.d, "MJD at the start of the exposure"),
    "airmass": (None, "airmass"),
    "status": (None, "reduced, failed, calibration or not run"),
    "error": (None, "why a failed exposure failed (task and error)"),
    "wcs_rms": (u.arcsec, "rms of the astrometric residuals (WCS_RMS)"),
    "zp": (u.mag, "photometric zero point for 1 s (PHOTZP)"),
    "seeing": (u.arcsec, "median FWHM of the calibration stars (SEEING)"),
    "sky_adu": (u.adu, "sky level (SKYLEVEL)"),
    "sky_mag": (u.mag / u.arcsec**2, "sky surface brightness (SKYMAG)"),
    "depth5": (u.mag, "5-sigma point-source limit, aperture r = seeing (PHOTDPTH - 2.5 log10 5)"),
    "n_plots": (None, "QA plot files"),
    "mef": (None, "final MEF"),
}

_FLOATS = ("exptime", "mjd", "airmass", "wcs_rms", "zp", "seeing", "sky_adu", "sky_mag", "depth5")


def _value(header, key: str, *, floor: float = _UNDEFINED) -> float:
    """A header float, NaN when missing or at/below the undefined marker ``floor``."""
    value = header.get(key) if header is not None else None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value if math.isfinite(value) and value > floor else math.nan


def depth_5sigma(photdpth: float) -> float:
    """The 5-sigma limiting magnitude from the 1-sigma ``PHOTDPTH`` (module docstring), mag; NaN if undefined."""
    return photdpth - 2.5 * math.log10(5.0) if math.isfinite(photdpth) else math.nan


def header_quality(header) -> dict:
    """Quality values of a final MEF's primary header.

    Returns
    -------
    dict
        ``wcs_rms`` (arcsec, NaN without a valid WCS), ``zp`` (mag), ``seeing`` (arcsec), ``sky_adu`` (ADU),
        ``sky_mag`` (mag/arcsec^2), ``depth5`` (mag), ``airmass``; NaN where undefined.
    """
    valid = bool(header.get("WCSCAL", False))
    return {
        "wcs_rms": _value(header, "WCS_RMS", floor=0.0) if valid else math.nan,
        "zp": _value(header, "PHOTZP"),
        "seeing": _value(header, "SEEING", floor=0.0),
        "sky_adu": _value(header, "SKYLEVEL", floor=-99999.0),
        "sky_mag": _value(header, "SKYMAG"),
        "depth5": depth_5sigma(_value(header, "PHOTDPTH")),
        "airmass": _value(header, "AIRMASS", floor=0.0),
    }


def failure_text(failure: dict) -> str:
    """The one-line cause of a failure record: ``<task>: <error>`` (``DetrendOTA(ota=33): <message>``)."""
    where = failure.get("task", "?")
    return f"{where}: {failure.get('error', '')}".strip()


def exposure_record(entry, *, header=None, mef: str = "", mef_mtime: float = math.nan, failures=(),
                    plots=()) -> dict:
    """One summary row.

    Parameters
    ----------
    entry : podisteps.io.nightindex.ExposureRecord
        The exposure in the night index (``obsid``, ``obstype``, ``object``, ``filter``, ``exptime``, ``mjd``,
        ``error``).
    header : astropy.io.fits.Header, optional
        Primary header of its final MEF, if that exists.
    mef : str, optional
        Path of the final MEF.
    mef_mtime : float, optional
        Its modification time, seconds since the epoch; failures recorded before it are history.
    failures : sequence of dict
        Failure records of its tasks (``task``, ``error``, ``time`` in seconds since the epoch).
    plots : sequence of dict
        QA manifest entries (``name``, ``ota``, ``files``).

    Returns
    -------
    dict
        Keys of :data:`COLUMNS` plus ``plots`` (the manifest entries, for the HTML page).
    """
    current = sorted((f for f in failures if not (f.get("time", 0.0) < mef_mtime)), key=lambda f: f.get("time", 0.0))
    if entry.error:
        status, error = "failed", f"raw files: {entry.error}"
    elif header is not None and not current:  # an OTA lost to a bad raw file is named, the exposure is reduced
        lost = lost_otas(header) if "NLOSTOTA" in header else getattr(entry, "bad_otas", ())  # raw or pixels
        notes = [f"OTA{o:02d} left out: {why}" for o, why in lost]
        skipped = header.get("PERSKIP", 0)
        notes += [f"persistence of {skipped} unreadable earlier OTA file(s) not masked"] if skipped else []
        status, error = "reduced", "; ".join(notes)
    elif current:
        status = "not run" if current[0].get("kind") == "blocked" else "failed"
        error = failure_text(current[0])
    else:
        status, error = ("not run" if entry.obstype == "OBJECT" else "calibration"), ""
    quality = header_quality(header) if header is not None and status == "reduced" else \
        dict.fromkeys(("wcs_rms", "zp", "seeing", "sky_adu", "sky_mag", "depth5", "airmass"), math.nan)
    return {
        "obsid": entry.obsid, "obstype": entry.obstype, "object": entry.object, "filter": entry.filter,
        "exptime": float(entry.exptime), "mjd": float(entry.mjd), "status": status, "error": error,
        **quality, "n_plots": sum(len(p["files"]) for p in plots), "mef": mef if header is not None else "",
        "plots": list(plots),
    }


def summary_table(records, *, night: str) -> Table:
    """The records as an astropy Table in exposure order, with units and descriptions (NaN masked)."""
    records = sorted(records, key=lambda r: (r["mjd"], r["obsid"]))
    table = Table(meta={"night": night, "depth5": "PHOTDPTH - 2.5 log10(5): 5-sigma, aperture radius = seeing"})
    for name, (unit, description) in COLUMNS.items():
        values = [r[name] for r in records]
        if name in _FLOATS:
            data = np.array(values, float)
            table[name] = MaskedColumn(data, mask=~np.isfinite(data), unit=unit, description=description)
        elif name == "n_plots":
            table[name] = MaskedColumn(np.array(values, int), description=description)
        else:
            table[name] = MaskedColumn(np.array(values, str) if values else np.array([], str),
                                       description=description)
    return table


def _fmt(value, spec: str) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:{spec}}"


def progress_line(record: dict) -> str:
    """One line about an exposure for the command line, e.g. ``podiflow: o2013... F1 odi_r 120 s: reduced, ...``."""
    head = f"podiflow: {record['obsid']} {record['object']} {record['filter']} {record['exptime']:g} s: {record['status']}"
    if record["status"] == "failed":
        return f"{head}: {record['error']}"
    if record["status"] != "reduced":
        return head
    return (f"{head}, WCS rms {_fmt(record['wcs_rms'], '.3f')} arcsec, ZP {_fmt(record['zp'], '.3f')} mag, "
            f"seeing {_fmt(record['seeing'], '.2f')} arcsec, sky {_fmt(record['sky_mag'], '.2f')} mag/arcsec2, "
            f"depth5 {_fmt(record['depth5'], '.2f')} mag, {record['n_plots']} QA files")


def _thumbnail(png: str) -> str:
    """A PNG as a small inline ``data:`` image."""
    with Image.open(png) as image:
        image = image.convert("RGB")
        image.thumbnail((THUMB_WIDTH, THUMB_WIDTH * 4), Image.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _link(path: str, base: Path, text: str) -> str:
    return f'<a href="{html.escape(os.path.relpath(path, base))}">{html.escape(text)}</a>'


def _plots_cell(plots, base: Path) -> tuple[str, str]:
    """(thumbnails, links) cells of one exposure's QA plots."""
    focal = {p["name"]: p["files"] for p in plots if p.get("ota") is None}
    thumbs = []
    for name in THUMBNAILS:
        png = next((f for f in focal.get(name, ()) if f.endswith(".png") and os.path.exists(f)), None)
        if png:
            thumbs.append(f'<a href="{html.escape(os.path.relpath(png, base))}" target="_blank"><img src="{_thumbnail(png)}" '
                          f'alt="{name}" title="{name}"></a>')
    links = [", ".join(_link(f, base, f"{name} ({f.rsplit('.', 1)[-1]})") for f in files)
             for name, files in focal.items()]
    per_ota = [p for p in plots if p.get("ota") is not None]
    if per_ota:
        items = " ".join(_link(p["files"][0], base, f"{p['name']}/OTA{p['ota']:02d}") for p in per_ota)
        links.append(f"<details><summary>{len(per_ota)} per-OTA plots</summary>{items}</details>")
    return "".join(thumbs), "<br>".join(links)


def _files_cell(mef: str, links: str) -> str:
    """The MEF link, then the plot links folded away (they would widen the table past a laptop screen)."""
    folded = f"<details><summary>plots</summary>{links}</details>" if links else ""
    return "<br>".join(x for x in (mef, folded) if x)


_CSS = """
body { font-family: sans-serif; margin: 1em; color: #222; }
table { border-collapse: collapse; font-size: 0.8em; }
th { position: sticky; top: 0; }
th, td { border: 1px solid #ccc; padding: 3px 6px; vertical-align: top; }
th { background: #eee; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.reduced td.status { background: #d9f2d9; }
tr.failed td.status { background: #f8d0d0; }
tr.notrun td.status { background: #fff0c0; }
tr.calibration td.status { color: #666; }
td.thumbs { white-space: nowrap; }
td.status { min-width: 8em; max-width: 16em; }
td.status small { overflow-wrap: anywhere; }
img { margin-right: 4px; border: 1px solid #ddd; }
.errors li { color: #a00; }
"""

_HEADERS = (("obsid", ""), ("type", ""), ("object", ""), ("filter", ""), ("exptime", "s"), ("status", ""),
            ("WCS rms", "arcsec"), ("ZP", "mag"), ("seeing", "arcsec"), ("sky", "mag/arcsec²"),
            ("depth 5σ", "mag"), ("QA plots", ""), ("files", ""))


def render_html(records, *, night: str, html_path, night_failures=(), refresh_s: int = 0) -> str:
    """The summary page: failures first, then one row per exposure with thumbnails linking to its plots.

    Parameters
    ----------
    records : sequence of dict
        From :func:`exposure_record`.
    night : str
        ``YYYYMMDD``.
    html_path : path-like
        Where the page will be (links are relative to its folder).
    night_failures : sequence of dict
        Failure records not tied to one exposure (night masters...).
    refresh_s : int, optional
        Ask the browser to reload the page every this many seconds (0: never), while a night is being observed.

    Returns
    -------
    str
        The HTML text; images are inline, so the page stands alone (links to the plots are relative). The
        key columns fit a 1400-px laptop screen: the file links fold into one cell, each thumbnail opens its
        plot at full size.
    """
    base = Path(html_path).parent
    records = sorted(records, key=lambda r: (r["mjd"], r["obsid"]))
    counts = {s: sum(r["status"] == s for r in records) for s in ("reduced", "failed", "not run", "calibration")}
    errors = [f"<li><b>{html.escape(r['obsid'])}</b>: {html.escape(r['error'])}</li>"
              for r in records if r["error"]]
    errors += [f"<li><b>night</b>: {html.escape(failure_text(f))}</li>" for f in night_failures]
    rows = []
    for r in records:
        thumbs, links = _plots_cell(r["plots"], base)
        mef = _link(r["mef"], base, os.path.basename(r["mef"])) if r["mef"] else ""
        status = html.escape(r["status"]) + (f"<br><small>{html.escape(r['error'])}</small>" if r["error"] else "")
        cells = [html.escape(r["obsid"]), html.escape(r["obstype"]), html.escape(r["object"]), html.escape(r["filter"]),
                 f'<td class="num">{r["exptime"]:g}</td>', f'<td class="status">{status}</td>',
                 f'<td class="num">{_fmt(r["wcs_rms"], ".3f")}</td>', f'<td class="num">{_fmt(r["zp"], ".3f")}</td>',
                 f'<td class="num">{_fmt(r["seeing"], ".2f")}</td>', f'<td class="num">{_fmt(r["sky_mag"], ".2f")}</td>',
                 f'<td class="num">{_fmt(r["depth5"], ".2f")}</td>', f'<td class="thumbs">{thumbs}</td>', _files_cell(mef, links)]
        cells = [c if c.startswith("<td") else f"<td>{c}</td>" for c in cells]
        rows.append(f'<tr class="{r["status"].replace(" ", "")}">{"".join(cells)}</tr>')
    head = "".join(f"<th>{name}" + (f"<br><small>[{unit}]</small>" if unit else "") + "</th>" for name, unit in _HEADERS)
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    reload = f'<meta http-equiv="refresh" content="{int(refresh_s)}">' if refresh_s else ""
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">{reload}<title>podiflow night {night}</title>"
            f"<style>{_CSS}</style></head><body>\n<h1>Night {night}</h1>\n<p>{len(records)} exposures: {summary}. "
            "Depth: 5σ point-source limit in an aperture of radius = seeing (PHOTDPTH − 2.5 log<sub>10</sub> 5).</p>\n"
            + (f"<h2>Failures</h2>\n<ul class=\"errors\">{''.join(errors)}</ul>\n" if errors else "")
            + f"<h2>Exposures</h2>\n<table><tr>{head}</tr>\n" + "\n".join(rows) + "\n</table>\n</body></html>\n")


def write_summary(records, *, night: str, ecsv_path, html_path, night_failures=(), refresh_s: int = 0) -> Table:
    """Write ``summary.ecsv`` and ``summary.html`` atomically and return the table (``refresh_s``: see
    :func:`render_html`)."""
    table = summary_table(records, night=night)
    with io.StringIO() as buffer:
        table.write(buffer, format="ascii.ecsv")
        write_text_atomic(buffer.getvalue(), ecsv_path)
    write_text_atomic(render_html(records, night=night, html_path=html_path, night_failures=night_failures,
                                  refresh_s=refresh_s), html_path)
    return table
