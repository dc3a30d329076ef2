"""Luigi tasks of podiflow: ``luigi --module workflows <Task> ...``."""

from .astrometry import FixWCS, OTACatalog, ReferenceCatalog
from .collect import CollectCells
from .detrend import DetrendOTA
from .focalplane import CorrectedOTA, FocalPlaneCorrections, FocalPlaneSamples
from .fptemplates import FringeTemplate, PupilGhostTemplate
from .masters import FlatLevel, MasterCalibration, MasterOTA
from .night import ReduceExposure, ReduceNight, ReduceNights
from .photometry import PhotCalib
from .qa import NightSummary, QAPlots
from .saturation import SaturationCatalog, SaturationExport
from .techdata import TechData

__all__ = ["DetrendOTA", "SaturationCatalog", "SaturationExport", "TechData", "MasterOTA", "FlatLevel", "MasterCalibration", "OTACatalog",
           "ReferenceCatalog", "FixWCS", "ReduceExposure", "ReduceNight", "ReduceNights", "PhotCalib",
           "CollectCells", "QAPlots", "NightSummary", "FocalPlaneSamples", "FocalPlaneCorrections", "CorrectedOTA",
           "FringeTemplate", "PupilGhostTemplate"]
