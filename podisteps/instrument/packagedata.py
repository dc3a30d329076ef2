"""The data shipped inside the package: instrument layouts, filters, colour terms and night specs.

Everything lives under ``podisteps/data/`` and is read through this module only, so an installed wheel finds
it exactly as a source checkout does::

    data/instruments/   podi.toml, odi_5x6.toml, test.toml (layouts), cells.toml, detectors.toml
    data/nights/        simulator night specs (demo.toml, test-small.toml, ...)
    data/filters.toml   filter facts (arm, wavelength, zero point, sky)
    data/colorterms.toml colour terms per reference catalogue and filter
"""

from __future__ import annotations

import functools
import importlib.resources
import os
import tomllib
from pathlib import Path

__all__ = ["configs_dir", "load_toml", "night_spec_path", "shipped_night_specs"]


def configs_dir() -> Path:
    """Return the folder holding podiflow's shipped data (``podisteps/data`` of the installed package).

    Returns
    -------
    pathlib.Path
        The folder; a real directory both in a source checkout and in an installed wheel.
    """
    return Path(str(importlib.resources.files("podisteps").joinpath("data")))


@functools.cache
def load_toml(relpath: str) -> dict:
    """Parse one shipped TOML file, e.g. ``"filters.toml"`` or ``"instruments/podi.toml"`` (cached).

    Raises
    ------
    FileNotFoundError
        For a file that is not shipped.
    """
    with open(configs_dir() / relpath, "rb") as fh:
        return tomllib.load(fh)


def shipped_night_specs() -> tuple[str, ...]:
    """Names of the night specs shipped in ``data/nights/`` (without ``.toml``), sorted."""
    return tuple(sorted(p.stem for p in (configs_dir() / "nights").glob("*.toml")))


def night_spec_path(spec: str | os.PathLike) -> Path:
    """Resolve a night spec given as a file path or as the name of a shipped spec (``"demo"``).

    Parameters
    ----------
    spec : str or path-like
        An existing TOML file, or a shipped spec's name with or without ``.toml``.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    FileNotFoundError
        When ``spec`` is neither a file nor a shipped spec; the message lists the shipped names.
    """
    path = Path(spec)
    if path.is_file():
        return path
    shipped = configs_dir() / "nights" / (path.name if path.suffix == ".toml" else f"{path.name}.toml")
    if path.parent == Path(".") and shipped.is_file():
        return shipped
    raise FileNotFoundError(f"night spec {str(spec)!r}: no such file, and not a shipped spec "
                            f"(shipped: {', '.join(shipped_night_specs())})")
