"""trainlab against PyTorch on the CPU (not a test); the same as ``trainlab bench``.

Run (unset this machine's OpenBLAS core overrides for this one command only)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compare_torch.py
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compare_torch.py --workloads 1,2 --rounds 5

Every option and the method (one process per measurement, alternating frameworks,
medians, resident-set peak memory) are described in :mod:`trainlab.bench`.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    try:
        import trainlab.bench  # noqa: F401
    except ImportError:   # running from a checkout without an install: use ../src
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "src"))
    from trainlab.bench import main

    sys.exit(main())
