"""Benchmark: read one full-size raw OTA file into 64 float32 cells, astropy against fitsio.

Writes ``<out>/raw_read.json`` and ``<out>/raw_read.md`` with medians over repeated runs.
Usage: ``python bench/raw_read.py [--repeat N] [--out DIR]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

from podisteps import instrument
from podisteps.io import rawio, rawwrite


def _write_sample(folder: Path, *, fz: bool) -> Path:
    geo = instrument.geometry("full", 1)
    rng = np.random.default_rng(1)
    # sky-like counts (compressible like real data), not uniform noise
    cells = {c: (1500 + rng.poisson(800, (geo.raw_ny, geo.raw_nx))).astype(np.uint16) for c in instrument.CELL_IDS}
    hdr = fits.Header({"OBSID": "20130301T040000.0", "FPPOS": "xy33"})
    heads = {c: fits.Header({"WN_CELLX": c[0], "WN_CELLY": c[1], "CCDSUM": "1 1"}) for c in instrument.CELL_IDS}
    path = folder / rawio.ota_filename("o20130301T040000.0", 33, fz=fz)
    rawwrite.write_raw_ota(path, hdr, cells, heads, fz=fz)
    return path


def _read_podiflow(path: Path):
    return rawio.read_raw_ota(path, required_keys=("FPPOS",)).cells


def _read_astropy_plain(path: Path):
    with fits.open(path, memmap=False) as hdul:
        return {h.name: h.data.astype(np.float32) for h in hdul[1:]}


def _read_fitsio(path: Path):
    import fitsio

    out = {}
    with fitsio.FITS(str(path)) as f:
        for hdu in f[1:]:
            out[hdu.get_extname()] = hdu.read().astype(np.float32)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args(argv)
    readers = {"podiflow (astropy, checks)": _read_podiflow, "astropy bare": _read_astropy_plain,
               "fitsio": _read_fitsio}
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for fz in (False, True):
            path = _write_sample(Path(tmp), fz=fz)
            ref = _read_astropy_plain(path)
            for name, reader in readers.items():
                got = reader(path)
                assert all(np.array_equal(a, b) for a, b in zip(ref.values(), got.values()))
                times = []
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    reader(path)
                    times.append(time.perf_counter() - t0)
                results.append({"reader": name, "format": ".fits.fz" if fz else ".fits",
                                "median_s": statistics.median(times), "min_s": min(times),
                                "size_mb": path.stat().st_size / 1e6, "repeat": args.repeat})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "raw_read.json").write_text(json.dumps(results, indent=1))
    lines = ["| reader | format | size MB | median s | min s |", "|---|---|---|---|---|"]
    lines += [f"| {r['reader']} | {r['format']} | {r['size_mb']:.1f} | {r['median_s']:.3f} | {r['min_s']:.3f} |"
              for r in results]
    (out / "raw_read.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
