"""Reference catalogues: the column contract, local files, sky shards, cones and proper motions."""

import os

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from podisteps.astrometry import sky_offsets
from podisteps.catalog.refcat import (BANDS, REFCAT_COLUMNS, NetworkDisabledError, ReferenceOutcome, cone,
                                      load_reference, propagate, query_online, read_skytable, read_table,
                                      stars_in_field, write_skytable_shards)


def _simulator_table(n=400, seed=4, ra0=0.0, dec0=10.0, half=2.0):
    """A table in the simulator's refcat format (``podisteps.simulate.stars.refcat_table``)."""
    rng = np.random.default_rng(seed)
    t = Table()
    t["id"] = np.arange(n)
    t["ra"] = (ra0 + rng.uniform(-half, half, n)) % 360.0
    t["dec"] = dec0 + rng.uniform(-half, half, n)
    t["ra_error"] = rng.uniform(15, 50, n)
    t["dec_error"] = rng.uniform(15, 50, n)
    t["epoch"] = np.full(n, 2016.0)
    t["pmra"] = rng.normal(0, 4, n)
    t["pmdec"] = rng.normal(0, 4, n)
    for b in BANDS:
        t[b] = rng.uniform(14, 21, n)
    for b in BANDS:
        t[f"{b}_err"] = np.full(n, 0.02)
    for c, unit in (("ra", "deg"), ("dec", "deg"), ("ra_error", "mas"), ("dec_error", "mas"), ("epoch", "yr"),
                    ("pmra", "mas / yr"), ("pmdec", "mas / yr")):
        t[c].unit = unit
    t.meta["EPOCH"] = 2016.0
    return t


def _sorted(t):
    return t[np.lexsort((t["dec"], t["ra"]))]


@pytest.mark.parametrize("suffix", [".fits", ".ecsv"])
def test_local_round_trip(tmp_path, suffix):
    src = _simulator_table()
    path = tmp_path / f"refcat{suffix}"
    src.write(path, **({"format": "ascii.ecsv"} if suffix == ".ecsv" else {}))
    t = read_table(path)
    assert tuple(t.colnames) == REFCAT_COLUMNS
    assert np.allclose(t["ra"], src["ra"]) and np.allclose(t["dec"], src["dec"])
    assert np.allclose(t["mag_g"], src["g"]) and np.allclose(t["err_z"], src["z_err"])
    assert np.allclose(t["pmra"], src["pmra"]) and (t["epoch"] == 2016.0).all()


def test_missing_columns_are_nan_and_units_convert(tmp_path):
    t = Table({"RAJ2000": [10.0, 11.0], "DEJ2000": [-5.0, -6.0], "e_RAJ2000": [0.1, 0.2], "rmag": [15.0, 16.0]})
    t["e_RAJ2000"].unit = "arcsec"
    path = tmp_path / "mini.fits"
    t.write(path)
    out = read_table(path, epoch=2000.0)
    assert np.allclose(out["ra_error"], [100.0, 200.0])  # mas
    assert np.isnan(out["pmra"]).all() and np.isnan(out["mag_u"]).all() and np.allclose(out["mag_r"], [15, 16])
    assert (out["epoch"] == 2000.0).all()
    with pytest.raises(KeyError):
        read_table(_write(tmp_path / "bad.fits", Table({"x": [1.0]})))


def _write(path, table):
    table.write(path)
    return path


def test_skytable_shards_round_trip_across_ra_zero(tmp_path):
    src = _simulator_table(n=2000, ra0=0.0, dec0=10.0, half=3.0)
    files = write_skytable_shards(src, tmp_path / "cat", shard_deg=1.0)
    assert files[-1].name == "SkyTable.fits" and len(files) > 20
    # a cone across RA = 0: shards on both sides of the wrap are read
    got = read_skytable(tmp_path / "cat", 0.3, 10.2, 1.5)
    want = cone(read_table(_write(tmp_path / "all.fits", src)), 0.3, 10.2, 1.5)
    assert len(got) == len(want) > 100
    assert (got["ra"] > 350).any() and (got["ra"] < 10).any()
    assert np.allclose(_sorted(got)["ra"], _sorted(want)["ra"]) and np.allclose(_sorted(got)["mag_i"],
                                                                                _sorted(want)["mag_i"])
    # load_reference dispatches a folder, cuts and propagates
    ref = load_reference(tmp_path / "cat", 0.3, 10.2, 1.5, epoch=2016.0)
    assert len(ref) == len(want) and ref.meta["REFCAT"].endswith("cat")


def test_skytable_near_the_pole(tmp_path):
    src = _simulator_table(n=3000, ra0=0.0, dec0=88.0, half=180.0)
    src["dec"] = 88.0 + np.random.default_rng(1).uniform(0.0, 1.99, len(src))
    write_skytable_shards(src, tmp_path / "pole", shard_deg=15.0)
    got = read_skytable(tmp_path / "pole", 137.0, 89.5, 1.0)
    want = cone(read_table(_write(tmp_path / "pole.fits", src)), 137.0, 89.5, 1.0)
    assert len(got) == len(want) > 100 and (got["ra"].max() - got["ra"].min()) > 300


def test_cone():
    t = read_table_from(_simulator_table(n=1000, ra0=359.0, dec0=-30.0))
    c = cone(t, 359.5, -30.0, 0.7)
    d = np.hypot(*sky_offsets(c["ra"], c["dec"], 359.5, -30.0)) / 3600.0
    rest = t[~np.isin(t["ra"], c["ra"])]
    d_rest = np.hypot(*sky_offsets(rest["ra"], rest["dec"], 359.5, -30.0)) / 3600.0
    assert len(c) > 50 and d.max() <= 0.7 < d_rest.min()


def read_table_from(table):
    from podisteps.catalog.refcat import normalize

    return normalize(table)


@pytest.mark.parametrize("ra, dec", [(359.9999, 20.0), (0.00005, -45.0), (123.0, 89.9999), (250.0, -89.9995)])
@pytest.mark.parametrize("pmra, pmdec", [(100.0, 0.0), (0.0, 100.0), (-60.0, 80.0)])
def test_propagate_direction_pole_and_wrap(ra, dec, pmra, pmdec):
    t = read_table_from(Table({"ra": [ra], "dec": [dec], "pmra": [pmra], "pmdec": [pmdec], "epoch": [2016.0]}))
    moved = propagate(t, 2026.0)
    da, dd = sky_offsets(moved["ra"], moved["dec"], ra, dec)  # East, North at the old position, arcsec
    assert da[0] == pytest.approx(pmra * 10 / 1000.0, abs=1e-5)  # 10 micro-arcsec
    assert dd[0] == pytest.approx(pmdec * 10 / 1000.0, abs=1e-5)
    assert moved["epoch"][0] == 2026.0 and 0 <= moved["ra"][0] < 360
    if abs(dec) < 89.0:  # away from the pole, East/North barely turn over 1": the motion reverses
        back = propagate(moved, 2016.0)
        assert np.hypot(*sky_offsets(back["ra"], back["dec"], ra, dec))[0] < 1e-5


def test_propagate_ignores_nan_motion():
    t = read_table_from(Table({"ra": [10.0, 20.0], "dec": [0.0, 5.0], "pmra": [np.nan, 10.0],
                               "pmdec": [np.nan, 0.0], "epoch": [2000.0, 2000.0]}))
    moved = propagate(t, 2020.0)
    assert moved["ra"][0] == 10.0 and moved["dec"][0] == 0.0
    assert moved["ra"][1] == pytest.approx(20.0 + 0.2 / 3600 / np.cos(np.radians(5.0)), abs=1e-9)


def test_online_needs_permission():
    with pytest.raises(NetworkDisabledError):
        query_online("gaia", 10.0, 10.0, 0.1)
    with pytest.raises(NetworkDisabledError):
        load_reference("gaia", 10.0, 10.0, 0.1, epoch=2020.0)


@pytest.mark.online
@pytest.mark.skipif(not os.environ.get("PODIFLOW_ONLINE_TESTS"), reason="set PODIFLOW_ONLINE_TESTS=1 and run with "
                    "-m online --force-enable-socket")
def test_online_gaia():
    pytest.importorskip("astroquery")
    t = query_online("gaia", 10.68, 41.27, 0.05, allow_network=True, row_limit=200, timeout=30)
    assert tuple(t.colnames) == REFCAT_COLUMNS and len(t) > 10 and (t["epoch"] == 2016.0).all()


def _ota_header(crpix1: float) -> fits.Header:
    """A 100 x 100 px OTA, 1"/px, East = -x, with the optical axis (10, 20) deg at ``(crpix1, 50.5)``."""
    return fits.Header({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": 10.0, "CRVAL2": 20.0,
                        "CRPIX1": crpix1, "CRPIX2": 50.5, "CD1_1": -1 / 3600, "CD1_2": 0.0, "CD2_1": 0.0,
                        "CD2_2": 1 / 3600, "NAXIS1": 100, "NAXIS2": 100})


def test_stars_in_field_counts_stars_on_the_otas_only():
    # OTA 33 spans -50..+50" East of the axis, OTA 34 -170..-70": a 20" gap between them
    headers = {33: _ota_header(50.5), 34: _ota_header(-69.5)}
    east = np.array([1.0, 49.0, -49.0, -60.0, -100.0, -169.0, -200.0, 60.0])  # arcsec
    ra, dec = 10.0 + east / 3600 / np.cos(np.radians(20.0)), np.full(east.size, 20.0)
    assert stars_in_field(ra, dec, headers) == 5  # 3 on OTA 33, 2 on OTA 34; the gap and beyond: none
    assert stars_in_field(ra[3:4], dec[3:4], headers) == 0
    assert stars_in_field(np.zeros(0), np.zeros(0), headers) == 0


def test_reference_outcome_says_what_went_wrong():
    solved = ReferenceOutcome(catalogue="/cats/refcat.fits", center=(333.87, 15.5), n_cutout=900, n_field=204,
                              n_matched=150, solved=True, n_total=5000)
    assert solved.problem() is None
    assert solved.summary() == ("204 reference stars in the field (900 in the cut-out), 150 matched; "
                                "catalogue /cats/refcat.fits")
    assert [c[:2] for c in solved.cards()] == [("ASTRMCAT", "refcat.fits"), ("WCSNREF", 204), ("WCSNMTCH", 150)]
    unsolved = ReferenceOutcome(catalogue="gaia", center=(333.87, 15.5), n_cutout=900, n_field=204, n_matched=0,
                                solved=False)
    assert unsolved.problem() == ("no astrometric solution (WCSCAL = F): 204 reference stars of gaia in the field "
                                  "at RA 333.8700, Dec +15.5000, none matched")
    empty = ReferenceOutcome(catalogue="/cats/sky", center=(333.87, 15.5), n_cutout=3, n_field=0, n_matched=0,
                             solved=False)
    assert empty.problem() == ("reference catalogue /cats/sky has 0 stars in the field at RA 333.8700, Dec +15.5000 "
                               "(3 in the cut-out): no astrometric solution (WCSCAL = F)")
