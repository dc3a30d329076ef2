"""ODI's filters: the facts ``podisteps/data/filters.toml`` holds per filter name (docs/instrument.md)."""

from __future__ import annotations

from .packagedata import load_toml

__all__ = ["filter_entry"]


def filter_entry(filtername: str) -> dict | None:
    """The entry of a filter in ``filters.toml`` (wavelength in Angstrom, extinction, reference band, ...).

    Returns None for a filter podiflow does not know.
    """
    return load_toml("filters.toml").get(filtername)
