"""``workflows.launch``: the IERS table that every build reads first, parsed once and then kept in a cache."""

import json
import os
import subprocess
import sys

import pytest

#: Almanac cards of 2013-10-05T07:00 UT after ``load_earth_rotation(CACHE)`` in a fresh process; prints
#: ``[cache files before, cards, whether the bundled file was parsed]``.
_SCRIPT = """
import json, sys
from pathlib import Path
from astropy.utils import iers
from podisteps.instrument import almanac
from workflows.launch import load_earth_rotation
cache = Path(sys.argv[1])
before = sorted(p.name for p in cache.glob("iers-*.pickle")) if cache.is_dir() else []
parsed = []
read = iers.IERS_Auto.read.__func__
iers.IERS_Auto.read = classmethod(lambda cls, *a, **k: parsed.append(1) or read(cls, *a, **k))
load_earth_rotation(cache)
print(json.dumps([before, almanac.almanac_keywords(56570.291666, 191.0, -4.7), bool(parsed)]))
"""


def _cards(cache):
    out = subprocess.run([sys.executable, "-c", _SCRIPT, str(cache)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def test_iers_table_is_parsed_once_then_read_from_the_cache_with_the_same_cards(tmp_path):
    cache = tmp_path / "cache"
    first_before, first, first_parsed = _cards(cache)
    second_before, second, second_parsed = _cards(cache)
    assert first_before == [] and first_parsed
    assert len(second_before) == 1 and not second_parsed
    assert second == first  # bit-identical: floats survive JSON exactly
    assert first["SUN_RISE"][0] == pytest.approx(13.40, abs=0.05)


def test_damaged_cache_is_parsed_again_and_replaced(tmp_path):
    cache = tmp_path / "cache"
    _, good, _ = _cards(cache)
    [kept] = cache.glob("iers-*.pickle")
    kept.write_bytes(b"not a pickle")
    _, again, parsed = _cards(cache)
    assert parsed and again == good
    assert kept.read_bytes() != b"not a pickle"


def test_unwritable_cache_costs_the_parse_not_the_run(tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")  # a file where the cache folder should be
    _, cards, parsed = _cards(blocked)
    assert parsed and blocked.read_text() == ""
    assert cards["SUN_RISE"][0] == pytest.approx(13.40, abs=0.05)


def test_cache_root_follows_the_environment(tmp_path, monkeypatch):
    from workflows.paths import cache_root

    monkeypatch.setenv("PODIFLOW_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"
    monkeypatch.delenv("PODIFLOW_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "podiflow"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "podiflow"


def test_build_keeps_the_table_in_the_installation_cache_not_the_work_folder(tmp_path):
    script = "from workflows.launch import build; assert build([], workers=1, local_scheduler=True)"
    env = {**os.environ, "PODIFLOW_CACHE_DIR": str(tmp_path / "installation")}
    subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path, env=env, capture_output=True)
    assert len(list((tmp_path / "installation").glob("iers-*.pickle"))) == 1
    assert not (tmp_path / "work" / "cache").exists()
