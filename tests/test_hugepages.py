"""numpy's transparent-huge-page hint is off under podiflow's tasks unless the environment chose (workflows/hugepages.py)."""

import os
import subprocess
import sys

import pytest

_PROBE = ("import sys\n"
          "if sys.argv[1] == 'numpy-first':\n"
          "    import numpy\n"
          "import workflows, os\n"
          "from numpy._core import multiarray\n"
          "print(os.environ['NUMPY_MADVISE_HUGEPAGE'], multiarray._get_madvise_hugepage())\n")


def _probe(order: str, env_value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    if env_value is not None:
        env["NUMPY_MADVISE_HUGEPAGE"] = env_value
    done = subprocess.run([sys.executable, "-W", "error", "-c", _PROBE, order], env=env, capture_output=True,
                          text=True, check=True)
    return done.stdout.strip()


@pytest.mark.parametrize("order", ["workflows-first", "numpy-first"])
def test_importing_workflows_turns_the_hint_off(order):
    assert _probe(order, None) == "0 False"


def test_an_explicit_environment_value_wins():
    assert _probe("workflows-first", "1") == "1 True"
