"""Geometry and layout facts of docs/instrument.md, pinned."""

import math

import pytest

from podisteps import instrument


def test_bin1_cell_origins_and_gaps():
    geo = instrument.geometry("full", 1)
    xs = [geo.cell_origin(cx, 0)[0] for cx in range(8)]
    assert xs == [0, 508, 1016, 1524, 2032, 2540, 3048, 3556]
    ys = [geo.cell_origin(0, cy)[1] for cy in range(7, -1, -1)]
    assert ys == [0, 505, 1010, 1515, 2020, 2525, 3030, 3535]
    # 28 px streets in x, 11 px in y
    assert xs[1] - (xs[0] + geo.data_nx) == 28
    assert ys[1] - (ys[0] + geo.data_ny) == 11
    assert (geo.data_ny, geo.data_nx, geo.ota_size) == (494, 480, 4096)
    assert xs[-1] + geo.data_nx == 4036 and ys[-1] + geo.data_ny == 4029


def test_xy07_is_bottom_left_and_xy00_top_left():
    geo = instrument.geometry("full", 1)
    rows, cols = geo.target_region(0, 7)
    assert (rows.start, cols.start) == (0, 0)
    rows, cols = geo.target_region(0, 0)
    assert (rows.start, cols.start) == (3535, 0)
    rows, cols = geo.target_region(7, 7)
    assert (rows.start, cols.start) == (0, 3556)
    assert geo.cell_at(10, 10) == (0, 7)
    assert geo.cell_at(490, 10) is None  # in the 28-px street


def test_sections_bin1_and_bin2():
    g1 = instrument.geometry("full", 1)
    assert g1.data_section() == (slice(0, 494), slice(0, 480))
    assert g1.overscan_section() == (slice(0, 494), slice(500, 550))
    g2 = instrument.geometry("full", 2)
    assert g2.data_section() == (slice(0, 247), slice(0, 240))
    assert g2.overscan_section() == (slice(0, 246), slice(260, 277))
    assert g2.ota_size == 2048
    assert [g2.cell_origin(0, cy)[1] for cy in range(7, -1, -1)] == [0, 253, 505, 758, 1010, 1263, 1515, 1768]
    assert [g2.cell_origin(cx, 7)[0] for cx in range(8)] == [254 * i for i in range(8)]


def test_trimcell_cuts_every_edge():
    geo = instrument.geometry("full", 1)
    rows, cols = geo.target_region(1, 6, trimcell=3)
    assert (rows.start, rows.stop, cols.start, cols.stop) == (505 + 3, 505 + 494 - 3, 508 + 3, 508 + 480 - 3)
    assert geo.data_section(trimcell=3) == (slice(3, 491), slice(3, 477))


def test_test_instrument_same_field_of_view():
    full, test = instrument.geometry("full", 1), instrument.geometry("test", 1)
    assert test.scale == 8
    assert abs(test.ota_size * test.scale - full.ota_size) / full.ota_size < 0.01
    assert abs(test.data_nx * test.scale - full.data_nx) <= 8


def test_geometry_for_cell_shape():
    assert instrument.geometry_for_cell_shape((494, 550), 1).kind == "full"
    assert instrument.geometry_for_cell_shape((494, 540), 1).kind == "full"  # narrower overscan accepted
    assert instrument.geometry_for_cell_shape((62, 70), 1).kind == "test"
    assert instrument.geometry_for_cell_shape((247, 277), 2).kind == "full"
    with pytest.raises(ValueError, match="fits no known OTA geometry"):
        instrument.geometry_for_cell_shape((400, 550), 1)
    with pytest.raises(ValueError, match="binning 3"):
        instrument.geometry("full", 3)


def test_layout_switch_by_mjd():
    assert instrument.layout_for_mjd(57022.99).name == "podi"
    assert instrument.layout_for_mjd(57023.0).name == "odi_5x6"
    podi = instrument.layout("podi")
    assert podi.otas == (33, 34, 44, 43, 42, 32, 22, 23, 24, 55, 61, 16, 0)
    assert podi.ota_list("central") == (33, 34, 44, 43, 42, 32, 22, 23, 24)
    assert podi.serial(33) == "13879" and podi.serial(0) == "13838"


def test_5x6_order_and_dead_ota21():
    odi = instrument.layout("odi_5x6")
    assert len(odi.otas) == 30
    assert odi.otas[:4] == (33, 34, 43, 44)
    # sorted by distance from (3.49, 3.49), ties broken by OTA number
    d = [math.hypot(o // 10 - 3.49, o % 10 - 3.49) for o in odi.otas]
    assert d == sorted(d)
    assert 21 in odi.otas_at(58529.99)
    assert 21 not in odi.otas_at(58530.0)
    assert len(odi.otas_at(58530.0)) == 29


def test_per_filter_lists():
    podi, odi = instrument.layout("podi"), instrument.layout("odi_5x6")
    assert 0 not in podi.flat_normalisation_otas("odi_r")
    assert set(podi.flat_normalisation_otas("CTIO_Ha")) == {22, 23, 32, 33}
    assert podi.blocked_otas("CTIO_Ha") == (55, 61)
    assert podi.blocked_otas("odi_r") == () and podi.blocked_otas("odi_u") == ()
    assert len(podi.photometry_otas("odi_g")) == 13 and len(podi.photometry_otas("CTIO_Ha")) == 9
    # 5x6: own lists (QuickReduce's [bug] gave it pODI's)
    assert odi.blocked_otas("CTIO_Ha") == ()
    assert set(odi.flat_normalisation_otas("odi_i")) == {x * 10 + y for x in range(2, 6) for y in range(2, 6)}


def test_broken_cells_and_cellmode():
    assert instrument.broken_cells("13838") == frozenset((7, cy) for cy in range(8))
    assert len(instrument.broken_cells("17275")) == 20
    assert (0, 5) not in instrument.broken_cells("17144", 58529.0)
    assert (0, 5) in instrument.broken_cells("17144", 58530.0)
    with pytest.raises(ValueError, match="unknown detector serial"):
        instrument.broken_cells("99999")
    mode = list("S" * 64)
    mode[1 + 8 * 2] = "V"
    mode[2 + 8 * 2] = "F"
    mode[3 + 8 * 2] = "D"
    mode[4 + 8 * 2] = "Q"  # unknown: skipped, never a crash
    mode = "".join(mode)
    kw = dict(cellmode=mode, serial="13879", mjd=56000.0)
    assert instrument.cell_is_used(33, 0, 0, **kw)
    assert not any(instrument.cell_is_used(33, cx, 2, **kw) for cx in (1, 2, 3, 4))
    assert instrument.is_guide_ota(mode)
    most = instrument.parse_keepcells("most")
    assert instrument.cell_is_used(33, 1, 2, keepcells=most, **kw)       # video kept
    assert not instrument.cell_is_used(33, 2, 2, keepcells=most, **kw)   # floated never
    assert instrument.cell_is_used(33, 2, 2, keepcells=instrument.parse_keepcells(True), **kw)
    listed = instrument.parse_keepcells("33.12,44.07")
    assert instrument.cell_is_used(33, 1, 2, keepcells=listed, **kw)
    assert not instrument.cell_is_used(33, 3, 2, keepcells=listed, **kw)
    with pytest.raises(ValueError, match="OTA.cxcy"):
        instrument.parse_keepcells("33.18")
