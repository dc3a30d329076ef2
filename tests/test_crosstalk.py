"""Crosstalk: file format, forward model and correction."""

import numpy as np
import pytest
from astropy.io import fits

from podisteps import instrument
from podisteps.detrend.crosstalk import (CHUNK_PIXELS, CrosstalkMatrices, add_crosstalk, apply_crosstalk_matrix,
                                         correct_crosstalk, crosstalk_hdulist, read_crosstalk)


def _fwd(seed=3):
    rng = np.random.default_rng(seed)
    fwd = rng.uniform(1.9e-5, 7.5e-4, (8, 8, 8))
    fwd[:, np.arange(8), np.arange(8)] = 1.0
    return fwd


def _cells(seed=4):
    geo = instrument.geometry("test", 1)
    rng = np.random.default_rng(seed)
    return {c: rng.uniform(0, 60000, (geo.raw_ny, geo.raw_nx)).astype(np.float32) for c in instrument.CELL_IDS}


def test_file_round_trip(tmp_path):
    path = tmp_path / "crosstalk_odi_5x6.fits"
    crosstalk_hdulist(_fwd()).writeto(path)
    with fits.open(path) as hdul:
        m = read_crosstalk(hdul)
    assert m.fwd.shape == m.inv.shape == (8, 8, 8) and m.fwd.dtype == np.float64
    for cy in range(8):
        assert np.allclose(m.fwd[cy] @ m.inv[cy], np.eye(8), atol=1e-12)


def test_reader_names_the_file_on_bad_input(tmp_path):
    path = tmp_path / "bad.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros((8, 8)), name="XTALK.FWD")]).writeto(path)
    with fits.open(path) as hdul, pytest.raises(ValueError, match="bad.fits.*XTALK.FWD"):
        read_crosstalk(hdul)


def test_forward_model_only_mixes_one_cell_row():
    fwd = np.zeros((8, 8, 8))
    fwd[:, np.arange(8), np.arange(8)] = 1.0
    fwd[2, 5, 1] = 1e-3  # cell row 2: source cx=5 leaks into target cx=1
    m = CrosstalkMatrices(fwd=fwd, inv=np.linalg.inv(fwd))
    truth = {c: np.zeros((4, 6), dtype=np.float32) for c in instrument.CELL_IDS}
    truth[(5, 2)][1, 3] = 50000.0
    observed = add_crosstalk(truth, m)
    assert observed[(1, 2)][1, 3] == pytest.approx(50.0)
    ghosts = [c for c in instrument.CELL_IDS if c != (5, 2) and np.any(observed[c] != 0)]
    assert ghosts == [(1, 2)]


def test_forward_then_inverse_recovers_truth():
    m = read_crosstalk(crosstalk_hdulist(_fwd()))
    truth = _cells()
    recovered = correct_crosstalk(add_crosstalk(truth, m), m)
    for c in instrument.CELL_IDS:
        assert recovered[c].dtype == np.float32
        assert np.allclose(recovered[c], truth[c], rtol=1e-6, atol=1e-6 * 60000)
    # Overscan columns are mixed too (full raw cells).
    assert not np.array_equal(add_crosstalk(truth, m)[(0, 0)][:, -1], truth[(0, 0)][:, -1])


def test_missing_cell_raises():
    cells = _cells()
    del cells[(3, 3)]
    with pytest.raises(ValueError, match="xy33"):
        correct_crosstalk(cells, read_crosstalk(crosstalk_hdulist(_fwd())))


def test_inplace_writes_the_same_values_into_the_cells():
    m = read_crosstalk(crosstalk_hdulist(_fwd()))
    observed = add_crosstalk(_cells(), m)
    expected = correct_crosstalk(observed, m)
    cells = {c: v.astype(np.float32) for c, v in observed.items()}
    cells[(0, 0)] = cells[(0, 0)].astype(np.float64)   # not float32: a new array
    cells[(1, 0)].flags.writeable = False              # read-only: a new array
    result = correct_crosstalk(cells, m, inplace=True)
    for c in instrument.CELL_IDS:
        np.testing.assert_array_equal(result[c], expected[c])
        assert (result[c] is cells[c]) == (c not in ((0, 0), (1, 0)))


def test_chunked_mixing_is_bit_identical_to_whole_cells():
    """Cells of several chunks and a partial last one: the same float32 values as one BLAS product per cell row."""
    rng = np.random.default_rng(11)
    inv = np.linalg.inv(_fwd())
    shape = (97, 211)  # 20467 pixels: two whole chunks of CHUNK_PIXELS and a partial one
    assert shape[0] * shape[1] > 2 * CHUNK_PIXELS
    cells = {c: rng.uniform(0, 60000, shape).astype(np.float32) for c in instrument.CELL_IDS}
    expected = {}
    for cy in range(8):
        whole = inv[cy].T @ np.stack([cells[(cx, cy)].ravel().astype(np.float64) for cx in range(8)])
        expected.update({(cx, cy): whole[cx].astype(np.float32).reshape(shape) for cx in range(8)})
    result = apply_crosstalk_matrix(cells, inv, inplace=True)
    for c in instrument.CELL_IDS:
        assert result[c] is cells[c]
        assert result[c].tobytes() == expected[c].tobytes()
