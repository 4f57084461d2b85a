"""How trainlab's compiled kernels and NumPy's OpenBLAS share the cores (a measurement, not a test).

OpenBLAS's worker threads spin-wait for a while after every call, and Numba's pool
runs between those calls on the same cores; this script measures whether the two fight,
for each threading layer and thread count::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/kernel_threads.py --rounds 5

Each configuration runs in its own process (the threading layer is fixed per process),
configurations are interleaved round by round, and each process times, for ``--repeats``
repetitions in turn:

* ``bn``:   BatchNorm1d(512) forward + backward on 1024 x 512, right after a 1024^3 sgemm;
* ``gemm``: a 1024^3 sgemm right after that BatchNorm (does the kernel's pool slow BLAS?);
* ``mlp``:  the benchmark's MLP step at batch 1024 (workload 2 of ``trainlab bench``).

Configurations: the NumPy path; the compiled path with 1 and 2 kernel threads under the
``omp`` and ``workqueue`` layers (``omp`` also with ``OMP_WAIT_POLICY=PASSIVE``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CONFIGS = {
    "numpy": {"TRAINLAB_KERNELS": "numpy"},
    "omp-1": {"NUMBA_THREADING_LAYER": "omp", "threads": "1"},
    "omp-2": {"NUMBA_THREADING_LAYER": "omp", "threads": "2"},
    "omp-2-passive": {"NUMBA_THREADING_LAYER": "omp", "threads": "2", "OMP_WAIT_POLICY": "PASSIVE"},
    "workqueue-1": {"NUMBA_THREADING_LAYER": "workqueue", "threads": "1"},
    "workqueue-2": {"NUMBA_THREADING_LAYER": "workqueue", "threads": "2"},
}


def worker(threads: int, repeats: int) -> dict:
    import numpy as np

    from trainlab import bench, kernels, nn
    if kernels.active():
        kernels.set_num_threads(threads)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((1024, 1024), dtype=np.float32)
    c = np.empty_like(a)
    x = rng.standard_normal((1024, 512), dtype=np.float32)
    g = rng.standard_normal((1024, 512), dtype=np.float32)
    bn = nn.BatchNorm1d(512)
    mlp = bench._trainlab_workload(2, bench.FULL, 2, bench.PeakMemory())
    for _ in range(3):
        bn(x)
        bn.backward(g)
        mlp()
    times: dict[str, list[float]] = {"bn": [], "gemm": [], "mlp": []}
    clock = time.perf_counter
    for _ in range(repeats):
        np.matmul(a, a, out=c)
        t = clock()
        bn(x)
        bn.backward(g)
        times["bn"].append(clock() - t)
        t = clock()
        np.matmul(a, a, out=c)
        times["gemm"].append(clock() - t)
        t = clock()
        mlp()
        times["mlp"].append(clock() - t)
    layer = "-"
    if kernels.active():
        import numba
        layer = numba.threading_layer()
    return {"times": times, "layer": layer}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--worker", type=int, metavar="THREADS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.repeats)))
        return 0
    results: dict[str, dict[str, list[float]]] = {name: {"bn": [], "gemm": [], "mlp": []} for name in CONFIGS}
    layers = {}
    for rnd in range(args.rounds):
        names = list(CONFIGS) if rnd % 2 == 0 else list(CONFIGS)[::-1]
        for name in names:
            env = dict(os.environ)
            settings = dict(CONFIGS[name])
            threads = settings.pop("threads", "2")
            env.update(settings)
            out = subprocess.run([sys.executable, __file__, "--worker", threads, "--repeats", str(args.repeats)],
                                 env=env, capture_output=True, text=True, check=True)
            res = json.loads(out.stdout.strip().splitlines()[-1])
            layers[name] = res["layer"]
            for key, values in res["times"].items():
                results[name][key] += values
    print(f"medians over {args.rounds} rounds x {args.repeats} repetitions (ms)")
    print(f"{'configuration':<16} {'layer':<10} {'bn after gemm':>14} {'gemm after bn':>14} {'mlp b1024':>10}")
    for name, res in results.items():
        med = {k: statistics.median(v) * 1e3 for k, v in res.items()}
        print(f"{name:<16} {layers[name]:<10} {med['bn']:14.3f} {med['gemm']:14.3f} {med['mlp']:10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
