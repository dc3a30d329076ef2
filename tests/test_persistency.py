"""Saturation catalogues: extraction, QuickReduce file layout, selection window, decay model."""

import numpy as np
import pytest
from astropy.io import fits

from podisteps import instrument
from podisteps.detrend.persistency import (SATPIX_DTYPE, in_persistency_window, is_same_frame, persistence_model,
                                           read_saturation_catalog, saturated_pixels, saturated_stored_pixels,
                                           saturation_catalog_hdulist,
                                           saturation_catalog_name, select_catalogs, subtract_persistence)
from podisteps.io import rawio, rawwrite

from .rawfactory import OBSID, cell_headers, primary_header, write_ota

MJD = 56352.25
DAY = 86400.0


def _cells():
    geo = instrument.geometry("test", 1)
    cells = {c: np.full((geo.raw_ny, geo.raw_nx), 1000, dtype=np.uint16) for c in instrument.CELL_IDS}
    cells[(2, 5)][30, 10] = 65535
    cells[(2, 5)][20, 10] = 65535
    cells[(0, 7)][3, 65] = 65535  # overscan pixels are listed too (raw cell indices)
    cells[(7, 0)][1, 1] = 65534
    return cells


def test_saturated_pixels_lists_raw_cell_indices():
    table = saturated_pixels(_cells())
    assert table.dtype == SATPIX_DTYPE
    assert [tuple(int(v) for v in r) for r in table] == [(0, 7, 65, 3), (2, 5, 10, 20), (2, 5, 10, 30)]
    assert len(saturated_pixels(_cells(), limit=65534)) == 4


def test_catalog_from_a_real_raw_file(tmp_path):
    path, _ = write_ota(tmp_path)
    raw = rawio.read_raw_ota(path)
    table = saturated_pixels(raw.cells)
    raw16 = rawio.read_raw_ota(path, dtype=np.uint16)
    assert len(table) == sum(int((raw16.cells[c] == 65535).sum()) for c in instrument.CELL_IDS) > 0


def test_stored_words_give_the_same_table(tmp_path):
    """Saturation found on a plain file's stored words is the table of its counts; values whose stored
    bytes are a byte swap or a sign flip of 7F FF are not saturated."""
    cells = _cells()
    cells[(4, 4)][5, 6] = 32639  # stored -129: bytes FF 7F, the swapped word
    cells[(4, 4)][7, 8] = 32767  # stored -1: bytes FF FF
    cells[(4, 4)][9, 9] = 65279  # stored 32511: bytes 7E FF
    path = tmp_path / rawio.ota_filename(OBSID, 33)
    rawwrite.write_raw_ota(path, primary_header(), cells, cell_headers())
    table = saturated_stored_pixels(rawio.read_raw_stored(path).cells)
    assert table.dtype == SATPIX_DTYPE and table.tobytes() == saturated_pixels(cells).tobytes()
    assert [tuple(int(v) for v in r) for r in table] == [(0, 7, 65, 3), (2, 5, 10, 20), (2, 5, 10, 30)]
    with pytest.raises(TypeError, match="must be big-endian int16"):
        saturated_stored_pixels({(0, 0): cells[(0, 0)]})
    # no stored-word path for a compressed file (not even opened): the caller reads its counts
    assert rawio.read_raw_stored(tmp_path / rawio.ota_filename(OBSID, 33, fz=True)) is None


def test_file_layout_round_trip(tmp_path):
    primary = primary_header(mjd=MJD)
    hdul = saturation_catalog_hdulist(primary, {33: saturated_pixels(_cells()), 44: saturated_pixels({})})
    name = saturation_catalog_name(primary["FILENAME"])
    assert name == f"{OBSID}.saturated.fits"
    hdul.writeto(tmp_path / name)
    with fits.open(tmp_path / name) as back:
        assert [h.name for h in back] == ["PRIMARY", "OTA33.SATPIX"]  # no table for an OTA without pixels
        assert back[1].columns.formats == ["I", "I", "I", "I"]
        assert back[0].header["MJD-OBS"] == MJD and back[0].header["EXPTIME"] == 30.0
        catalog = read_saturation_catalog(back)
    assert (catalog.mjd, catalog.exptime, catalog.binning) == (MJD, 30.0, 1)
    assert np.array_equal(catalog.table(33), saturated_pixels(_cells()))
    assert len(catalog.table(44)) == 0


def test_unreadable_ota_card_and_reading_one_ota(tmp_path):
    primary = primary_header(mjd=MJD)
    table = saturated_pixels(_cells())
    hdul = saturation_catalog_hdulist(primary, {33: table, 44: table[:1]}, errors={34: "x.34.fits: truncated"})
    hdul.writeto(tmp_path / "c.fits")
    with fits.open(tmp_path / "c.fits") as back:
        assert [h.name for h in back] == ["PRIMARY", "OTA33.SATPIX", "OTA44.SATPIX"]
        catalog = read_saturation_catalog(back)
        one = read_saturation_catalog(back, otas=(44,))
        skipped = read_saturation_catalog(back, otas=[34])
    with fits.open(tmp_path / "c.fits") as lazy:
        read_saturation_catalog(lazy, otas=(33,))
        assert "data" in vars(lazy[1]) and "data" not in vars(lazy[2])  # the other OTA's table never loaded
    assert catalog.errors == {34: "x.34.fits: truncated"} and catalog.error(33) is None
    assert sorted(one.tables) == [44] and np.array_equal(one.table(44), table[:1]) and one.errors == {}
    assert skipped.error(34) == "x.34.fits: truncated" and skipped.tables == {}


def test_reader_errors_name_the_file(tmp_path):
    path = tmp_path / "x.saturated.fits"
    fits.HDUList([fits.PrimaryHDU()]).writeto(path)
    with fits.open(path) as hdul, pytest.raises(ValueError, match="x.saturated.fits.*MJD-OBS"):
        read_saturation_catalog(hdul)
    with pytest.raises(ValueError, match="EXPTIME"):
        saturation_catalog_hdulist(fits.Header({"MJD-OBS": MJD}), {})


def test_window_edges():
    exptime = 30.0
    assert is_same_frame(MJD, MJD + 0.99 / DAY) and not is_same_frame(MJD, MJD - 1.0 / DAY)
    earlier = lambda dt: MJD - dt / DAY  # noqa: E731
    assert not in_persistency_window(MJD, earlier(0.99), exptime)
    assert in_persistency_window(MJD, earlier(1.0), exptime)
    assert in_persistency_window(MJD, earlier(600.0 + exptime - 1e-3), exptime)
    assert not in_persistency_window(MJD, earlier(600.0 + exptime + 1e-3), exptime)
    assert not in_persistency_window(MJD, MJD + 10 / DAY, exptime)  # later exposures never count
    assert in_persistency_window(MJD, earlier(100.0), exptime, window=70.0)
    assert not in_persistency_window(MJD, earlier(101.0), exptime, window=70.0)


def test_select_catalogs():
    candidates = [("late", MJD + 5 / DAY, 30), ("this", MJD + 0.2 / DAY, 30), ("old", MJD - 700 / DAY, 30),
                  ("recent", MJD - 100 / DAY, 30), ("long", MJD - 700 / DAY, 200)]
    assert select_catalogs(MJD, candidates) == (["this"], ["long", "recent"])


def test_decay_model():
    assert persistence_model(0.0, amplitudes=(10.0, 5.0)) == pytest.approx(15.0)
    assert persistence_model(980.0, amplitudes=(10.0, 0.0)) == pytest.approx(10.0 / np.e)
    sci = np.full((3, 3), 100.0, dtype=np.float32)
    region = np.zeros((3, 3), dtype=bool)
    region[1, 1] = True
    out = subtract_persistence(sci, region, 0.0, amplitudes=(4.0, 1.0))
    assert out[1, 1] == 95.0 and out[0, 0] == 100.0 and sci[1, 1] == 100.0
