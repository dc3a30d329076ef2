"""Master calibrations: frames combined into bias, dark and flat masters, and which master an exposure uses.

- ``combine``: per-pixel combination of frames (:func:`sigma_clip_mean`, :func:`median_combine`).
- ``flatfield``: flat normalisation and the flat's gain (:func:`normalise_flat`, :func:`flat_level`).
- ``flatghost``: ghost-free master flats, the pupil ghost of each flat frame (:func:`flat_ghosts`).
- ``techdata``: gain and read noise per cell by photon transfer, and the TECHDATA file.
- ``mastermef``: master files in QuickReduce's MEF layout (:func:`master_hdulist`, :func:`read_master_ota`).
- ``calselect``: which night's master a science exposure uses (:func:`select_master`); ``history``:
  QuickReduce ``.history`` files, which calibration file applies at an MJD.

The modules are imported by name (``from podisteps.masters import combine``); nothing is re-exported here.
"""
