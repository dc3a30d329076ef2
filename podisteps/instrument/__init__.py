"""The instrument: ODI's focal planes, OTAs and cells, the data shipped with the package, the site.

- ``model``: focal-plane layouts chosen by ``MJD-OBS`` (:func:`layout_for_mjd`, :func:`focal_plane`), OTA and
  cell geometry (:func:`geometry`, :class:`CellGeometry`), broken cells per detector (:func:`broken_cells`),
  the cell-use rule (:func:`cell_is_used`, :func:`parse_keepcells`); its public names are re-exported here, so
  ``from podisteps import instrument; instrument.geometry(...)`` reads as the instrument's API.
- ``packagedata``: the one loader of the files in ``podisteps/data/`` (``configs_dir``, ``load_toml``, the
  shipped night specs).
- ``filters``: what ``podisteps/data/filters.toml`` says of each ODI filter (:func:`filters.filter_entry`).
- ``almanac``: Sun and Moon at mid-exposure for WIYN (``almanac_keywords``).
"""

from .model import (CELL_IDS, LAYOUT_SWITCH_MJD, CellGeometry, FocalPlane, KeepCells, Layout, broken_cells,
                    cell_is_used, cellmode_char, configs_dir, focal_plane, geometry, geometry_for_cell_shape,
                    geometry_kinds, is_guide_ota, layout, layout_for_mjd, ota_position, parse_keepcells)

__all__ = ["CellGeometry", "Layout", "KeepCells", "configs_dir", "geometry", "geometry_kinds",
           "geometry_for_cell_shape", "layout", "layout_for_mjd", "FocalPlane", "focal_plane", "broken_cells",
           "cellmode_char", "is_guide_ota", "cell_is_used", "parse_keepcells", "ota_position", "CELL_IDS",
           "LAYOUT_SWITCH_MJD"]
