"""Source catalogues: what podiflow detects on an OTA, and the reference catalogues it calibrates against.

- ``detect``: the ``sep`` catalogue of an OTA with QuickReduce's ``CAT.ODI`` columns
  (:func:`source_catalog`), point-source selection (:func:`point_sources`), FWHM from half-light radii.
- ``centroids``: windowed centroids with masked and neighbours' pixels mirror-filled (:func:`windowed_centroids`).
- ``moffat``: the Moffat PSF model (enclosed energy, pixel-integrated stamps), shared with the simulator.
- ``refcat``: reference catalogues behind one interface (:func:`load_reference`, :func:`stars_in_field`): local
  files, SkyTable shards and online providers.

The modules are imported by name (``from podisteps.catalog import detect``); nothing is re-exported here.
"""
