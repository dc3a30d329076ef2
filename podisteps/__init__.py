"""podisteps: the pure reduction steps of podiflow (no Luigi, no paths they were not handed).

One subpackage per domain (docs/architecture.md, "podisteps, by what it does", maps every step to its module):

- ``instrument``: the ODI model (layouts, OTA and cell geometry), the shipped data, the almanac;
- ``io``: raw files, the night index, atomic writes, the final MEF and its pieces;
- ``detrend``: one raw OTA to SCI and MASK (``detrend_ota``) and each of its steps;
- ``masters``: master bias, dark and flat, TECHDATA, ghost-free flats, which master an exposure uses;
- ``focalplane``: pupil ghost, fringes, the exposure-wide sky fit;
- ``catalog``: source detection and reference catalogues;
- ``astrometry``, ``photometry``: ``-fixwcs`` and ``-photcalib``;
- ``qa``: QA plots and the night summary;
- ``simulate``: the raw-night simulator;
- ``errors``, ``stats``, ``sanity``: the error base and logger, robust statistics, product checks.
"""

__version__ = "0.1.0"
