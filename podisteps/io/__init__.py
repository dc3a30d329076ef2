"""Files in and out: raw OTA files, the night index, atomic writes and the pieces of the final MEF.

- ``rawio``: raw ODI OTA files found, checked and read into cells (:func:`read_raw_ota`,
  :func:`find_exposure_files`); ``rawheaders``: their headers read fast, block by block.
- ``nightindex``: every exposure of a night from primary headers only (:func:`scan_night`).
- ``atomic``: a file appears whole or not at all (:func:`write_fits_atomic`, :func:`write_text_atomic`).
- ``finalmef``: the final MEF of one exposure from opened products (:func:`final_mef`); ``mef``: its pieces
  (filter keywords, soft binning, the ASSOCIATIONS table, integrity cards); ``outputname``: its file name.

The modules are imported by name (``from podisteps.io import rawio``); nothing is re-exported here.
"""
