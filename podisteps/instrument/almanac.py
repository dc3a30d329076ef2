"""Sun and Moon at mid-exposure for WIYN (docs/reduction-steps.md, 'Almanac', ``podi_almanac``), offline.

Positions come from astropy's built-in ephemeris (``solar_system_ephemeris = 'builtin'``: VSOP87 for the
Sun, ELP2000-82 for the Moon) and altitudes from an ``AltAz`` frame at WIYN (latitude 31.95758 deg,
longitude -111.600586 deg, 2096 m). IERS tables are never downloaded: astropy's bundled tables serve,
and outside their range the polar motion is taken as zero (an error far below 1 arcsec here).

Formulas
--------
- Elongation psi = angular distance Sun-Moon (geocentric). Phase angle
  i = atan2(r_sun sin psi, r_moon - r_sun cos psi); illuminated fraction ``MOONILUM = (1 + cos i)/2``.
- ``MOONPHSE`` = (lambda_moon - lambda_sun) mod 360 deg / 360 in geocentric true ecliptic longitude:
  0 new moon, 0.5 full moon, waxing below 0.5. ``LUNARAGE = MOONPHSE x 29.530589 d`` (mean synodic month).
- Rise and set: the times the altitude crosses -0.833 deg (Sun: refraction + semi-diameter) or +0.125 deg
  (Moon: refraction + semi-diameter - parallax), found on a 10-minute grid over mid-exposure +-12 h and
  interpolated linearly. ``SUN_SET`` is the last setting before, ``SUN_RISE`` the first rising after
  mid-exposure (the night bracket); ``MOON_RSE``/``MOON_SET`` are the first rising/setting after
  mid-exposure. All are UT hours of the day (0-24); -99 when there is none within 12 h.
- ``SKYBRITE``: 'daytime' (Sun above -0.833 deg), 'civil.twilight' (above -6), 'naut.twilight' (above -12),
  'astro.twilight' (above -18); else 'dark' with the Moon below the horizon, 'grey' with it up and
  ``MOONILUM < 0.5``, 'bright' otherwise.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
from astropy import units as u
from astropy.coordinates import (AltAz, EarthLocation, GeocentricTrueEcliptic, SkyCoord, get_body, get_sun,
                                 solar_system_ephemeris)
from astropy.time import Time
from astropy.utils import iers

__all__ = ["WIYN", "SYNODIC_MONTH_DAYS", "almanac_keywords", "load_earth_rotation", "use_earth_rotation",
           "earth_rotation_loaded", "earth_rotation_files", "sky_brightness_class"]

#: WIYN at Kitt Peak (QuickReduce's podi_almanac values).
WIYN = EarthLocation.from_geodetic(lon=-111.600586 * u.deg, lat=31.95758 * u.deg, height=2096.0 * u.m)
#: Mean synodic month, days.
SYNODIC_MONTH_DAYS = 29.530589
#: Horizon altitudes for rise and set, deg.
SUN_HORIZON_DEG = -0.833
MOON_HORIZON_DEG = 0.125
#: Grid step of the rise/set search, hours; search half-width, hours.
_STEP_H, _HALF_H = 1.0 / 6.0, 12.0
#: Keyword value for no result.
UNDEFINED = -99.0


@contextmanager
def _offline():
    """The built-in ephemeris and astropy's bundled IERS tables, never downloaded."""
    with solar_system_ephemeris.set("builtin"), iers.conf.set_temp("auto_download", False), \
            iers.conf.set_temp("iers_degraded_accuracy", "ignore"):
        yield


def load_earth_rotation() -> iers.IERS_Auto:
    """Read astropy's bundled IERS table into this process (once; later calls cost nothing) and return it.

    The first :func:`almanac_keywords` of a process spends most of its time (about 0.4 CPU-s) parsing that table.
    A process that forks workers calls this first, so that every fork inherits the parsed table; the values
    computed are the same either way (the same bundled file, read the same way).
    """
    with _offline():
        return iers.IERS_Auto.open()


def use_earth_rotation(table: iers.IERS_Auto) -> None:
    """Make ``table`` (a table :func:`load_earth_rotation` returned, e.g. kept in a cache) this process's IERS table.

    Parameters
    ----------
    table : astropy.utils.iers.IERS_Auto
        Must come from the same bundled files as :func:`load_earth_rotation` would read
        (:func:`earth_rotation_files`), so that every value computed stays the same.
    """
    iers.IERS_Auto.iers_table = table


def earth_rotation_loaded() -> bool:
    """Whether this process already holds its IERS table (:func:`load_earth_rotation`, :func:`use_earth_rotation`)."""
    return iers.IERS_Auto.iers_table is not None


def earth_rotation_files() -> tuple[str, str]:
    """The bundled IERS-A and IERS-B files :func:`load_earth_rotation` reads (paths)."""
    return iers.IERS_A_FILE, iers.IERS_B_FILE


def _altaz(body: str, times: Time) -> SkyCoord:
    frame = AltAz(obstime=times, location=WIYN)
    coord = get_sun(times) if body == "sun" else get_body("moon", times)
    return coord.transform_to(frame)


def _crossings(times_h: np.ndarray, alt: np.ndarray, horizon: float) -> tuple[np.ndarray, np.ndarray]:
    """Interpolated times (same unit as ``times_h``) of upward and downward crossings of ``horizon``."""
    d = alt - horizon
    idx = np.nonzero(np.sign(d[:-1]) != np.sign(d[1:]))[0]
    t = times_h[idx] + (times_h[idx + 1] - times_h[idx]) * d[idx] / (d[idx] - d[idx + 1])
    rising = d[idx + 1] > d[idx]
    return t[rising], t[~rising]


def _ut_hours(mid: Time, offset_h: float | None) -> float:
    if offset_h is None:
        return UNDEFINED
    dt = (mid + offset_h * u.h).datetime
    return round(dt.hour + dt.minute / 60 + dt.second / 3600, 4)


def sky_brightness_class(sun_alt_deg: float, moon_alt_deg: float, moon_illumination: float) -> str:
    """QuickReduce's ``SKYBRITE`` class from the Sun's and Moon's altitude (deg) and the lit fraction (0-1)."""
    for limit, name in ((SUN_HORIZON_DEG, "daytime"), (-6.0, "civil.twilight"), (-12.0, "naut.twilight"),
                        (-18.0, "astro.twilight")):
        if sun_alt_deg > limit:
            return name
    if moon_alt_deg < 0:
        return "dark"
    return "grey" if moon_illumination < 0.5 else "bright"


def almanac_keywords(mjd_mid: float, ra_deg: float, dec_deg: float) -> dict:
    """Almanac keywords for an exposure at WIYN.

    Parameters
    ----------
    mjd_mid : float
        MJD (UTC) at mid-exposure.
    ra_deg, dec_deg : float
        Pointing, degrees (ICRS); NaN leaves ``SUN__D``/``MOON_D`` at -99.

    Returns
    -------
    dict
        ``{keyword: (value, comment)}``: ``SUN__RA/DEC/ALT/AZ``, ``MOON_RA/DEC/ALT/AZ`` (deg),
        ``SUN__D``, ``MOON_D`` (separation from the pointing, deg), ``SUN_RISE``, ``SUN_SET``,
        ``MOON_RSE``, ``MOON_SET`` (UT hours), ``SKYBRITE``, ``LUNARAGE`` (days), ``MOONILUM`` (0-1),
        ``MOONPHSE`` (0-1, 0.5 = full). See the module docstring for the formulas.
    """
    mid = Time(mjd_mid, format="mjd", scale="utc")
    n_half = int(round(_HALF_H / _STEP_H))
    grid_h = np.arange(-n_half, n_half + 1) * _STEP_H  # grid_h[n_half] == 0: mid-exposure itself
    with _offline():
        sun_now, moon_now = get_sun(mid), get_body("moon", mid)  # geocentric
        sun_alt, moon_alt = _altaz("sun", mid + grid_h * u.h), _altaz("moon", mid + grid_h * u.h)
        lam_sun = sun_now.transform_to(GeocentricTrueEcliptic(equinox=mid)).lon.deg
        lam_moon = moon_now.transform_to(GeocentricTrueEcliptic(equinox=mid)).lon.deg
    here = {"sun": sun_alt[n_half], "moon": moon_alt[n_half]}
    psi = sun_now.separation(moon_now).rad
    r_sun, r_moon = sun_now.distance.to_value(u.km), moon_now.distance.to_value(u.km)
    illum = (1 + math.cos(math.atan2(r_sun * math.sin(psi), r_moon - r_sun * math.cos(psi)))) / 2
    phase = float((lam_moon - lam_sun) % 360.0) / 360.0
    sun_up, sun_down = _crossings(grid_h, sun_alt.alt.deg, SUN_HORIZON_DEG)
    moon_up, moon_down = _crossings(grid_h, moon_alt.alt.deg, MOON_HORIZON_DEG)
    target = SkyCoord(ra_deg * u.deg, dec_deg * u.deg) if np.isfinite([ra_deg, dec_deg]).all() else None
    cards = {}
    for tag, body, icrs in (("SUN_", "sun", sun_now), ("MOON", "moon", moon_now)):
        radec = SkyCoord(icrs.ra, icrs.dec)
        cards[f"{tag}_RA"] = (round(float(radec.ra.deg), 5), f"{body} RA at mid-exposure, deg")
        cards[f"{tag}_DEC"] = (round(float(radec.dec.deg), 5), f"{body} Dec at mid-exposure, deg")
        cards[f"{tag}_ALT"] = (round(float(here[body].alt.deg), 4), f"{body} altitude at WIYN, deg")
        cards[f"{tag}_AZ"] = (round(float(here[body].az.deg), 4), f"{body} azimuth (N through E), deg")
        sep = radec.separation(target).deg if target is not None else UNDEFINED
        cards[f"{tag}_D"] = (round(float(sep), 4), f"{body} distance from the pointing, deg")
    after = [t for t in sun_up if t > 0]
    before = [t for t in sun_down if t <= 0]
    cards["SUN_RISE"] = (_ut_hours(mid, after[0] if after else None), "next sunrise, UT hours")
    cards["SUN_SET"] = (_ut_hours(mid, before[-1] if before else None), "last sunset, UT hours")
    rise = [t for t in moon_up if t > 0]
    sett = [t for t in moon_down if t > 0]
    cards["MOON_RSE"] = (_ut_hours(mid, rise[0] if rise else None), "next moonrise, UT hours")
    cards["MOON_SET"] = (_ut_hours(mid, sett[0] if sett else None), "next moonset, UT hours")
    cards["SKYBRITE"] = (sky_brightness_class(float(here["sun"].alt.deg), float(here["moon"].alt.deg), illum),
                         "sky brightness class")
    cards["LUNARAGE"] = (round(phase * SYNODIC_MONTH_DAYS, 3), "days since new moon")
    cards["MOONILUM"] = (round(illum, 4), "illuminated fraction of the Moon")
    cards["MOONPHSE"] = (round(phase, 4), "lunation fraction: 0 new, 0.5 full")
    return cards
