"""podisteps: the pure reduction steps of podiflow (no Luigi, no paths they were not handed)."""

__version__ = "0.1.0"
