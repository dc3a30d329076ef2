"""Raw OTA file I/O: round trips and every bad input named in issue 2."""

import numpy as np
import pytest
from astropy.io import fits

from podisteps import instrument
from podisteps.detrend.assemble import assemble_ota
from podisteps.io import rawio, rawwrite
from podisteps.maskbits import MASK_BITS

from .rawfactory import OBSID, cell_headers, cells, primary_header, write_ota


@pytest.mark.parametrize("fz", [False, True])
@pytest.mark.parametrize("binning", [1, 2])
def test_round_trip_bit_exact(tmp_path, fz, binning):
    path, data = write_ota(tmp_path, fz=fz, binning=binning)
    assert path.name == f"{OBSID}.33.fits" + (".fz" if fz else "")
    raw = rawio.read_raw_ota(path, dtype=np.uint16)
    assert raw.ota == 33 and raw.binning == binning and raw.geometry.kind == "test"
    for c in instrument.CELL_IDS:
        assert raw.cells[c].dtype == np.uint16
        assert np.array_equal(raw.cells[c], data[c])
    as_float = rawio.read_raw_ota(path)
    assert as_float.cells[(3, 4)].dtype == np.float32
    assert np.array_equal(as_float.cells[(3, 4)], data[(3, 4)].astype(np.float32))
    with fits.open(path) as hdul:
        hdu = hdul["xy34"]
        assert hdu.header["BITPIX"] == 16 or hdu.header.get("ZBITPIX") == 16


def test_plain_read_agrees_with_astropy(tmp_path):
    """The direct read of plain uint16 files gives astropy's pixels and header values (EXTEND included)."""
    path, data = write_ota(tmp_path)
    raw = rawio.read_raw_ota(path, dtype=np.uint16)
    with fits.open(path) as hdul:
        assert raw.primary.tostring() == hdul[0].header.tostring()
        for cx, cy in instrument.CELL_IDS:
            hdu = hdul[f"xy{cx}{cy}"]
            assert np.array_equal(raw.cells[(cx, cy)], hdu.data) and hdu.data.dtype == np.uint16
            assert {k: raw.cell_headers[(cx, cy)][k] for k in hdu.header} == dict(hdu.header)


def test_stored_read_is_the_counts_as_stored(tmp_path):
    """read_raw_stored's cells are the '>i2' words of the file: count - 32768; headers as read_raw_ota's."""
    path, data = write_ota(tmp_path)
    raw, stored = rawio.read_raw_ota(path, dtype=np.uint16), rawio.read_raw_stored(path)
    assert stored.primary.tostring() == raw.primary.tostring() and stored.geometry == raw.geometry
    for c in instrument.CELL_IDS:
        assert stored.cells[c].dtype == np.dtype(">i2") and not stored.cells[c].flags.writeable
        assert np.array_equal(stored.cells[c].astype(np.int32) + 32768, data[c])
        assert dict(stored.cell_headers[c]) == dict(raw.cell_headers[c])


def test_float_cells_read_through_astropy(tmp_path):
    """A cell stored as float32 (not the raw uint16 layout) is read by astropy's path, converted as asked."""
    path, data = write_ota(tmp_path)
    with fits.open(path, mode="update") as hdul:
        header = hdul["xy52"].header.copy()
        for key in ("BZERO", "BSCALE"):
            header.remove(key)
        hdul[hdul.index_of("xy52")] = fits.ImageHDU(data[(5, 2)].astype(np.float32) + 0.25, header=header)
    raw = rawio.read_raw_ota(path)
    assert rawio.read_raw_stored(path) is None  # not as stored in raw files: no stored-word view
    assert np.array_equal(raw.cells[(5, 2)], data[(5, 2)].astype(np.float32) + 0.25)
    assert np.array_equal(raw.cells[(0, 0)], data[(0, 0)].astype(np.float32))


@pytest.mark.fullsize
@pytest.mark.parametrize("fz", [False, True])
def test_round_trip_full_size(tmp_path, fz):
    path, data = write_ota(tmp_path, kind="full", fz=fz)
    raw = rawio.read_raw_ota(path, dtype=np.uint16)
    assert raw.geometry.kind == "full" and raw.cells[(0, 0)].shape == (494, 550)
    assert all(np.array_equal(raw.cells[c], data[c]) for c in instrument.CELL_IDS)


def test_find_exposure_files_from_dir_and_file(tmp_path):
    expdir = tmp_path / OBSID
    expdir.mkdir()
    for ota in (33, 34, 44):
        write_ota(expdir, ota=ota, fz=(ota == 44))
    (expdir / "notes.txt").write_text("ignored")
    by_dir = rawio.find_exposure_files(expdir)
    by_file = rawio.find_exposure_files(expdir / f"{OBSID}.34.fits")
    assert by_dir.obsid == by_file.obsid == OBSID
    assert by_dir.otas == by_file.otas == (33, 34, 44)
    assert by_dir.files[44].name.endswith(".fits.fz")


def test_assemble_places_cells_and_flags_gaps(tmp_path):
    path, data = write_ota(tmp_path)
    raw = rawio.read_raw_ota(path)
    geo = raw.geometry
    used = {c: c != (2, 5) for c in instrument.CELL_IDS}
    sci, mask = assemble_ota(raw.cells, geo, used=used)
    assert sci.dtype == np.float32 and sci.shape == (geo.ota_size, geo.ota_size)
    rows, cols = geo.target_region(0, 7)
    assert np.array_equal(sci[rows, cols], data[(0, 7)][: geo.data_ny, : geo.data_nx])
    assert rows.start == 0 and cols.start == 0  # xy07 at the pixel origin
    r2, c2 = geo.target_region(2, 5)
    assert np.isnan(sci[r2, c2]).all() and (mask[r2, c2] == MASK_BITS["BADCELL"]).all()
    gap_x = geo.data_nx + 1
    assert np.isnan(sci[:, gap_x]).all() and (mask[:, gap_x] == MASK_BITS["GAP"]).all()
    assert np.isfinite(sci).sum() == 63 * geo.data_nx * geo.data_ny



def test_assemble_fills_every_pixel_outside_the_trimmed_cells(tmp_path):
    """The frame is not pre-filled: the gaps, the trimmed cell edges and a missing cell are still NaN + their bit."""
    path, _ = write_ota(tmp_path)
    raw = rawio.read_raw_ota(path)
    geo = raw.geometry
    del raw.cells[(3, 3)]
    sci, mask = assemble_ota(raw.cells, geo, trimcell=2)
    inside = np.zeros(sci.shape, dtype=bool)
    for c in instrument.CELL_IDS:
        rows, cols = geo.target_region(*c, trimcell=2)
        inside[rows, cols] = True
        assert (mask[rows, cols] == (MASK_BITS["BADCELL"] if c == (3, 3) else 0)).all()
    assert (mask[~inside] == MASK_BITS["GAP"]).all() and np.isnan(sci[~inside]).all()
    assert np.isfinite(sci).sum() == 63 * (geo.data_nx - 4) * (geo.data_ny - 4)


# ---- bad input: every message names the file and the problem


def _write(path, primary, data, headers, **kw):
    rawwrite.write_raw_ota(path, primary, data, headers, **kw)
    return path


def test_too_few_hdus(tmp_path):
    path, _ = write_ota(tmp_path)
    with fits.open(path) as hdul:
        fits.HDUList(hdul[:13]).writeto(tmp_path / "short.fits")
    with pytest.raises(rawio.RawFormatError, match=r"short\.fits: only 13 HDU"):
        rawio.read_raw_ota(tmp_path / "short.fits")


@pytest.mark.parametrize("key", ["FPPOS", "CELLMODE", "MJD-OBS"])
def test_missing_keyword(tmp_path, key):
    geo = instrument.geometry("test", 1)
    hdr = primary_header()
    del hdr[key]
    path = _write(tmp_path / f"{OBSID}.33.fits", hdr, cells(geo), cell_headers())
    with pytest.raises(rawio.RawFormatError, match=rf"{OBSID}\.33\.fits: primary header lacks .*{key}"):
        rawio.read_raw_ota(path)


def test_bad_fppos_and_cellmode(tmp_path):
    geo = instrument.geometry("test", 1)
    hdr = primary_header()
    hdr["FPPOS"] = "33"
    path = _write(tmp_path / "a.fits", hdr, cells(geo), cell_headers())
    with pytest.raises(rawio.RawFormatError, match=r"a\.fits: FPPOS = '33' is not of the form"):
        rawio.read_raw_ota(path)
    hdr = primary_header()
    hdr["CELLMODE"] = "S" * 60
    path = _write(tmp_path / "b.fits", hdr, cells(geo), cell_headers())
    with pytest.raises(rawio.RawFormatError, match=r"b\.fits: CELLMODE has 60 characters"):
        rawio.read_raw_ota(path)


def test_cell_of_wrong_shape(tmp_path):
    geo = instrument.geometry("test", 1)
    data = cells(geo)
    data[(4, 4)] = data[(4, 4)][:-5]
    path = _write(tmp_path / f"{OBSID}.33.fits", primary_header(), data, cell_headers())
    with pytest.raises(rawio.RawFormatError, match=r"33\.fits: cell xy44 has shape \(57, 70\)"):
        rawio.read_raw_ota(path)


def test_cells_too_small_for_any_geometry(tmp_path):
    data = {c: np.zeros((40, 70), np.uint16) for c in instrument.CELL_IDS}
    path = _write(tmp_path / "small.fits", primary_header(), data, cell_headers())
    with pytest.raises(rawio.RawFormatError, match=r"small\.fits: cell shape \(40, 70\) at bin1 fits no known"):
        rawio.read_raw_ota(path)


def test_wn_cell_disagrees_with_extname(tmp_path):
    geo = instrument.geometry("test", 1)
    headers = cell_headers()
    headers[(1, 2)]["WN_CELLX"] = 5
    path = _write(tmp_path / "w.fits", primary_header(), cells(geo), headers)
    with pytest.raises(rawio.RawFormatError, match=r"w\.fits: cell xy12 has WN_CELLX/Y = 5/2"):
        rawio.read_raw_ota(path)


def test_non_fits_and_truncated(tmp_path):
    junk = tmp_path / f"{OBSID}.33.fits"
    junk.write_text("this is not FITS\n" * 200)
    with pytest.raises(rawio.RawFormatError, match=r"33\.fits: not a readable FITS file"):
        rawio.read_raw_ota(junk)
    path, _ = write_ota(tmp_path, ota=34)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(rawio.RawFormatError, match=r"34\.fits: .*(truncated|corrupt|only|cannot be read)"):
        rawio.read_raw_ota(path)


def test_folder_without_ota_files(tmp_path):
    empty = tmp_path / OBSID
    empty.mkdir()
    (empty / "README").write_text("x")
    with pytest.raises(rawio.RawFormatError, match=rf"{OBSID}: no raw OTA files"):
        rawio.find_exposure_files(empty)
    with pytest.raises(rawio.RawFormatError, match="no such exposure folder"):
        rawio.find_exposure_files(tmp_path / "missing")


def test_mixed_exposures_in_one_folder(tmp_path):
    expdir = tmp_path / OBSID
    expdir.mkdir()
    write_ota(expdir, ota=33)
    write_ota(expdir, ota=34, obsid="o20130301T041500.0")
    with pytest.raises(rawio.RawFormatError, match=r"OTA files of 2 different exposures .*o20130301T041500\.0"):
        rawio.find_exposure_files(expdir)


def test_resolve_file_or_dir(tmp_path):
    (tmp_path / "cals").mkdir()
    (tmp_path / "cals" / "bias_bin1.fits").write_bytes(b"")
    (tmp_path / "other.fits").write_bytes(b"")
    assert rawio.resolve_file_or_dir(str(tmp_path / "cals"), "bias_bin1.fits") == tmp_path / "cals" / "bias_bin1.fits"
    assert rawio.resolve_file_or_dir(str(tmp_path / "other.fits"), "bias_bin1.fits") == tmp_path / "other.fits"
    first_missing = f"{tmp_path / 'nope'},{tmp_path / 'cals'}"
    assert rawio.resolve_file_or_dir(first_missing, "bias_bin1.fits") == tmp_path / "cals" / "bias_bin1.fits"
    assert rawio.resolve_file_or_dir(str(tmp_path / "cals"), "dark_yes_bin1.fits") is None
    assert rawio.resolve_file_or_dir(None, "x") is None


def _defective(tmp_path, name, *, fz=False, **change):
    """A raw file with one defect: ``drop`` a primary key, ``set`` one, or ``cell_drop`` a cell header key."""
    geo = instrument.geometry("test", 1)
    hdr, headers = primary_header(), cell_headers()
    for key in change.get("drop", ()):
        del hdr[key]
    hdr.update(change.get("set", {}))
    for key in change.get("cell_drop", ()):
        del headers[(3, 4)][key]
    return _write(tmp_path / (f"{name}.fits" + (".fz" if fz else "")), hdr, cells(geo), headers, fz=fz)


@pytest.mark.parametrize("fz", [False, True])
@pytest.mark.parametrize("change, message", [
    ({}, None),
    ({"drop": ["OTA_ID", "FLTARM3C"]}, "primary header lacks required keyword(s) OTA_ID, FLTARM3C"),
    ({"set": {"EXPTIME": "abc"}}, "EXPTIME = 'abc' is not a number"),
    ({"set": {"MJD-OBS": -3.5}}, "MJD-OBS = -3.5 is out of range"),
    ({"set": {"DEC": "north"}}, "DEC = 'north' is not an angle"),
    ({"cell_drop": ["WN_CELLY"]}, "cell xy34 lacks WN_CELLY"),
])
def test_header_check_agrees_with_the_reader(tmp_path, fz, change, message):
    path = _defective(tmp_path, "d", fz=fz, **change)
    if message is None:
        assert rawio.check_raw_file(path)["FPPOS"] == rawio.read_raw_ota(path).primary["FPPOS"] == "xy33"
        return
    stored = () if fz else (rawio.read_raw_stored,)  # a .fz file has no stored-word read
    for check in (rawio.check_raw_file, rawio.read_raw_ota, *stored):
        with pytest.raises(rawio.RawFormatError) as error:
            check(path)
        assert str(error.value).startswith(f"{path}: {message}")


@pytest.mark.parametrize("fz", [False, True])
def test_header_check_finds_truncation_and_empty_files(tmp_path, fz):
    path, _ = write_ota(tmp_path, fz=fz)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) - 2880])  # a whole block short: astropy alone reads this without a word
    for check in (rawio.check_raw_file,) if fz else (rawio.check_raw_file, rawio.read_raw_stored):
        with pytest.raises(rawio.RawFormatError, match=r"33\.fits(\.fz)?: truncated FITS file"):
            check(path)
    path.write_bytes(b"")
    for check in (rawio.check_raw_file, rawio.read_raw_ota, rawio.read_primary_header):
        with pytest.raises(rawio.RawFormatError, match=r"33\.fits(\.fz)?: empty file \(0 bytes\)$"):
            check(path)
