"""``podiflow watch``: exposures are read only once complete, and each science exposure is reduced as it lands."""

import shutil
import threading
import time
import tomllib
from pathlib import Path

import luigi
import pytest
from astropy.table import Table

from podisteps.instrument.packagedata import configs_dir
from podisteps.io.nightindex import night_signature
from podisteps.io.rawio import read_primary_header
from podisteps.simulate import simulate_night
from workflows import cli
from workflows.night import ReduceExposure
from workflows.paths import out_root
from workflows.watch import ArrivalTracker, WatchSettings, _drop_gone, watch_night


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _copy_exposure(source: Path, night_dir: Path) -> Path:
    target = night_dir / source.name
    shutil.copytree(source, target)
    return target


def test_tracker_reports_a_folder_once_it_has_settled_and_is_complete(small_night, tmp_path):
    night = next((small_night / "raw").iterdir())
    science = sorted(night.iterdir())[-1]
    clock = _Clock()
    tracker = ArrivalTracker(tmp_path / night.name, settle=10.0, clock=clock)
    assert tracker.poll() == []  # the night folder does not exist yet
    folder = _copy_exposure(science, tmp_path / night.name)
    first = sorted(folder.iterdir())[0]
    kept = first.read_bytes()
    first.write_bytes(kept[: len(kept) // 2])  # still being written
    assert tracker.poll() == []
    clock.now = 30.0
    [truncated] = tracker.poll()
    assert truncated.problem.startswith(f"{first}: truncated") and "2880-byte" in truncated.problem
    clock.now = 60.0
    assert tracker.poll() == []  # reported once
    first.write_bytes(kept)  # the transfer completes: judged again once settled
    clock.now = 61.0
    assert tracker.poll() == []
    clock.now = 65.0
    assert tracker.poll() == []  # changed 4 s ago: not settled
    clock.now = 71.5
    [complete] = tracker.poll()
    assert complete.folder == folder and complete.obstype == "OBJECT" and not complete.problem


def test_tracker_names_missing_otas(small_night, tmp_path):
    night = next((small_night / "raw").iterdir())
    folder = _copy_exposure(sorted(night.iterdir())[-1], tmp_path / night.name)
    for path in sorted(folder.iterdir())[-2:]:
        path.unlink()
    clock = _Clock()
    tracker = ArrivalTracker(tmp_path / night.name, settle=5.0, clock=clock)
    tracker.poll()
    clock.now = 6.0
    [arrival] = tracker.poll()
    assert "2 OTA file(s) missing" in arrival.problem


def _replay(source_night: Path, target_night: Path, *, spacing: float, slow: str, log: dict,
            hold=None) -> None:
    """Copy exposures in order, ``spacing`` s apart; the exposure ``slow`` has one file written in 4 pieces.

    ``hold``: ``(obsid, ready)``: wait (at most 10 min) until ``ready()`` before that exposure lands.
    """
    target_night.mkdir(parents=True)
    for exposure in sorted(source_night.iterdir()):
        if hold is not None and exposure.name == hold[0]:
            deadline = time.monotonic() + 600
            while not hold[1]() and time.monotonic() < deadline:
                time.sleep(0.5)
        folder = target_night / exposure.name
        folder.mkdir()
        files = sorted(exposure.iterdir())
        for path in files[1:] if exposure.name == slow else files:
            shutil.copy2(path, folder / path.name)
        if exposure.name == slow:
            data = files[0].read_bytes()
            with open(folder / files[0].name, "wb") as fh:
                for i in range(4):
                    fh.write(data[i * len(data) // 4:(i + 1) * len(data) // 4])
                    fh.flush()
                    time.sleep(spacing)
            log["slow_done"] = time.time()
        time.sleep(spacing)


@pytest.mark.fullsize
def test_watch_reduces_every_science_exposure_of_a_replayed_night(tmp_path, podiflow_config):
    source = tmp_path / "sim"
    simulate_night("test-small", source, seed=11)
    source_night = next((source / "raw").iterdir())
    science = [p.name for p in sorted(source_night.iterdir())
               if read_primary_header(next(p.iterdir()))["OBSTYPE"] == "OBJECT"]
    slow = science[1]
    podiflow_config(raw_dir=tmp_path / "raw", mastercals_dir=source / "mastercals", noqaplots="true")
    log: dict = {}
    replay = threading.Thread(target=_replay, args=(source_night, tmp_path / "raw" / source_night.name),
                              kwargs={"spacing": 0.5, "slow": slow, "log": log})
    lines: list[str] = []
    replay.start()
    code = watch_night(source_night.name, WatchSettings(workers=1, settle=2.0, poll=0.5, idle_exit=8.0),
                       say=lines.append)
    replay.join()
    assert code == 0
    view = tmp_path / "work" / "watch" / "raw" / source_night.name
    assert view.joinpath(slow).lstat().st_mtime >= log["slow_done"]  # linked only after its last piece
    summary = Table.read(out_root() / source_night.name / "summary.ecsv")
    reduced = {row["obsid"] for row in summary if row["status"] == "reduced"}
    assert set(science) <= reduced
    assert sum(line.startswith("podiflow: ") for line in lines) == len(science)


def test_a_linked_exposure_whose_folder_is_gone_is_left_out_with_one_line(tmp_path):
    # a second watch of a night whose raw exposure folder was deleted or moved in between: its link in the
    # view points at nothing, and the night's index (which reads the view) must not trip over it
    raw, view = tmp_path / "raw" / "20131004", tmp_path / "view" / "20131004"
    view.mkdir(parents=True)
    for name in ("o20131005T013408.0", "o20131005T013939.0"):
        (raw / name).mkdir(parents=True)
        (view / name).symlink_to(raw / name, target_is_directory=True)
    (raw / "o20131005T013939.0").rmdir()
    assert [name for name, _ in night_signature(view)] == ["o20131005T013408.0"]
    lines: list[str] = []
    _drop_gone(view, lines.append)
    _drop_gone(view, lines.append)
    assert [p.name for p in view.iterdir()] == ["o20131005T013408.0"]
    assert len(lines) == 1 and "o20131005T013939.0" in lines[0] and "left out" in lines[0]


def _night_spec(*, start: str, kinds: tuple) -> dict:
    """The test-small spec moved to ``start``, with its sequences of ``kinds`` in that order (no late field)."""
    spec = tomllib.loads((configs_dir() / "nights" / "test-small.toml").read_text())
    spec["night"]["start"] = start
    sequences = [s for s in spec["sequence"] if "start" not in s]
    spec["sequence"] = [s for kind in kinds for s in sequences if s["type"] == kind]
    return spec


@pytest.mark.fullsize
def test_watch_borrows_masters_until_the_night_has_its_own_then_reduce_rebuilds_those(tmp_path, podiflow_config,
                                                                                       capsys):
    sim = tmp_path / "sim"
    simulate_night(_night_spec(start="2013-10-05T01:30:00", kinds=("bias", "dark", "dflat")), sim, seed=7)
    simulate_night(_night_spec(start="2013-10-06T01:30:00", kinds=("bias", "dark", "object", "dflat")), sim, seed=7)
    before, night = sorted(p.name for p in (sim / "raw").iterdir())
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / before).symlink_to(sim / "raw" / before, target_is_directory=True)
    podiflow_config(raw_dir=tmp_path / "raw", mastercals_dir=sim / "mastercals", noqaplots="true")
    folders = sorted((sim / "raw" / night).iterdir())
    types = {f.name: read_primary_header(next(f.iterdir()))["OBSTYPE"] for f in folders}
    science = [name for name, kind in types.items() if kind == "OBJECT"]
    mefs = {obsid: out_root() / night / obsid / f"{obsid}.fits" for obsid in science}
    first_flat = next(name for name, kind in types.items() if kind == "DFLAT")
    ready = (first_flat, lambda: all(m.exists() for m in mefs.values()))  # the flats come in the morning
    replay = threading.Thread(target=_replay, args=(sim / "raw" / night, tmp_path / "raw" / night),
                              kwargs={"spacing": 0.2, "slow": "", "log": {}, "hold": ready})
    replay.start()
    lines: list[str] = []
    assert watch_night(night, WatchSettings(workers=1, settle=1.5, poll=0.5, idle_exit=8.0), say=lines.append) == 0
    replay.join()
    assert len(science) == 4 and sum(line.startswith("podiflow: ") and "reduced" in line for line in lines) == 4
    made = {obsid: mef.stat().st_mtime_ns for obsid, mef in mefs.items()}

    # the night's own flats came after its science: every MEF was made with the night before's flats
    capsys.readouterr()
    cli.podiflow_main(["status", night])
    superseded = {line.split()[1] for line in capsys.readouterr().out.splitlines()
                  if line.strip().startswith("superseded")}
    assert superseded == {str(m) for m in mefs.values()}
    assert cli.podiflow_main(["reduce", night, "--workers", "1"]) == 0
    assert all(mefs[o].stat().st_mtime_ns > made[o] for o in science)  # rebuilt with the night's own masters
    luigi.task_register.Register.clear_instance_cache()
    assert all(ReduceExposure(obsid=o).requires()[0].complete() for o in science)
