"""Exposure-wide corrections measured across the focal plane: the pupil ghost, fringes and the sky level.

- ``pupilghost``: pupil-ghost templates, samples, global scale and centre.
- ``fringe``: fringe amplitudes, the global fringe scale and fringe templates.
- ``focalfit``: the composites: samples of one OTA (:func:`ota_samples`), the exposure-wide fit
  (:func:`fit_focal_plane`) and the corrected OTA (:func:`correct_ota`).

The modules are imported by name (``from podisteps.focalplane import fringe``); nothing is re-exported here.
"""
