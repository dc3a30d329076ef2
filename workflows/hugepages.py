"""Keep numpy from asking for transparent huge pages (``NUMPY_MADVISE_HUGEPAGE``), once per process tree.

numpy marks every array of 4 MiB or more with ``madvise(MADV_HUGEPAGE)``. On a Linux host whose
``/sys/kernel/mm/transparent_hugepage/defrag`` is ``madvise`` (the common default), the kernel then compacts
memory synchronously to find 2 MiB pages whenever the page cache has filled the free memory, which is the
normal state of a reduction machine after an hour of reading raw frames. Measured on a 2-core VM
(docs/performance.md): about 0.1 s of system time per fresh 64 MiB OTA array, 9 % of the CPU of one
exposure, against 0.02 s with ordinary pages. podiflow allocates and frees such arrays at every step, so it
turns the hint off. An explicit ``NUMPY_MADVISE_HUGEPAGE`` in the environment is left as the user set it.
"""

from __future__ import annotations

import importlib
import os
import sys

__all__ = ["disable_numpy_hugepages"]


def disable_numpy_hugepages() -> bool:
    """Turn numpy's huge-page hint off for this process and the processes it starts or forks.

    Sets ``NUMPY_MADVISE_HUGEPAGE=0`` (read by numpy at import, so it covers child interpreters) and, when
    numpy is already imported, switches the hint off in the running interpreter (forked task processes
    inherit it).

    Returns
    -------
    bool
        False when the environment already chose a value (nothing changed), True otherwise.
    """
    if "NUMPY_MADVISE_HUGEPAGE" in os.environ:
        return False
    os.environ["NUMPY_MADVISE_HUGEPAGE"] = "0"
    if "numpy" in sys.modules:
        for name in ("numpy._core.multiarray", "numpy.core.multiarray"):  # numpy 2 / numpy 1.26
            try:
                module = importlib.import_module(name)
            except ImportError:
                continue
            setter = getattr(module, "_set_madvise_hugepage", None)
            if setter is not None:
                setter(False)
                break
    return True
