"""What podiflow's commands print: one line per failure, the closing summary, the run log, progress, the
night lock, nothing-to-do exits, podi_collectcells -h and misspelled flags (test instrument)."""

import os
import re
import shutil
import threading
import time
from pathlib import Path

import luigi
import pytest
from astropy.io import fits
from astropy.table import Table

from workflows import cli
from workflows.failures import read_failures
from workflows.paths import night_index
from workflows.progress import live_progress, read_journal
from workflows.runlock import night_lock

from .rawfactory import shrink_first_cell_in_place

NIGHT = "20131004"


@pytest.fixture()
def broken_night(small_night, podiflow_config, tmp_path):
    """The small night's calibration frames and its last two (odi_i) science exposures: a good one and the
    last one, broken (its OTA 33 lost most of its first cell).

    Returns ``(tmp_path, good obsid, broken obsid)``.
    """
    raw = tmp_path / "raw" / NIGHT
    raw.mkdir(parents=True)
    folders = sorted((small_night / "raw" / NIGHT).iterdir())
    science = [f for f in folders if fits.getheader(next(f.glob("*.fits*")), 0)["OBSTYPE"] == "OBJECT"]
    good, broken = science[-2], science[-1]  # both odi_i: one filter's masters
    for folder in folders:
        if folder in science and folder not in (good, broken):
            continue
        if folder != broken:
            (raw / folder.name).symlink_to(folder, target_is_directory=True)
            continue
        (raw / broken.name).mkdir()
        for f in folder.iterdir():
            (raw / broken.name / f.name).symlink_to(f)
        bad = raw / broken.name / f"{broken.name}.33.fits"
        bad.unlink()
        shutil.copyfile(folder / bad.name, bad)
    podiflow_config(raw_dir=tmp_path / "raw", mastercals_dir=small_night / "mastercals", noqaplots="true",
                    masters="bias,flat")
    night_index(NIGHT)  # indexed whole: the damage is found by the task that reads the file
    shrink_first_cell_in_place(broken / bad.name, bad)
    return tmp_path, good.name, broken.name


def test_reduce_reports_a_broken_ota_in_one_line_with_the_log_and_summary(broken_night, small_night, capfd):
    work, GOOD, BROKEN = broken_night
    assert cli.podiflow_main(["reduce", NIGHT, "--workers", "1"]) == 1
    out, err = capfd.readouterr()
    console = out + err
    assert "Traceback" not in console and "INFO:" not in console and "ERROR:" not in console
    about = [line for line in console.splitlines() if BROKEN in line]
    assert 1 <= len(about) <= 3, console
    first = next(line for line in about if "FAILED" in line)
    assert f"{BROKEN}.33.fits" in first and "DetrendOTA(ota=33)" in first and "RawFormatError" not in first
    cause = first.split(f"FAILED {BROKEN}: ", 1)[1]
    assert f"night {NIGHT}: 1 reduced, 1 failed, 0 not run" in out
    log = re.search(r"full log: (\S+)", out)[1]
    assert log.startswith(str(work / "work" / "logs"))
    text = Path(log).read_text()
    assert "Traceback" in text and f"{BROKEN}.33.fits" in text
    table = Table.read(work / "out" / NIGHT / "summary.ecsv")
    row = table[table["obsid"] == BROKEN][0]
    assert row["status"] == "failed" and row["error"] == cause
    assert cause in (work / "out" / NIGHT / "summary.html").read_text().replace("&#x27;", "'")
    assert cli.podiflow_main(["status", NIGHT]) == 1
    assert f"({cause})" in capfd.readouterr().out

    # the file repaired: the rerun reports the state it produced, the old failure is gone
    bad = work / "raw" / NIGHT / BROKEN / f"{BROKEN}.33.fits"
    bad.unlink()
    bad.symlink_to(small_night / "raw" / NIGHT / BROKEN / bad.name)
    luigi.task_register.Register.clear_instance_cache()
    assert cli.podiflow_main(["reduce", NIGHT, "--workers", "1"]) == 0
    out = capfd.readouterr().out
    assert f"night {NIGHT}: 2 reduced, 0 failed, 0 not run" in out and "FAILED" not in out
    assert read_failures(NIGHT) == []
    table = Table.read(work / "out" / NIGHT / "summary.ecsv")
    assert list(table[table["obstype"] == "OBJECT"]["status"]) == ["reduced", "reduced"]


def test_collectcells_failure_in_one_line_keeps_the_previous_output(broken_night, capfd):
    work, _, broken = broken_night
    output = work / "mine.fits"
    output.write_text("previous")
    code = cli.collectcells_main([str(work / "raw" / NIGHT / broken), str(output), "-noqaplots", "-ncpu=1"])
    out, err = capfd.readouterr()
    assert code == 2 and "Traceback" not in out + err and "INFO" not in out + err
    about = [line for line in (out + err).splitlines() if f"{broken}.33.fits" in line]
    assert 1 <= len(about) <= 3 and all("DetrendOTA(ota=33)" in line for line in about), out + err
    assert output.read_text() == "previous" and f"the previous {output} is kept" in err
    log = Path(re.search(r"full log: (\S+)", err)[1])
    assert log.parent == work / "work" / "logs" and "Traceback" in log.read_text()
    assert not list(work.glob(".mine.fits.previous-*"))


def test_nothing_to_do_is_one_line_and_a_non_zero_exit(podiflow_config, tmp_path, capfd):
    podiflow_config(raw_dir=tmp_path / "raw")
    (tmp_path / "raw" / "20131005").mkdir(parents=True)  # a night folder without exposures
    for argv in (["reduce", NIGHT], ["reduce", "2013-10-04-2013-10-07"], ["status", NIGHT], ["reduce", "20131005"]):
        assert cli.podiflow_main(argv) == 2, argv
        out, err = capfd.readouterr()
        assert out == "" and len(err.splitlines()) == 1 and "Traceback" not in err, (argv, err)
        assert "no raw data" in err or "nothing to do" in err or "nothing to reduce" in err
    assert cli.podiflow_main(["status", NIGHT]) == 2
    assert capfd.readouterr().err == f"podiflow status: night {NIGHT}: no raw data: {tmp_path / 'raw' / NIGHT} " \
                                     "does not exist\n"


def test_collectcells_help_and_misspelled_flag(capsys):
    assert cli.collectcells_main(["-h"]) == 0
    usage = capsys.readouterr().out
    assert usage.startswith("usage: podi_collectcells INPUT OUTPUT.fits")
    for flag in ("-fixwcs", "-photcalib", "-cals", "-ncpu", "-noqaplots", "-timeout"):
        assert f"\n  {flag} " in usage
    assert cli.collectcells_main(["in", "out.fits", "--fixwcs"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "podi_collectcells: --fixwcs: misspelled flag (podi_collectcells flags take one dash): " \
                          "did you mean -fixwcs?"


def test_default_workers_and_ncpu_are_the_cores():
    from workflows.options import ReductionOptions

    assert ReductionOptions().ncpu == os.cpu_count()


def test_progress_counts_tasks_and_exposures(tmp_path, capsys):
    class Step(luigi.Task):
        obsid = luigi.Parameter()
        n = luigi.IntParameter()

        def output(self):
            return luigi.LocalTarget(str(tmp_path / f"{self.obsid}.{self.n}"))

        def run(self):
            self.output().open("w").close()

    class CollectCells(Step):  # the family that counts an exposure as done
        def requires(self):
            return [Step(obsid=self.obsid, n=i) for i in range(3)]

    journal = tmp_path / "logs" / "run.progress"
    roots = [CollectCells(obsid="oA", n=9), CollectCells(obsid="oB", n=9)]
    with live_progress(journal, roots):
        assert luigi.build(roots, local_scheduler=True, workers=1)
        state = read_journal(journal)
    assert (len(state.todo), len(state.done), state.exposures, state.exposures_done) == (8, 8, {"oA", "oB"},
                                                                                         {"oA", "oB"})
    assert capsys.readouterr().out.splitlines()[-1] == "podiflow: 8/8 tasks, 2/2 exposures, now CollectCells"
    assert not journal.exists()


def test_a_second_run_on_a_night_waits_for_the_first(tmp_path, capsys):
    events = []

    def second():
        with night_lock(tmp_path / NIGHT, what="second"):
            events.append("second")

    with night_lock(tmp_path / NIGHT, what="podiflow reduce 20131004"):
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.5)
        events.append("first done")
    thread.join(timeout=10)
    assert events == ["first done", "second"]
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "a run is in progress (podiflow reduce 20131004, pid" in err


A, B = "o20131005T014745.0", "o20131005T021558.0"  # two exposures of night 20131004


class _Leaf(luigi.Task):
    obsid = luigi.Parameter()
    base = luigi.Parameter()

    def output(self):
        return luigi.LocalTarget(f"{self.base}/{self.obsid}.leaf")


class _UnknownFilter(_Leaf):
    def requires(self):
        raise ValueError(f"{self.obsid}.33.fits: FILTER = 'odi_q' is not a known filter")


class _Exposure(luigi.WrapperTask):
    obsid = luigi.Parameter()
    base = luigi.Parameter()
    needs = luigi.Parameter(default="")

    def requires(self):
        return [_Leaf(obsid=self.needs or self.obsid, base=self.base)]


def test_scheduling_errors_and_blocked_exposures_have_their_reason(podiflow_config, tmp_path, capsys):
    from podisteps.qa.nightsummary import exposure_record
    from workflows.failures import record_blocked, record_failure

    podiflow_config(raw_dir=tmp_path / "raw")
    base = str(tmp_path)
    assert not luigi.build([_UnknownFilter(obsid=A, base=base)], local_scheduler=True)
    line = capsys.readouterr().out.strip()
    assert line == (f"podiflow: FAILED {A}: _UnknownFilter(base={base}): cannot be scheduled: "
                    f"{A}.33.fits: FILTER = 'odi_q' is not a known filter")
    record_failure(_Leaf(obsid=A, base=base), "boom", echo=False)
    assert record_blocked([_Exposure(obsid=B, base=base, needs=A), _Exposure(obsid=A, base=base)]) == 1
    blocked = next(r for r in read_failures(NIGHT) if r["obsid"] == B)
    assert blocked["kind"] == "blocked" and blocked["error"] == f"not run: blocked by {A}: _Leaf(base={base}): boom"
    entry = type("Entry", (), {"obsid": B, "obstype": "OBJECT", "object": "F1", "filter": "odi_r",
                               "exptime": 1.0, "mjd": 1.0, "error": ""})()
    row = exposure_record(entry, failures=[blocked])
    assert row["status"] == "not run" and row["error"] == f"_Exposure(base={base}, needs={A}): {blocked['error']}"


def test_failure_records_survive_an_unwritable_work_disk(podiflow_config, tmp_path, monkeypatch, capsys):
    import tempfile

    from workflows.failures import clear_failures, failures_dir, record_failure

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "system-tmp"))
    podiflow_config(raw_dir=tmp_path / "raw")
    failures_dir(NIGHT).parent.mkdir(parents=True)
    failures_dir(NIGHT).write_text("")  # the failure folder cannot be made (as on a full disk)
    path = record_failure(_Leaf(obsid=A, base=str(tmp_path)), "No space left on device")
    assert path.is_relative_to(tmp_path / "system-tmp")
    assert capsys.readouterr().out.strip() == f"podiflow: FAILED {A}: _Leaf(base={tmp_path}): No space left on device"
    assert [r["error"] for r in read_failures(NIGHT)] == ["No space left on device"]
    record_failure(_Leaf(obsid=A, base=str(tmp_path)), "No space left on device")  # a retry, failing alike
    assert capsys.readouterr().out == "" and len(read_failures(NIGHT)) == 1
    clear_failures(NIGHT)
    assert read_failures(NIGHT) == []


def test_luigi_command_with_nothing_to_do(tmp_path):
    import subprocess
    import sys

    cfg = tmp_path / "luigi.cfg"
    cfg.write_text("[core]\nautoload_range = false\n[retcode]\nscheduling_error = 35\n"
                   f"[podiflow]\nraw_dir = {tmp_path / 'raw'}\nwork_dir = {tmp_path / 'work'}\n"
                   f"out_dir = {tmp_path / 'out'}\n")
    luigi_command = Path(sys.executable).parent / "luigi"
    run = subprocess.run([str(luigi_command), "--module", "workflows", "ReduceNight", "--night", NIGHT,
                          "--local-scheduler"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "LUIGI_CONFIG_PATH": str(cfg)})
    assert run.returncode == 35
    assert run.stdout.strip() == f"podiflow: night {NIGHT}: no raw data: {tmp_path / 'raw' / NIGHT} does not exist"
    assert "Traceback" not in run.stderr and "Luigi Execution Summary" in run.stderr
    log = Path(re.search(r"full log: (\S+)", run.stderr)[1])
    assert log.parent == tmp_path / "work" / "logs" and "Traceback" in log.read_text()


def test_progress_on_a_terminal_rewrites_one_line(tmp_path):
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    journal = tmp_path / "run.progress"
    screen = Terminal()
    with live_progress(journal, stream=screen):
        journal.write_text("todo t1 DetrendOTA oA\ntodo t2 CollectCells oA\nstart t1 DetrendOTA oA\n"
                           "done t1 DetrendOTA oA\n")
        time.sleep(1.5)
    text = screen.getvalue()
    assert text.startswith("\r\x1b[Kpodiflow: 1/2 tasks, 0/1 exposures, now DetrendOTA, about ")
    assert text.endswith(" s left\n") and text.count("\n") == 1


def _started_mid_run(first, work: Path) -> None:
    """Return once ``first`` has written a master, i.e. is mid-run (the issue's "25 s apart", scaled)."""
    deadline = time.time() + 300
    while not list((work / "work" / NIGHT / "cals" / "ota").glob("*.fits")) and time.time() < deadline:
        time.sleep(0.1)
    assert first.poll() is None, "the first run ended before the second started"


def _mef_state(path: Path) -> tuple:
    return path.read_bytes(), path.stat().st_mtime_ns


@pytest.mark.fullsize  # two whole reductions of a night in subprocesses: the long suite
@pytest.mark.parametrize("start", ["together", "mid-run"])
def test_two_reduce_runs_on_one_night_wait_for_each_other(broken_night, tmp_path, start):
    import subprocess
    import sys

    work, good, broken = broken_night
    (work / "raw" / NIGHT / broken).rename(work / "set-aside")  # a night that reduces without failure
    cfg = tmp_path / "luigi.cfg"
    with open(cfg, "w") as fh:
        luigi.configuration.get_config().write(fh)
    command = [sys.executable, "-c", "import sys; from workflows.cli import podiflow_main; "
               "sys.exit(podiflow_main(sys.argv[1:]))", "reduce", NIGHT, "--workers", "1"]
    env = {**os.environ, "LUIGI_CONFIG_PATH": str(cfg)}
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if start == "together":
        time.sleep(1.0)
    else:
        _started_mid_run(first, work)
    second = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out1, err1 = first.communicate(timeout=600)
    mef = work / "out" / NIGHT / good / f"{good}.fits"
    single = _mef_state(mef)  # the first run, undisturbed: a single run's MEF
    out2, err2 = second.communicate(timeout=600)
    assert first.returncode == 0 and second.returncode == 0, (err1, err2)
    waited = [err for err in (err1, err2) if "a run is in progress" in err]
    assert len(waited) == 1 and len(waited[0].splitlines()) == 1 and "Traceback" not in err1 + err2
    assert all(f"night {NIGHT}: 1 reduced, 0 failed, 0 not run" in out for out in (out1, out2))
    assert _mef_state(mef) == single  # the second run found it made and rebuilt nothing
    # the masters' detrended frames were deleted, and no lease or deferred list is left
    assert not [p for p in (work / "work" / NIGHT).glob("*/detrend/*.fits") if p.parent.parent.name != good]
    assert list((work / "work" / ".builds").iterdir()) == []
