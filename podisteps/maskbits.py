"""The bits of the MASK plane of every per-OTA product and of the final MEF (docs/formats.md, 'Per-OTA products').

A format fact shared by every domain (detrending sets the bits, detection and the masters read them), so it
lives at the top of the package rather than in one step's module.
"""

__all__ = ["MASK_BITS"]

#: MASK plane bits of the per-OTA products (docs/formats.md, 'Per-OTA products').
MASK_BITS = {
    "GAP": 1,            # outside the cells or in a gap
    "BADCELL": 2,        # broken or non-science cell
    "BPM": 4,            # bad pixel region
    "SATURATED": 8,
    "BLEED": 16,         # bleed trail
    "PERSISTENCY": 32,
    "LOWFLAT": 64,       # flat below 0.1
    "COSMIC": 128,
}
