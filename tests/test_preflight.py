"""Before a run: [reduction] typos and bad values, unwritable folders, temporaries of killed runs (issue 21);
atomic writes fsync before the rename, except intermediate checkpoints."""

import os
import subprocess
import sys
import time

import pytest

from podisteps.io import atomic
from workflows import cli
from workflows.paths import SetupError, check_reduction_config, check_writable, preflight


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _temporary(folder, pid, *, age_s):
    path = folder / f".o20131005T030000.0.33.detrend.abc.tmp-{pid}-0123abcd.fits"
    path.write_bytes(b"partial")
    os.utime(path, (time.time() - age_s, time.time() - age_s))
    return path


def test_stale_temporaries_are_removed_live_and_fresh_ones_kept(tmp_path):
    deep = tmp_path / "20131004" / "o20131005T030000.0" / "detrend"
    deep.mkdir(parents=True)
    dead = _dead_pid()
    stale = _temporary(deep, dead, age_s=3600)
    fresh = _temporary(tmp_path, dead, age_s=0)  # a writer elsewhere may still be at it
    mine = _temporary(deep, os.getpid(), age_s=3600)
    product = deep / "o20131005T030000.0.33.detrend.abc.fits"
    product.write_bytes(b"done")
    assert atomic.remove_stale_temporaries(tmp_path) == [stale]
    assert not stale.exists() and fresh.exists() and mine.exists() and product.exists()
    assert atomic.remove_stale_temporaries(tmp_path / "missing") == []


def test_atomic_write_fsyncs_file_and_folder_before_and_after_the_rename(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or real(fd))
    target = tmp_path / "a" / "x.json"
    atomic.write_text_atomic("{}", target)
    assert target.read_text() == "{}"
    assert len(synced) == 2 and ".tmp-" in synced[0] and synced[0].endswith(".json")
    assert synced[1] == str(tmp_path / "a")
    assert [p.name for p in target.parent.iterdir()] == ["x.json"]


def test_a_checkpoint_is_renamed_into_place_without_fsync(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(os, "fsync", synced.append)
    target = tmp_path / "a" / "x.fits"
    with atomic.atomic_path(target, durable=False) as tmp:
        tmp.write_bytes(b"checkpoint")
    assert synced == [] and target.read_bytes() == b"checkpoint"
    assert [p.name for p in target.parent.iterdir()] == ["x.fits"]


@pytest.mark.parametrize("key, value, message", [
    ("fixwsc", "true", "luigi.cfg [reduction]: unknown reduction option 'fixwsc'"),
    ("crj", "many", "luigi.cfg [reduction]: -crj=many: "),
])
def test_reduction_typos_and_bad_values_are_one_line_errors(podiflow_config, tmp_path, capsys, key, value, message):
    (tmp_path / "raw" / "20131004").mkdir(parents=True)
    podiflow_config(raw_dir=tmp_path / "raw", **{key: value})
    with pytest.raises(SetupError) as error:
        check_reduction_config()
    assert str(error.value).startswith(message) and "\n" not in str(error.value)
    assert cli.podiflow_main(["reduce", "20131004"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"podiflow reduce: {error.value}"]
    assert not (tmp_path / "work" / "20131004").exists()  # found before any work


def test_unwritable_output_found_at_start(podiflow_config, tmp_path, capsys):
    (tmp_path / "raw" / "20131004").mkdir(parents=True)
    (tmp_path / "blocker").write_text("a file where a folder should be")
    podiflow_config(raw_dir=tmp_path / "raw", out_dir=tmp_path / "blocker" / "out")
    assert cli.podiflow_main(["reduce", "20131004"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"podiflow reduce: [podiflow] out_dir = {tmp_path / 'blocker' / 'out'}: "
                   f"{tmp_path / 'blocker'} is not a folder"]


def test_read_only_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # root may write anywhere: simulate read-only
    with pytest.raises(SetupError, match=rf"^\[podiflow\] work_dir = {tmp_path}/w: {tmp_path} is not writable$"):
        check_writable(tmp_path / "w", "[podiflow] work_dir")


def test_preflight_removes_the_nights_stale_temporaries(podiflow_config, tmp_path):
    podiflow_config(raw_dir=tmp_path / "raw")
    (tmp_path / "work" / "20131004").mkdir(parents=True)
    stale = _temporary(tmp_path / "work" / "20131004", _dead_pid(), age_s=3600)
    other_night = tmp_path / "work" / "20131005"
    other_night.mkdir()
    kept = _temporary(other_night, _dead_pid(), age_s=3600)
    assert preflight(["20131004"]) == [stale] and kept.exists()
