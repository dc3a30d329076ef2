"""podisteps.io.streamed: the one streamed FITS writer writes what astropy writes, and nothing when it fails."""

import sys

import numpy as np
import pytest
from astropy.io import fits

from podisteps.errors import PodiflowError
from podisteps.io import atomic, streamed
from podisteps.io.streamed import write_fits_streamed


def _mef() -> fits.HDUList:
    """Image HDUs of every kind the writer handles itself or hands to astropy, a compressed image and tables."""
    rng = np.random.default_rng(11)
    sky = rng.normal(100.0, 5.0, (37, 53)).astype(np.float32)  # 7844 bytes: not whole blocks
    sky[3, :7] = np.nan
    primary = fits.PrimaryHDU(header=fits.Header({"OBSID": "o1", "PFTEST": "x"}))
    primary.header["EXTEND"] = False  # the writer sets it, as HDUList.writeto does
    images = [
        fits.ImageHDU(sky, name="NATIVE.SCI"),
        fits.ImageHDU(sky.astype(">f4"), name="BIGEND.SCI"),
        fits.ImageHDU(np.asfortranarray(rng.normal(0, 1, (20, 30))), name="FORTRAN.F8"),
        fits.ImageHDU(rng.integers(-300, 300, (5, 6, 7)).astype(np.int16), name="CUBE.I2"),
        fits.ImageHDU(rng.integers(0, 255, (9, 11)).astype(np.uint8), name="MASK"),
        fits.ImageHDU(rng.integers(0, 60000, (8, 8)).astype(np.uint16), name="UNSIGNED"),  # astropy scales it
        # lossless: astropy's float compression is not reproducible from one second to the next
        fits.CompImageHDU(rng.integers(0, 5000, (40, 50)).astype(np.int32), name="PACKED.MASK"),
    ]
    table = fits.BinTableHDU.from_columns([fits.Column("ID", "J", array=np.arange(4)),
                                           fits.Column("MAG", "E", array=[20.5, 21.0, np.nan, 19.25]),
                                           fits.Column("NAME", "8A", array=["a", "bb", "ccc", ""])], name="CAT.ODI")
    return fits.HDUList([primary, *images, table, fits.ImageHDU(name="EMPTY")])


def test_bytes_are_astropys_for_images_compressed_images_and_tables(tmp_path, monkeypatch):
    monkeypatch.setattr(streamed, "SLICE_BYTES", 1000)  # several slices per image, a partial last one
    handed = []
    monkeypatch.setattr(streamed, "start_writeback", lambda fd, offset, nbytes: handed.append((offset, nbytes)))
    whole = tmp_path / "whole.fits"
    _mef().writeto(whole)
    out = write_fits_streamed(iter(_mef()), tmp_path / "streamed.fits")
    assert out.read_bytes() == whole.read_bytes()
    with fits.open(out) as hdul:
        assert hdul[0].header["EXTEND"] is True and len(hdul) == 10
        np.testing.assert_array_equal(hdul["BIGEND.SCI"].data, _mef()["NATIVE.SCI"].data)
        # the padded data sections of the five images written by the writer itself went to the disk early
        sections = [(h.fileinfo()["datLoc"], h.fileinfo()["datSpan"]) for h in hdul[1:6]]
    assert handed == sections and sections[0][1] == 8640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["streamed.fits", "whole.fits"]
    handed.clear()
    write_fits_streamed(_mef(), tmp_path / "checkpoint.fits", durable=False)
    assert handed == [] and (tmp_path / "checkpoint.fits").read_bytes() == whole.read_bytes()


def test_provenance_callback_and_a_lone_primary_with_data(tmp_path):
    reference = fits.PrimaryHDU(np.arange(12.0).reshape(3, 4))
    reference.header["PFTEST"] = "done"
    reference.header["EXTEND"] = False  # left alone without an extension
    reference.writeto(tmp_path / "whole.fits")

    def provenance(header):
        header["PFTEST"] = "done"
        header["EXTEND"] = False

    path = write_fits_streamed((h for h in [fits.PrimaryHDU(np.arange(12.0).reshape(3, 4))]),
                               tmp_path / "one.fits", prepare=provenance)
    assert path.read_bytes() == (tmp_path / "whole.fits").read_bytes()
    assert fits.getheader(path)["EXTEND"] is False and fits.getdata(path)[2, 3] == 11.0


def _failing(hdus, after: int):
    for i, hdu in enumerate(hdus):
        if i == after:
            raise OSError("input vanished")
        yield hdu


def test_a_failure_mid_write_leaves_no_target_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "final.fits"
    with pytest.raises(OSError, match="input vanished"):
        write_fits_streamed(_failing(_mef(), after=4), target)
    assert list(tmp_path.iterdir()) == []

    real = streamed._write_image

    def disk_full(out, data, **options):
        if data.dtype == np.uint8:
            raise OSError(28, "No space left on device")
        real(out, data, **options)

    monkeypatch.setattr(streamed, "_write_image", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_fits_streamed(_mef(), target)
    assert list(tmp_path.iterdir()) == []


def test_misplaced_hdus_are_refused_naming_the_file(tmp_path):
    target = tmp_path / "final.fits"
    with pytest.raises(PodiflowError, match="final.fits: the first HDU to write must be a PrimaryHDU"):
        write_fits_streamed([fits.ImageHDU(np.zeros((2, 2)))], target)
    with pytest.raises(PodiflowError, match="final.fits: HDU 2 is not an extension"):
        write_fits_streamed([fits.PrimaryHDU(), fits.ImageHDU(np.zeros(3)), fits.PrimaryHDU()], target)
    assert list(tmp_path.iterdir()) == []


def test_start_writeback_is_found_on_linux_and_changes_no_byte(tmp_path):
    path = tmp_path / "part.bin"
    path.write_bytes(bytes(range(256)) * 40)
    with open(path, "r+b") as fh:
        assert atomic.start_writeback(fh.fileno(), 2880, 5760) is None
    assert path.read_bytes() == bytes(range(256)) * 40
    assert (atomic._sync_file_range() is not None) == sys.platform.startswith("linux")
