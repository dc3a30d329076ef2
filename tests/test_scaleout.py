"""Night runs as an operator runs them: a worker killed mid-night, and two workers against one luigid.

Both run ``podiflow reduce`` in subprocesses on a tiny simulated night (test instrument: 3 biases, 2 darks,
2 dome flats, 2 science exposures), with their own luigi.cfg.
"""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from astropy.io import fits

#: Whole-night runs: the long suite (`make test` runs it after the default suite).
pytestmark = pytest.mark.fullsize

ROOT = Path(__file__).resolve().parents[1]
NIGHT = "20131004"
SPEC = {
    "night": {"name": "tiny", "start": "2013-10-05T01:30:00", "instrument": "test", "binning": 1, "seed": 5,
              "star_density": 500.0},
    "field": [{"name": "F", "ra": "22:15:30.0", "dec": "+15:30:00"}],
    "sequence": [{"type": "bias", "count": 3}, {"type": "dark", "count": 2, "exptime": 60.0},
                 {"type": "dflat", "filter": "odi_r", "count": 2},
                 {"type": "object", "field": "F", "filter": "odi_r", "count": 2, "exptime": 60.0,
                  "dither": "3point"}],
}


@pytest.fixture(scope="module")
def tiny_night(tmp_path_factory):
    from podisteps.simulate import simulate_night

    root = tmp_path_factory.mktemp("tiny-night")
    simulate_night(SPEC, root, seed=5)
    return root


def _site(tmp_path: Path, night_root: Path, extra: str = "") -> dict:
    """A luigi.cfg for a night run in ``tmp_path``; returns the environment of the subprocesses."""
    cfg = (ROOT / "luigi.cfg").read_text()
    cfg = cfg.replace("raw_dir = raw", f"raw_dir = {night_root / 'raw'}")
    cfg = cfg.replace("work_dir = work", f"work_dir = {tmp_path / 'work'}")
    cfg = cfg.replace("out_dir = out", f"out_dir = {tmp_path / 'out'}")
    cfg = cfg.replace("mastercals_dir = mastercals", f"mastercals_dir = {night_root / 'mastercals'}")
    cfg = cfg.replace("retry_count = 2", "retry_count = 0")
    (tmp_path / "luigi.cfg").write_text(cfg + extra)
    env = dict(os.environ, LUIGI_CONFIG_PATH=str(tmp_path / "luigi.cfg"), PYTHONPATH=str(ROOT))
    return env


def _reduce(env, *extra, **kw):
    return subprocess.Popen([sys.executable, "-c", "import sys; from workflows.cli import podiflow_main; "
                             "sys.exit(podiflow_main())", "reduce", NIGHT, *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, **kw)


def _products(tmp_path):
    out = {}
    for folder in (tmp_path / "work", tmp_path / "out"):
        for p in folder.rglob("*"):
            if p.is_file() and not p.is_symlink() and p.suffix in (".fits", ".json") and ".tmp-" not in p.name:
                out[str(p)] = p.stat().st_mtime_ns
    return out


def _valid_fits(path: str) -> bool:
    with fits.open(path) as hdul:
        hdul.verify("exception")
        return all(h.data is not None or h.header["NAXIS"] == 0 for h in hdul)


def test_killed_worker_rerun_redoes_nothing_finished(tiny_night, tmp_path):
    env = _site(tmp_path, tiny_night)
    science = [d.name for d in (tiny_night / "truth" / NIGHT).iterdir()
               if json.loads((d / "exposure.json").read_text())["obstype"] == "OBJECT"]
    proc = _reduce(env, "--workers", "1")
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:  # kill once some science OTAs are detrended
        if sum(len(list((tmp_path / "work" / NIGHT / o).glob("detrend/*.fits"))) for o in science) >= 5:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[0][-3000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    finished = _products(tmp_path)
    assert finished and all(_valid_fits(p) for p in finished if p.endswith(".fits"))

    rerun = _reduce(env, "--workers", "1")
    out = rerun.communicate(timeout=600)[0]
    assert rerun.returncode == 0, out[-3000:]
    after = _products(tmp_path)
    redone = [p for p, m in finished.items() if p in after and after[p] != m]
    assert not redone, redone  # nothing finished was made again
    mefs = sorted((tmp_path / "out" / NIGHT).glob("*/*.fits"))
    assert len(mefs) == 2 and all(_valid_fits(str(m)) for m in mefs)
    assert (tmp_path / "out" / NIGHT / "summary.html").is_file()


def _free_port() -> int:
    """A loopback port nobody listens on, the kernel's pick (asked in a subprocess: sockets are off in tests)."""
    pick = "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"
    return int(subprocess.check_output([sys.executable, "-c", pick], text=True))


def _mefs(tmp_path) -> dict:
    """The night's final MEFs: name -> bytes."""
    return {p.name: p.read_bytes() for p in sorted((tmp_path / "out" / NIGHT).glob("*/*.fits"))}


def _start_luigid(env, tmp_path, port):
    (tmp_path / "logs").mkdir()
    luigid = subprocess.Popen([str(Path(sys.executable).parent / "luigid"), "--address", "127.0.0.1", "--port",
                               str(port), "--state-path", str(tmp_path / "state.pickle"), "--logdir",
                               str(tmp_path / "logs")], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(3)
    assert luigid.poll() is None
    return luigid


def test_two_workers_one_luigid_run_each_task_once(tiny_night, tmp_path):
    db = tmp_path / "history.sqlite"
    env = _site(tmp_path, tiny_night, extra=f"\n[task_history]\ndb_connection = sqlite:///{db}\n")
    local = _reduce(env, "--workers", "1")  # the reference: the same night with a local scheduler, same paths
    out = local.communicate(timeout=900)[0]
    assert local.returncode == 0, out[-3000:]
    single = _mefs(tmp_path)
    assert len(single) == 2
    for folder in ("work", "out"):
        shutil.rmtree(tmp_path / folder)
    cfg = tmp_path / "luigi.cfg"
    cfg.write_text(cfg.read_text().replace("record_task_history = false", "record_task_history = true"))
    port = _free_port()
    luigid = _start_luigid(env, tmp_path, port)
    try:
        workers = [_reduce(env, "--workers", "1", "--scheduler-host", "127.0.0.1", "--scheduler-port", str(port))
                   for _ in range(2)]
        outputs = [w.communicate(timeout=900)[0] for w in workers]
        assert all(w.returncode == 0 for w in workers), "\n".join(outputs)
    finally:
        os.killpg(luigid.pid, signal.SIGTERM)
        luigid.wait(timeout=30)
    with sqlite3.connect(db) as con:
        runs = con.execute("SELECT t.name, t.task_id, COUNT(*) FROM task_events e JOIN tasks t ON e.task_id = t.id "
                           "WHERE e.event_name = 'RUNNING' GROUP BY t.task_id").fetchall()
        done = con.execute("SELECT COUNT(DISTINCT t.task_id) FROM task_events e JOIN tasks t ON e.task_id = t.id "
                           "WHERE e.event_name = 'DONE'").fetchone()[0]
    assert runs and all(n == 1 for _, _, n in runs), [r for r in runs if r[2] != 1]
    assert done >= len(runs) > 60  # masters, detrending and final products of the night
    assert sum(name == "CollectCells" for name, _, _ in runs) == 2  # each MEF made once
    assert _mefs(tmp_path) == single  # byte for byte what the local scheduler made
    assert not list((tmp_path / "work" / NIGHT).glob("failures/*.json"))
    products = _products(tmp_path)
    assert all(_valid_fits(p) for p in products if p.endswith(".fits"))
    # the masters' detrended frames were kept while the other worker's build ran, and went once both had ended;
    # no lease or deferred list is left
    logs = "".join(p.read_text() for p in (tmp_path / "work" / "logs").glob("reduce-*.log"))
    assert "intermediates kept until the end of the build (1 other build(s) running)" in logs
    science = {n.split(".fits")[0] for n in single}
    assert not [p for p in (tmp_path / "work" / NIGHT).glob("*/detrend/*.fits") if p.parent.parent.name not in science]
    assert list((tmp_path / "work" / ".builds").iterdir()) == []
