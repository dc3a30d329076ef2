"""BPM region parsing and rasterisation; saturation, bleed and persistency masks."""

import math

import numpy as np
import pytest

from podisteps import instrument
from podisteps.detrend.masks import (BoxRegion, VectorRegion, apply_mask, bpm_mask, parse_ds9_regions, persistency_mask,
                                     rasterise_bpm, saturation_masks, split_regions_in_frame)
from podisteps.detrend.persistency import SATPIX_DTYPE
from podisteps.maskbits import MASK_BITS

FULL1 = instrument.geometry("full", 1)
FULL2 = instrument.geometry("full", 2)
TEST1 = instrument.geometry("test", 1)


def _box_pixels(mask):
    rows, cols = np.nonzero(mask)
    return rows.min(), rows.max(), cols.min(), cols.max(), int(mask.sum())


def test_one_based_box_masks_exact_pixels():
    # ds9 centre (11, 21) is numpy (10, 20); 4 wide -> cols 8..11, 6 high -> rows 17..22.
    mask = rasterise_bpm(parse_ds9_regions("box(11,21,4,6,0)").regions, FULL1)
    assert _box_pixels(mask) == (17, 22, 8, 11, 24)


def test_box_is_converted_for_binning_and_scale():
    mask = rasterise_bpm(parse_ds9_regions("box(11,21,4,6,0)").regions, FULL2)
    assert _box_pixels(mask) == (9, 11, 4, 5, 6)
    # A full-height 38-px column in bin1 OTA pixels on the 8x smaller test OTA.
    mask = rasterise_bpm(parse_ds9_regions("box(496.5,2048.5,40,4096,0)").regions, TEST1)
    assert _box_pixels(mask) == (0, 511, 59, 63, 512 * 5)


def test_rotated_box_masks_the_rotated_pixels():
    box = BoxRegion(x=201, y=101, width=40, height=6, angle=30, line=1)
    mask = rasterise_bpm([box], FULL1)
    yy, xx = np.mgrid[0:300, 0:400] + 0.5
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    dx, dy = xx - 200.5, yy - 100.5
    along, across = dx * c + dy * s, dy * c - dx * s
    expected = (np.abs(along) < 20 - 1e-9) & (np.abs(across) < 3 - 1e-9)
    assert np.array_equal(mask[:300, :400] & ~_boundary(along, across, 20, 3), expected)
    assert abs(mask.sum() - 240) < 12
    # Far along the long axis: in; just beside the short side of an unrotated box: out.
    assert mask[100 + 9, 200 + 16] and not mask[100 + 3, 200 + 18]


def _boundary(along, across, half_w, half_h):
    """Pixels whose centre is within float rounding of an edge (either answer is fine there)."""
    return (np.abs(np.abs(along) - half_w) < 1e-6) | (np.abs(np.abs(across) - half_h) < 1e-6)


def test_box_rotated_by_90_equals_swapped_box():
    a = rasterise_bpm([BoxRegion(50, 60, 10, 4, 90, 1)], FULL1)
    b = rasterise_bpm([BoxRegion(50, 60, 4, 10, 0, 1)], FULL1)
    assert np.array_equal(a, b) and a.sum() == 40


REGION_FILE = """# Region file format: DS9 version 4.1
global color=green dashlist=8 3 width=1 font="helvetica 10 normal roman" select=1
image
box(11,21,4,6,0)
image;box(101,101,2,2,0) # color=red
    box(201, 201, 2, 2)
# vector(600,300,50,90) vector=1
vector(600,300,50,0.5) vector=1
# vector(600,300,50,45) vector=1
# text(10,10) text={hello}
circle(5,5,3)
-box(5,5,3,3,0)
box(1,2,x,4,0)
box(1,2,3)
this is not a region
fk5
box(10:00:00,+20:00:00,3",3",0)
image
box(16000,2000,10,10,0)
box(301,301,2,2,0)"""


def test_parser_accepts_what_ds9_writes_and_reports_the_rest():
    parsed = parse_ds9_regions(REGION_FILE)  # no trailing newline
    boxes = [r for r in parsed.regions if isinstance(r, BoxRegion)]
    vectors = [r for r in parsed.regions if isinstance(r, VectorRegion)]
    assert [(b.x, b.y, b.line) for b in boxes] == [(11, 21, 4), (101, 101, 5), (201, 201, 6), (16000, 2000, 19),
                                                  (301, 301, 20)]
    assert [(v.angle, v.line) for v in vectors] == [(90, 7), (0.5, 8), (45, 9)]
    reasons = {i.line: i.reason for i in parsed.ignored}
    assert sorted(reasons) == [10, 11, 12, 13, 14, 15, 17]
    assert "text" in reasons[10] and "circle" in reasons[11] and "excluded" in reasons[12]
    assert "not plain pixel numbers" in reasons[13] and "3 arguments" in reasons[14]
    assert "cannot parse" in reasons[15] and "fk5" in reasons[17]


def test_vectors_and_out_of_frame_regions():
    mask, ignored = bpm_mask(parse_ds9_regions(REGION_FILE), FULL1)
    # '# vector(600,300,50,90)': numpy (599, 299) lies in cell (1, 7) -> its column 599 over the cell's rows.
    rows, cols = FULL1.target_region(1, 7)
    assert np.all(mask[rows, 599]) and not mask[rows.stop, 599] and not mask[rows.stop + 11, 599]
    # bare 'vector(...,0.5)': row 299 over the cell's columns 508..987.
    assert np.all(mask[299, cols]) and not mask[299, cols.start - 1] and not mask[299, cols.stop]
    reasons = {i.line: i.reason for i in ignored}
    assert "neither horizontal nor vertical" in reasons[9]
    assert "outside" in reasons[19]  # mosaic coordinates are reported, not silently dropped
    assert mask[300, 300] and mask[20, 10]


def test_vector_in_a_gap_is_ignored():
    gap_x = FULL1.data_nx + 5  # between cell columns 0 and 1 (1-based: +1)
    used, ignored = split_regions_in_frame([VectorRegion(gap_x + 1, 100, 10, 0, 3)], FULL1)
    assert used == [] and "not inside a cell" in ignored[0].reason and ignored[0].line == 3


def test_apply_mask_sets_bit_and_nan():
    sci = np.ones((4, 4), dtype=np.float32)
    mask = np.zeros((4, 4), dtype=np.uint16)
    where = np.zeros((4, 4), dtype=bool)
    where[1, 2] = True
    apply_mask(sci, mask, where, "BPM")
    apply_mask(sci, mask, where, "SATURATED", blank=False)
    assert np.isnan(sci[1, 2]) and mask[1, 2] == MASK_BITS["BPM"] | MASK_BITS["SATURATED"]
    assert np.isfinite(sci).sum() == 15 and mask.sum() == mask[1, 2]


def _catalog(rows):
    table = np.zeros(len(rows), dtype=SATPIX_DTYPE)
    for i, row in enumerate(rows):
        table[i] = row
    return table


# cell (2, 5): column 10 saturated at rows 20 and 30, column 11 at row 25; an overscan pixel at column 65.
SATURATED = _catalog([(2, 5, 10, 30), (2, 5, 10, 20), (2, 5, 11, 25), (2, 5, 65, 3)])


def test_bleed_and_saturated_pixels_of_this_frame():
    saturated, bleed = saturation_masks(SATURATED, TEST1)
    rows, cols = TEST1.target_region(2, 5)
    y1, x1 = rows.start, cols.start
    assert saturated.sum() == 3 and saturated[y1 + 20, x1 + 10] and saturated[y1 + 25, x1 + 11]
    expected = np.zeros_like(bleed)
    expected[y1 + 20:rows.stop, x1 + 10] = True
    expected[y1 + 25:rows.stop, x1 + 11] = True
    assert np.array_equal(bleed, expected)


def test_persistency_of_earlier_frame():
    mask = persistency_mask(SATURATED, TEST1)
    rows, cols = TEST1.target_region(2, 5)
    expected = np.zeros_like(mask)
    expected[rows.start:rows.start + 31, cols.start + 10] = True  # rows [0, 30]: the top saturated row too
    expected[rows.start:rows.start + 26, cols.start + 11] = True
    assert np.array_equal(mask, expected)
    assert not persistency_mask(_catalog([]), TEST1).any()


def test_masks_convert_catalog_binning():
    geo = instrument.geometry("test", 2)
    rows, cols = geo.target_region(2, 5)
    mask = persistency_mask(SATURATED, geo, catalog_binning=1)
    assert np.array_equal(np.nonzero(mask.any(axis=0))[0], [cols.start + 5])
    assert mask[:, cols.start + 5].sum() == 16  # rows [0, 30] at bin1 -> [0, 15] at bin2
    saturated, bleed = saturation_masks(_catalog([(0, 7, 3, 4)]), TEST1, catalog_binning=2)
    assert _box_pixels(saturated) == (8, 9, 6, 7, 4)
    assert _box_pixels(bleed)[:4] == (8, TEST1.data_ny - 1, 6, 7)


@pytest.mark.parametrize("geo", [TEST1, FULL2])
def test_saturation_uses_cell_placement(geo):
    saturated, _ = saturation_masks(_catalog([(cx, cy, 0, 0) for cx, cy in instrument.CELL_IDS]), geo)
    origins = {(geo.cell_origin(cx, cy)[1], geo.cell_origin(cx, cy)[0]) for cx, cy in instrument.CELL_IDS}
    assert set(zip(*np.nonzero(saturated))) == origins
