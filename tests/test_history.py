"""QuickReduce history files and the -wcs/-crosstalk/-nonlinearity resolver."""

import pytest

from podisteps.masters.history import parse_history, resolve_calibration, select_entry

HISTORY = """\
# comment line
0.00 first.fits
   # indented comment
56582 second.fits http://example.org/second.fits
lonely
56750.3   third.fits
"""


def test_parse_skips_comments_and_short_lines():
    entries = parse_history(HISTORY)
    assert [(e.mjd, e.filename, e.url, e.line) for e in entries] == [
        (0.0, "first.fits", None, 2),
        (56582.0, "second.fits", "http://example.org/second.fits", 4),
        (56750.3, "third.fits", None, 6),
    ]


def test_parse_rejects_bad_mjd():
    with pytest.raises(ValueError, match="line 2"):
        parse_history("0 a.fits\nsoon b.fits\n", source="x.history")


@pytest.mark.parametrize("mjd, expected", [(-1, None), (0, "first.fits"), (56581.99, "first.fits"),
                                           (56582, "second.fits"), (56750.3, "third.fits"), (60000, "third.fits")])
def test_last_entry_not_after_frame_wins(mjd, expected):
    entry = select_entry(parse_history(HISTORY), mjd)
    assert (entry.filename if entry else None) == expected


def test_last_in_file_order_wins_even_if_unsorted():
    entries = parse_history("100 late.fits\n50 early.fits\n")
    assert select_entry(entries, 200).filename == "early.fits"


@pytest.fixture
def caldir(tmp_path):
    folder = tmp_path / "crosstalk" / "podi"
    folder.mkdir(parents=True)
    (folder / "crosstalk.history").write_text(HISTORY)
    for name in ("first.fits", "second.fits"):
        (folder / name).write_bytes(b"x")
    return folder


def test_resolve_auto_uses_default_dir(caldir):
    kw = dict(history_name="crosstalk.history", default_dir=caldir)
    assert resolve_calibration(None, mjd=56000, **kw) == caldir / "first.fits"
    assert resolve_calibration("auto", mjd=56600, **kw) == caldir / "second.fits"
    # The history names third.fits, which does not exist: auto mode reports "nothing", not an error.
    assert resolve_calibration("", mjd=57000, **kw) is None
    assert resolve_calibration(None, mjd=57000, history_name="crosstalk.history", default_dir=None) is None
    assert resolve_calibration(None, mjd=57000, history_name="other.history", default_dir=caldir) is None


def test_resolve_folder_file_and_history(caldir, tmp_path):
    kw = dict(history_name="crosstalk.history", default_dir=None)
    assert resolve_calibration(str(caldir), mjd=56600, **kw) == caldir / "second.fits"
    assert resolve_calibration(caldir / "first.fits", mjd=56600, **kw) == caldir / "first.fits"
    assert resolve_calibration(caldir / "crosstalk.history", mjd=1, **kw) == caldir / "first.fits"
    with pytest.raises(FileNotFoundError, match="nope.fits"):
        resolve_calibration(tmp_path / "nope.fits", mjd=1, **kw)
    with pytest.raises(FileNotFoundError, match="names no existing file"):
        resolve_calibration(caldir, mjd=57000, **kw)
