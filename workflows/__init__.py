"""Luigi tasks of podiflow: ``luigi --module workflows <Task> ...``."""

from .detrend import DetrendOTA, SaturationCatalog

__all__ = ["DetrendOTA", "SaturationCatalog"]
