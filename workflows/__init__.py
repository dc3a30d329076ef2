"""Luigi tasks of podiflow: ``luigi --module workflows <Task> ...``."""

from .astrometry import FixWCS, OTACatalog, ReferenceCatalog
from .collect import CollectCells
from .detrend import DetrendOTA
from .masters import FlatLevel, MasterCalibration, MasterOTA
from .night import ReduceExposure, ReduceNight
from .photometry import PhotCalib
from .saturation import SaturationCatalog, SaturationExport
from .techdata import TechData

__all__ = ["DetrendOTA", "SaturationCatalog", "SaturationExport", "TechData", "MasterOTA", "FlatLevel", "MasterCalibration", "OTACatalog",
           "ReferenceCatalog", "FixWCS", "ReduceExposure", "ReduceNight", "PhotCalib",
           "CollectCells"]
