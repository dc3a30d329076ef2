"""Paths built from header values never leave their folder (issue 21): output-name tokens, FILTER, OBJECT,
OBSID and OBSSEQ, any %KEYWORD; hostile values of FILTER and OBSID are also refused in the night index."""

import os

import pytest
from astropy.io import fits

from podisteps.io import nightindex
from podisteps.io.outputname import format_filename, output_path, safe_component
from workflows.masters import master_name

from .rawfactory import OBSID, primary_header, write_ota

HOSTILE = ["../../../../X", "..", ".", "/etc/passwd", "a/../../b", "~root/x", "odi_i/../../../tmp/y", "\\..\\x"]


def _inside(path, folder) -> bool:
    return os.path.commonpath([os.path.realpath(path), os.path.realpath(folder)]) == os.path.realpath(folder)


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("token, key", [("%OBSID", "OBSID"), ("%OBSSEQ", "OBSID"), ("%OBJECT", "OBJECT"),
                                        ("%FILTER", "FILTER"), ("%PROPID", "PROPID")])
def test_output_name_tokens_stay_in_their_folder(tmp_path, token, key, value):
    header = fits.Header({"OBSID": "20131005T014745.1", "OBJECT": "M31", "FILTER": "odi_r", "EXPTIME": 30.0,
                          "PROPID": "2013B-0001"})
    header[key] = value
    name = format_filename(f"{tmp_path}/out/{token}/{token}.fits", header)
    path = output_path(name, fpack=False)
    assert _inside(path, tmp_path / "out"), path
    assert ".." not in path.relative_to(tmp_path).parts
    assert len(path.relative_to(tmp_path / "out").parts) <= 2  # never more folder levels than the template has


@pytest.mark.parametrize("value", HOSTILE)
def test_safe_component_is_one_harmless_component(value):
    out = safe_component(value)
    assert "/" not in out and "\\" not in out and out not in (".", "..") and len(out) == len(value)


def test_master_flat_name_from_a_hostile_filter(tmp_path):
    name = master_name("dflat", 1, "odi_i/../../../x")
    assert "/" not in name and _inside(tmp_path / "cals" / f"{name}.fits", tmp_path / "cals")
    assert master_name("dflat", 1, "odi_r") == "dflat_odi_r_bin1"


def _exposure(tmp_path, **cards):
    folder = tmp_path / "raw" / "20130228" / OBSID
    folder.mkdir(parents=True)
    path, _ = write_ota(folder)
    with fits.open(path, mode="update") as hdul:
        hdul[0].header.update(cards)
    return folder


def test_hostile_filter_is_refused_in_the_index(tmp_path):
    record = nightindex.read_exposure_record(_exposure(tmp_path, FILTER="odi_i/../../../tmp/y"))
    assert f"{OBSID}.33.fits: FILTER = 'odi_i/../../../tmp/y' is not a known ODI filter" in record.error


def test_hostile_obsid_is_refused_in_the_index(tmp_path):
    record = nightindex.read_exposure_record(_exposure(tmp_path, OBSID="../../../../X"))
    assert f"{OBSID}.33.fits: OBSID = '../../../../X' differs from its exposure's" in record.error
    assert primary_header()["OBSID"] == OBSID[1:]  # the factory's header agrees with its folder name
