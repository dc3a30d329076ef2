"""``podiflow simulate NIGHTSPEC OUTDIR [--seed N] [--fz] [--only OBSID,...] [--jobs N]``."""

from __future__ import annotations

import argparse
import os
import sys

from .night import simulate_night

__all__ = ["main", "build_parser", "default_jobs", "MAX_DEFAULT_JOBS"]

#: The default of ``--jobs`` never exceeds this (memory: each process holds one rendered exposure).
MAX_DEFAULT_JOBS = 4


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``podiflow simulate``."""
    p = argparse.ArgumentParser(
        prog="podiflow simulate",
        description="Simulate a night of raw ODI exposures with calibration inputs and truth "
                    "(docs/simulator.md).")
    p.add_argument("nightspec", help="night spec: a TOML file, or the name of a shipped spec (demo, podi-night, test-small, test-small-5x6)")
    p.add_argument("outdir", help="output folder: raw/, mastercals/, refcat/ and truth/ are written here")
    p.add_argument("--seed", type=int, default=None, help="seed (default: the spec's [night] seed)")
    p.add_argument("--fz", action="store_true", help="write Rice-compressed .fits.fz files")
    p.add_argument("--only", default=None, metavar="OBSID,...",
                   help="simulate only these exposures (e.g. o20131005T021000.0)")
    p.add_argument("--jobs", type=int, default=default_jobs(), metavar="N",
                   help="processes rendering exposures at once (default: the usable CPUs, at most "
                        f"{MAX_DEFAULT_JOBS}; about 1.3 GB of memory each at full size); the files do not depend on it")
    return p


def default_jobs() -> int:
    """The usable CPUs of this process, at most :data:`MAX_DEFAULT_JOBS`."""
    return max(1, min(MAX_DEFAULT_JOBS, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                      else os.cpu_count() or 1))


def main(argv: list[str] | None = None) -> int:
    """Run ``podiflow simulate``; return the exit status (0 success, 2 bad spec or arguments)."""
    args = build_parser().parse_args(argv)
    if args.jobs < 1:
        print(f"podiflow simulate: error: --jobs must be at least 1 (got {args.jobs})", file=sys.stderr)
        return 2
    only = [o.strip() for o in args.only.split(",") if o.strip()] if args.only else None
    try:
        written = simulate_night(args.nightspec, args.outdir, seed=args.seed, fz=args.fz, only=only,
                                 progress=lambda line: print(line, flush=True), jobs=args.jobs)
    except (OSError, ValueError, KeyError) as exc:
        print(f"podiflow simulate: error: {exc}", file=sys.stderr)
        return 2
    print(f"podiflow simulate: {len(written)} exposure(s) written under {args.outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
