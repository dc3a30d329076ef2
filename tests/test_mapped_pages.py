"""podisteps.io.mapped and write_fits_streamed: memory-mapped pixels read and written one OTA at a time."""

import numpy as np
from astropy.io import fits

from podisteps.io import mef
from podisteps.io.atomic import write_fits_atomic
from podisteps.io.mapped import release_pages
from podisteps.io.streamed import write_fits_streamed
from podisteps.masters import flatfield


def _resident_mb(path) -> float:
    """Resident memory (MB) of this process's maps of ``path``."""
    total, inside = 0, False
    with open("/proc/self/smaps") as fh:
        for line in fh:
            first = line.split(maxsplit=1)[0]
            if "-" in first and not first.endswith(":"):
                inside = line.rstrip().endswith(str(path))
            elif inside and first == "Rss:":
                total += int(line.split()[1])
    return total / 1024


def _frames(tmp_path, n=3):
    rng = np.random.default_rng(7)
    paths = []
    for i in range(n):
        path = tmp_path / f"ota{i}.fits"
        data = rng.normal(100.0, 5.0, (1024, 1024)).astype(np.float32)  # 4 MiB
        data[:10] = np.nan
        fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, name=f"OTA{i}.SCI")]).writeto(path)
        paths.append(path)
    return paths


def test_release_pages_unmaps_a_read_only_map_and_keeps_the_pixels(tmp_path):
    path = _frames(tmp_path, 1)[0]
    with fits.open(path, memmap=True, mode="denywrite") as hdul:
        data = hdul[1].data
        total = float(np.nansum(data, dtype=np.float64))
        assert _resident_mb(path) >= 4.0
        sample = mef.check_sample(data)
        assert _resident_mb(path) == 0.0
        np.testing.assert_array_equal(sample, data[::mef.CHECK_STRIDE, ::mef.CHECK_STRIDE])
        assert float(np.nansum(data, dtype=np.float64)) == total  # read again from the page cache
    with fits.open(path, memmap=True) as hdul:  # copy-on-write: changes in memory must survive
        data = hdul[1].data
        data[500, 500] = -1.0
        assert not release_pages(data)
        assert data[500, 500] == -1.0
    assert not release_pages(np.ones(3))


def test_streamed_file_is_the_atomic_one_with_every_frame_released(tmp_path):
    paths = _frames(tmp_path)
    opened = [fits.open(p, memmap=True, mode="denywrite") for p in paths]
    try:
        def mef_list():
            hdus = [fits.ImageHDU(h[1].data, header=h[1].header) for h in opened[:-1]]
            # -fpack: astropy compresses and writes it, its map is released (its bits as integers: lossless Rice
            # is reproducible, astropy's float compression carries the time)
            hdus.append(fits.CompImageHDU(opened[-1][1].data.view(">i4"), name="OTA2.BITS"))
            table = fits.BinTableHDU.from_columns([fits.Column("X", "E", array=np.arange(5.0))], name="CAT")
            return fits.HDUList([fits.PrimaryHDU(header=fits.Header({"OBSID": "o1"})), *hdus, table])

        write_fits_atomic(mef_list(), tmp_path / "whole.fits")
        for h in opened:
            release_pages(h[1].data)
        write_fits_streamed(mef_list(), tmp_path / "streamed.fits")
        assert sum(_resident_mb(p) for p in paths) == 0.0
    finally:
        for h in opened:
            h.close()
    assert (tmp_path / "streamed.fits").read_bytes() == (tmp_path / "whole.fits").read_bytes()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_flat_level_holds_one_mapped_frame_at_a_time(tmp_path):
    paths = _frames(tmp_path)
    in_memory = {i: fits.getdata(p) for i, p in enumerate(paths)}
    opened = [fits.open(p, memmap=True, mode="denywrite") for p in paths]
    try:
        level = flatfield.flat_level({i: h[1].data for i, h in enumerate(opened)}, [0, 1, 2])
        assert sum(_resident_mb(p) for p in paths) == 0.0
    finally:
        for h in opened:
            h.close()
    assert level == flatfield.flat_level(in_memory, [0, 1, 2])
    assert abs(level - 100.0) < 0.1  # the frames' mean
