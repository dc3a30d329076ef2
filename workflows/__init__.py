"""Luigi tasks of podiflow: ``luigi --module workflows <Task> ...``."""

from .astrometry import FixWCS, OTACatalog, ReferenceCatalog
from .collect import CollectCells
from .detrend import DetrendOTA, SaturationCatalog
from .masters import FlatLevel, MasterCalibration, MasterOTA
from .night import ReduceExposure, ReduceNight
from .photometry import PhotCalib

__all__ = ["DetrendOTA", "SaturationCatalog", "MasterOTA", "FlatLevel", "MasterCalibration", "OTACatalog",
           "ReferenceCatalog", "FixWCS", "ReduceExposure", "ReduceNight", "PhotCalib",
           "CollectCells"]
