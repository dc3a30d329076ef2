"""Test configuration: a quiet Luigi config, offline, deterministic."""

import os
from pathlib import Path

# Must be set before luigi is imported anywhere (autoload_range warning is fatal under -W error).
os.environ.setdefault("LUIGI_CONFIG_PATH", str(Path(__file__).resolve().parent.parent / "luigi.cfg"))
os.environ.setdefault("MPLBACKEND", "Agg")
