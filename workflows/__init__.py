"""Luigi tasks of podiflow: ``luigi --module workflows <Task> ...``."""

from .hugepages import disable_numpy_hugepages

disable_numpy_hugepages()  # before the task modules import numpy (see workflows/hugepages.py)

from .astrometry import FixWCS, OTACatalog, ReferenceCatalog
from .console import quiet_luigi_command
from .collect import CollectCells
from .detrend import DetrendOTA
from .focalplane import CorrectedOTA, FocalPlaneCorrections, FocalPlaneSamples, FringeTemplate, PupilGhostTemplate
from .masters import FlatLevel, MasterCalibration, MasterOTA
from .night import ReduceExposure, ReduceNight, ReduceNights
from .photometry import AutoPhotCalib, PhotCalib, PhotFlat, PhotReference, RadialZP
from .qa import NightSummary, QAPlots
from .saturation import SaturationCatalog, SaturationExport
from .techdata import TechData

quiet_luigi_command()  # under `luigi --module workflows`: tracebacks to <work>/logs/, one line per failure

__all__ = ["SaturationCatalog", "SaturationExport", "DetrendOTA", "MasterOTA", "FlatLevel", "MasterCalibration",
           "TechData", "OTACatalog", "ReferenceCatalog", "FixWCS", "PhotCalib", "PhotReference", "PhotFlat",
           "AutoPhotCalib", "RadialZP", "FocalPlaneSamples",
           "FocalPlaneCorrections", "CorrectedOTA", "FringeTemplate", "PupilGhostTemplate", "CollectCells",
           "QAPlots", "NightSummary", "ReduceExposure", "ReduceNight", "ReduceNights"]
