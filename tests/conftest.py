"""Test configuration: a quiet Luigi config, offline, deterministic."""

import os
from pathlib import Path

# Must be set before luigi is imported anywhere (autoload_range warning is fatal under -W error).
os.environ.setdefault("LUIGI_CONFIG_PATH", str(Path(__file__).resolve().parent.parent / "luigi.cfg"))
os.environ.setdefault("MPLBACKEND", "Agg")

import luigi  # noqa: E402  (after LUIGI_CONFIG_PATH is set)
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def podiflow_config(tmp_path):
    """Point ``[podiflow]`` at folders under ``tmp_path`` for one test; restore afterwards.

    Returns a function ``configure(raw_dir=..., mastercals_dir=..., **reduction_options)``.
    """
    cfg = luigi.configuration.get_config()
    saved = {s: dict(cfg.items(s)) if cfg.has_section(s) else None for s in ("podiflow", "reduction")}

    def configure(*, raw_dir, mastercals_dir=None, work_dir=None, out_dir=None, **reduction):
        cfg.set("podiflow", "raw_dir", str(raw_dir))
        cfg.set("podiflow", "work_dir", str(work_dir or tmp_path / "work"))
        cfg.set("podiflow", "out_dir", str(out_dir or tmp_path / "out"))
        cfg.set("podiflow", "mastercals_dir", str(mastercals_dir or tmp_path / "no-mastercals"))
        for key, value in reduction.items():
            cfg.set("reduction", key, str(value))
        luigi.task_register.Register.clear_instance_cache()
        return tmp_path

    yield configure
    for section, values in saved.items():
        if cfg.has_section(section):
            cfg.remove_section(section)
        if values is not None:
            cfg.add_section(section)
            for key, value in values.items():
                cfg.set(section, key, value)
    luigi.task_register.Register.clear_instance_cache()


@pytest.fixture(scope="session")
def small_night(tmp_path_factory):
    """The test-small night (test instrument, pODI), simulated once per session with seed 7.

    Returns the simulator's output folder (``raw/``, ``mastercals/``, ``refcat/``, ``truth/``).
    """
    from podisteps.simulate import simulate_night

    out = tmp_path_factory.mktemp("small-night")
    simulate_night("test-small", out, seed=7)
    return out


@pytest.fixture(autouse=True, scope="session")
def _installation_cache(tmp_path_factory):
    """The installation-wide cache folder (``workflows.paths.cache_root``: the parsed IERS table) of this session."""
    os.environ["PODIFLOW_CACHE_DIR"] = str(tmp_path_factory.mktemp("podiflow-cache"))


@pytest.fixture(autouse=True)
def _no_writes_outside_tmp():
    """Fail any test that leaves files in the source tree (tests write only to temporary folders)."""
    before = {p.name for p in ROOT.iterdir()}
    yield
    added = {p.name for p in ROOT.iterdir()} - before - {".pytest_cache", ".venv"}
    assert not added, f"test wrote into the source tree: {sorted(added)}"
