"""``bench/compare_reductions.py``: what two reductions may differ in, and what they may not."""

import numpy as np
from astropy.io import fits
from astropy.table import Table

from bench.compare_reductions import main


def _reduction(root, *, satcats, pixel=0.0):
    """A reduction folder with one final MEF whose provenance names the given saturation catalogues."""
    mef = root / "out" / "20131004" / "o20131005T013000.0" / "o20131005T013000.0.fits"
    mef.parent.mkdir(parents=True)
    primary = fits.PrimaryHDU()
    primary.header["PERSIS01"] = f"{root}/work/{satcats[0]}"
    sci = fits.ImageHDU(np.full((4, 4), pixel, np.float32), name="OTA33.SCI")
    files = [f"{root}/work/{name}" for name in satcats]
    assoc = fits.table_to_hdu(Table({"ROLE": ["persistency"] * len(files), "FILE": files}))
    assoc.name = "ASSOCIATIONS"
    fits.HDUList([primary, sci, assoc]).writeto(mef)
    return root


def test_merged_stage_relaxes_only_the_names_of_its_files(tmp_path, capsys):
    per_ota = [f"o20131005T012500.0.{ota:02d}.satcat.0123456789.fits" for ota in (22, 33)]
    before = _reduction(tmp_path / "before", satcats=per_ota)
    after = _reduction(tmp_path / "after", satcats=["o20131005T012500.0.satcat.abcdefabcd.fits"])
    assert main([str(before), str(after)]) == 1  # the names differ
    assert main([str(before), str(after), "--merged-stage", "satcat"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("identical")
    moved = _reduction(tmp_path / "moved", satcats=["o20131005T012500.0.satcat.abcdefabcd.fits"], pixel=1.0)
    assert main([str(before), str(moved), "--merged-stage", "satcat"]) == 1  # pixels are never relaxed
    assert main([str(before), str(after), "--merged-stage", "detrend"]) == 1  # only the stage named
