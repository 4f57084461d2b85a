"""trainlab against PyTorch on the CPU: identical workloads, one process per measurement.

Run it as ``trainlab bench`` or ``python benchmarks/compare_torch.py``; timings are only
meaningful with the OpenBLAS core overrides of this machine removed for that one command::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/compare_torch.py

Workloads (float32, the same shapes and hyperparameters in both frameworks):

====  ==========================================================================
 0    reference: a plain 1024 x 1024 x 1024 sgemm (``np.matmul`` / ``torch.mm``)
 1    MLP 784-512-512-10, BatchNorm1d + ReLU, cross-entropy, SGD momentum 0.9, batch 128:
      one training step (forward, loss, backward, update, zero grad)
 2    the same at batch 1024; also the achieved GFLOP/s as a fraction of workload 0
 3    CNN on 1x28x28, batch 64: conv3x3(32, pad 1)-BN2d-ReLU-maxpool2-conv3x3(64, pad 1)
      -BN2d-ReLU-maxpool2-Flatten-Linear(3136, 10), same loss and optimizer, one step
 4    Adam ``step()`` over 20 tensors of 500 x 500 (5M parameters), gradients given
 5    BatchNorm1d(1024) training forward + backward, N = 256, a given upstream gradient
 6    a larger CNN on 3x32x32, batch 128: conv3x3(64, pad 1)-BN2d-ReLU-maxpool2
      -conv3x3(128, pad 1)-BN2d-ReLU-maxpool2-Flatten-Linear(8192, 10), as workload 3
 7    the README's "In a few lines", verbatim: Linear(784, 256)-BN1d-ReLU-Linear(256, 10),
      cross-entropy, Adam(lr=1e-3), batch 128
====  ==========================================================================

Every trainlab step is written as the README writes it (``logits = model(x)``,
``loss = loss_fn(logits, y)``, ``model.backward(loss_fn.backward(), input_grad=False)``,
``opt.step(); opt.zero_grad()``): no call, flag or setting that only the benchmark uses.

Method:

* **One process per measurement.** Each (framework, workload) pair runs in a fresh
  worker process (``python -m trainlab.bench --worker FRAMEWORK WORKLOAD``), and the
  parent alternates the frameworks for ``--rounds`` rounds, in reversed order every
  other round (trainlab, torch; torch, trainlab; ...), so a steady drift of the
  machine's speed favours neither. In one process the idle thread pool of one library
  (OpenBLAS and OpenMP threads spin-wait after each call) would steal the cores from
  the other. Rounds are the outer loop (each round runs every workload), so a slow
  minute on a shared machine touches all workloads alike; the sgemm reference runs
  just before workload 2, the MLP it is compared with.
* **The same thread count.** Both workers limit every BLAS/OpenMP pool they load to
  ``--threads`` (threadpoolctl); torch also gets ``torch.set_num_threads`` and trainlab's
  optimizers the same number of update lanes (``Optimizer.num_threads``).
* **Timing.** ``--warmup`` untimed steps, then ``--repeats`` steps each timed with
  ``time.perf_counter``; the table shows the median over all steps of all rounds, and
  the ratio of the fastest steps too (``min ratio``: on a machine shared with other
  work, multi-threaded BLAS/OpenMP calls stall whenever a helper thread is
  descheduled, which the median shows and the minimum mostly does not).
* **Peak memory.** Resident-set growth: the worker first runs the workload at tiny sizes
  (so that one-time library initialization, such as kernels loaded or compiled on first
  use, is not counted), then, just before the model (or tensors) are built
  (after imports and the input data), the worker resets the kernel's high-water mark
  (``echo 5 > /proc/self/clear_refs``) and reads ``VmRSS``; after the last step it reads
  ``VmHWM``. The difference covers parameters, gradients, optimizer state, activations
  and every temporary, measured the same way for both frameworks. (Where
  ``clear_refs`` is unavailable, ``ru_maxrss`` is used and the number is a lower bound.)
  The table shows the largest value over the rounds.
* **The same work.** As in PyTorch, where the input batch does not require a gradient,
  the README's step calls ``model.backward(dout, input_grad=False)`` (the data needs no
  gradient, as a tensor with ``requires_grad=False``), so neither framework computes the
  gradient with respect to the data.
* **What ran.** Each row names trainlab's kernel path (``numba``: the compiled kernels of
  :mod:`trainlab.kernels`; ``numpy``: the reference path, ``TRAINLAB_KERNELS=numpy``) and the
  BLAS kernel each framework's library chose for this CPU (threadpoolctl's ``architecture``:
  OpenBLAS ``Haswell``/``SkylakeX``/...; for torch also whether oneDNN (mkldnn) is built in).
  Both frameworks run the same thread count in BLAS, OpenMP and trainlab's kernels.
* **GFLOP/s** (workloads 0-2): matrix-product FLOPs of the step divided by its median
  time; for the MLPs these are forward, weight gradients and the input gradients of
  every layer but the first (the data needs no gradient), ``2 N sum(in*out)`` each.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["main", "WORKLOADS", "run_worker"]

FRAMEWORKS = ("trainlab", "torch")
OPENBLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


# ---------------------------------------------------------------------------- sizes
@dataclass(frozen=True)
class Sizes:
    """Shapes of every workload (``quick`` shrinks them for a smoke test)."""
    mlp: tuple[int, ...] = (784, 512, 512, 10)
    mlp_batch_small: int = 128
    mlp_batch_large: int = 1024
    cnn_batch: int = 64
    cnn_image: int = 28
    cnn_channels: tuple[int, int] = (32, 64)
    adam_tensors: int = 20
    adam_shape: tuple[int, int] = (500, 500)
    bn_batch: int = 256
    bn_features: int = 1024
    sgemm: int = 1024
    cnn32_batch: int = 128
    cnn32_channels: tuple[int, int] = (64, 128)
    readme: tuple[int, ...] = (784, 256, 10)
    readme_batch: int = 128


FULL = Sizes()
QUICK = Sizes(mlp=(784, 32, 32, 10), mlp_batch_small=8, mlp_batch_large=16, cnn_batch=2,
              cnn_image=8, cnn_channels=(4, 8), adam_tensors=3, adam_shape=(10, 10),
              bn_batch=8, bn_features=16, sgemm=64, cnn32_batch=2, cnn32_channels=(4, 8),
              readme=(784, 16, 10), readme_batch=8)


@dataclass(frozen=True)
class Workload:
    key: int
    name: str
    description: str


WORKLOADS = {
    0: Workload(0, "sgemm", "reference sgemm 1024^3"),
    1: Workload(1, "mlp_b128", "MLP+BN train step, b128"),
    2: Workload(2, "mlp_b1024", "MLP+BN train step, b1024"),
    3: Workload(3, "cnn_b64", "CNN train step, b64"),
    4: Workload(4, "adam_5m", "Adam step, 20 tensors, 5M"),
    5: Workload(5, "bn1d_fwd_bwd", "BatchNorm1d fwd+bwd 256x1024"),
    6: Workload(6, "cnn32_b128", "CNN 3x32x32 64-128, b128"),
    7: Workload(7, "readme_b128", "README loop (Adam), b128"),
}
DEFAULT_WORKLOADS = (1, 2, 3, 6, 4, 5, 7)


def _cnn_spec(key: int, sizes: Sizes) -> tuple[int, int, int, int, int]:
    """``(batch, in_channels, image, c1, c2)`` of CNN workload 3 or 6."""
    if key == 3:
        return (sizes.cnn_batch, 1, sizes.cnn_image, *sizes.cnn_channels)
    return (sizes.cnn32_batch, 3, 32 if sizes is FULL else sizes.cnn_image, *sizes.cnn32_channels)


def mlp_flops(batch: int, widths: tuple[int, ...]) -> int:
    """GEMM FLOPs of one MLP training step: forward, dW, and dx of every layer but the first."""
    products = [a * b for a, b in zip(widths[:-1], widths[1:], strict=True)]
    return 2 * batch * (2 * sum(products) + sum(products[1:]))


# ---------------------------------------------------------------------------- memory
def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class PeakMemory:
    """Resident-set growth between :meth:`start` and :meth:`peak_bytes` (see the module docstring)."""

    def start(self) -> None:
        gc.collect()
        self.exact = False
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            self.exact = True
        except OSError:
            pass
        rss = _status_kib("VmRSS")
        if rss is None:
            import resource
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.base_kib = rss

    def peak_bytes(self) -> int:
        hwm = _status_kib("VmHWM") if self.exact else None
        if hwm is None:
            import resource
            hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return max(0, hwm - self.base_kib) * 1024


# ---------------------------------------------------------------------------- trainlab
def _trainlab_workload(key: int, sizes: Sizes, threads: int, mem: PeakMemory) -> Callable[[], None]:
    import numpy as np

    from trainlab import nn, optim

    rng = np.random.default_rng(0)
    f32 = np.float32
    if key == 0:
        n = sizes.sgemm
        a, b = rng.standard_normal((n, n), dtype=f32), rng.standard_normal((n, n), dtype=f32)
        mem.start()
        c = np.empty((n, n), dtype=f32)
        return lambda: np.matmul(a, b, out=c)
    if key in (1, 2, 3, 6, 7):
        if key in (3, 6):
            batch, cin, image, c1, c2 = _cnn_spec(key, sizes)
            x = rng.standard_normal((batch, cin, image, image), dtype=f32)
            y = rng.integers(0, 10, batch)
            mem.start()
            flat = c2 * (image // 4) ** 2
            model = nn.Sequential(
                nn.Conv2d(cin, c1, 3, padding=1, rng=rng), nn.BatchNorm2d(c1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(c1, c2, 3, padding=1, rng=rng), nn.BatchNorm2d(c2), nn.ReLU(), nn.MaxPool2d(2),
                nn.Flatten(), nn.Linear(flat, 10, rng=rng))
        elif key == 7:
            w, batch = sizes.readme, sizes.readme_batch
            x = rng.standard_normal((batch, w[0]), dtype=f32)
            y = rng.integers(0, w[-1], batch)
            mem.start()
            model = nn.Sequential(
                nn.Linear(w[0], w[1], init="he", rng=rng), nn.BatchNorm1d(w[1]), nn.ReLU(),
                nn.Linear(w[1], w[2], init="xavier", rng=rng))
        else:
            batch = sizes.mlp_batch_small if key == 1 else sizes.mlp_batch_large
            w = sizes.mlp
            x = rng.standard_normal((batch, w[0]), dtype=f32)
            y = rng.integers(0, w[-1], batch)
            mem.start()
            model = nn.Sequential(
                nn.Linear(w[0], w[1], rng=rng), nn.BatchNorm1d(w[1]), nn.ReLU(),
                nn.Linear(w[1], w[2], rng=rng), nn.BatchNorm1d(w[2]), nn.ReLU(),
                nn.Linear(w[2], w[3], rng=rng))
        loss_fn = nn.CrossEntropyLoss()
        if key == 7:
            opt = optim.Adam(model.parameters(), lr=1e-3)
        else:
            opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9, momentum_form="buffer")
        model.train()

        def step() -> None:
            # the README's loop, line for line
            logits = model(x)
            loss_fn(logits, y)
            model.backward(loss_fn.backward(), input_grad=False)
            opt.step()
            opt.zero_grad()
        return step
    if key == 4:
        grads = [rng.standard_normal(sizes.adam_shape, dtype=f32) * f32(1e-2)
                 for _ in range(sizes.adam_tensors)]
        mem.start()
        params = [nn.Parameter(rng.standard_normal(sizes.adam_shape, dtype=f32))
                  for _ in range(sizes.adam_tensors)]
        for p, g in zip(params, grads, strict=True):
            p.grad[...] = g
            p.mark_grad_written()
        del grads
        opt = optim.Adam(params, lr=1e-3)
        return opt.step
    if key == 5:
        n, c = sizes.bn_batch, sizes.bn_features
        x = rng.standard_normal((n, c), dtype=f32) * f32(2) + f32(1)
        g = rng.standard_normal((n, c), dtype=f32)
        mem.start()
        bn = nn.BatchNorm1d(c)
        bn.train()

        def step() -> None:
            bn(x)
            bn.backward(g)
            bn.zero_grad()
        return step
    raise ValueError(f"unknown workload {key}")


# ---------------------------------------------------------------------------- torch
def _torch_workload(key: int, sizes: Sizes, threads: int, mem: PeakMemory) -> Callable[[], None]:
    import torch

    torch.manual_seed(0)
    if key == 0:
        n = sizes.sgemm
        a, b = torch.randn(n, n), torch.randn(n, n)
        mem.start()
        c = torch.empty(n, n)
        return lambda: torch.mm(a, b, out=c)
    tnn = torch.nn
    if key in (1, 2, 3, 6, 7):
        if key in (3, 6):
            batch, cin, image, c1, c2 = _cnn_spec(key, sizes)
            x = torch.randn(batch, cin, image, image)
            y = torch.randint(0, 10, (batch,))
            mem.start()
            flat = c2 * (image // 4) ** 2
            model = tnn.Sequential(
                tnn.Conv2d(cin, c1, 3, padding=1), tnn.BatchNorm2d(c1), tnn.ReLU(), tnn.MaxPool2d(2),
                tnn.Conv2d(c1, c2, 3, padding=1), tnn.BatchNorm2d(c2), tnn.ReLU(), tnn.MaxPool2d(2),
                tnn.Flatten(), tnn.Linear(flat, 10))
        elif key == 7:
            w, batch = sizes.readme, sizes.readme_batch
            x = torch.randn(batch, w[0])
            y = torch.randint(0, w[-1], (batch,))
            mem.start()
            model = tnn.Sequential(tnn.Linear(w[0], w[1]), tnn.BatchNorm1d(w[1]), tnn.ReLU(),
                                   tnn.Linear(w[1], w[2]))
        else:
            batch = sizes.mlp_batch_small if key == 1 else sizes.mlp_batch_large
            w = sizes.mlp
            x = torch.randn(batch, w[0])
            y = torch.randint(0, w[-1], (batch,))
            mem.start()
            model = tnn.Sequential(
                tnn.Linear(w[0], w[1]), tnn.BatchNorm1d(w[1]), tnn.ReLU(),
                tnn.Linear(w[1], w[2]), tnn.BatchNorm1d(w[2]), tnn.ReLU(),
                tnn.Linear(w[2], w[3]))
        loss_fn = tnn.CrossEntropyLoss()
        if key == 7:
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        else:
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        model.train()

        def step() -> None:
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
        return step
    if key == 4:
        grads = [torch.randn(*sizes.adam_shape) * 1e-2 for _ in range(sizes.adam_tensors)]
        mem.start()
        params = [tnn.Parameter(torch.randn(*sizes.adam_shape)) for _ in range(sizes.adam_tensors)]
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        del grads
        opt = torch.optim.Adam(params, lr=1e-3)
        return opt.step
    if key == 5:
        n, c = sizes.bn_batch, sizes.bn_features
        x = (torch.randn(n, c) * 2 + 1).requires_grad_()
        g = torch.randn(n, c)
        mem.start()
        bn = tnn.BatchNorm1d(c)
        bn.train()

        def step() -> None:
            bn(x).backward(g)
            x.grad = None
            bn.zero_grad()
        return step
    raise ValueError(f"unknown workload {key}")


# ---------------------------------------------------------------------------- worker
def _limit_threads(threads: int) -> object:
    from threadpoolctl import threadpool_limits
    return threadpool_limits(limits=threads)


def _blas_info(framework: str) -> list[dict]:
    from threadpoolctl import threadpool_info
    keep = ("user_api", "internal_api", "version", "architecture", "num_threads", "prefix",
            "threading_layer", "filepath")
    info = [{k: d[k] for k in keep if k in d} for d in threadpool_info()]
    if framework == "torch":
        import torch
        info.append({"user_api": "torch", "internal_api": "aten", "version": torch.__version__,
                     "architecture": torch.backends.cpu.get_cpu_capability(),
                     "num_threads": torch.get_num_threads(),
                     "mkl": bool(torch.backends.mkl.is_available()),
                     "mkldnn": bool(torch.backends.mkldnn.is_available())})
    return info


def _kernel_info(framework: str) -> str:
    """trainlab's kernel path (``numba``, with its threads and threading layer, or ``numpy``); torch's oneDNN."""
    if framework == "torch":
        import torch
        return "oneDNN" if torch.backends.mkldnn.is_available() else "no oneDNN"
    from trainlab import kernels
    if not kernels.active():
        return "numpy"
    import numba
    try:
        layer = numba.threading_layer()
    except ValueError:           # no parallel kernel has run
        layer = "?"
    return f"numba ({kernels.get_num_threads()} threads, {layer})"


def blas_kernel(info: list[dict]) -> str:
    """The BLAS library and the kernel it chose for this CPU, e.g. ``openblas SkylakeX`` or ``mkl``."""
    blas = [d for d in info if d.get("user_api") == "blas"]
    mine = [d for d in blas if "numpy" in (d.get("filepath") or "")] or blas[:1]   # NumPy's own BLAS
    names = [f"{d.get('internal_api')} {d.get('architecture') or ''}".strip() for d in mine]
    torch_info = [d for d in info if d.get("user_api") == "torch"]
    if torch_info:
        names = ["mkl" if torch_info[0].get("mkl") else "torch's own"]
    return ", ".join(names) or "?"


def run_worker(framework: str, key: int, *, repeats: int, warmup: int, threads: int,
               quick: bool = False) -> dict:
    """Build one workload in this process, warm up, time ``repeats`` steps; return the results."""
    sizes = QUICK if quick else FULL
    mem = PeakMemory()
    if framework == "torch":
        import torch
        torch.set_num_threads(threads)
        build = _torch_workload
    elif framework == "trainlab":
        from trainlab import kernels
        from trainlab.optim.optimizer import Optimizer
        build = _trainlab_workload
        saved_threads, Optimizer.num_threads = Optimizer.num_threads, threads
        if kernels.active():
            kernels.set_num_threads(threads)
    else:
        raise ValueError(f"unknown framework {framework!r}; expected one of {FRAMEWORKS}")
    limiter = _limit_threads(threads)
    # Load lazily initialized code (kernels, JIT caches) before the memory baseline.
    priming = build(key, QUICK, threads, PeakMemory())
    for _ in range(2):
        priming()
    del priming
    step = build(key, sizes, threads, mem)
    for _ in range(warmup):
        step()
    gc.collect()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    result = {"framework": framework, "workload": key, "times": times,
              "median_s": statistics.median(times), "peak_bytes": mem.peak_bytes(),
              "peak_exact": mem.exact, "threads": threads, "blas": _blas_info(framework),
              "kernels": _kernel_info(framework)}
    if key == 0:
        result["flops"] = 2 * sizes.sgemm ** 3
    elif key in (1, 2):
        result["flops"] = mlp_flops(sizes.mlp_batch_small if key == 1 else sizes.mlp_batch_large,
                                    sizes.mlp)
    del limiter
    if framework == "trainlab":
        Optimizer.num_threads = saved_threads
    return result


def _spawn_worker(framework: str, key: int, args: argparse.Namespace) -> dict:
    import trainlab
    src = os.path.dirname(os.path.dirname(os.path.abspath(trainlab.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, "-m", "trainlab.bench", "--worker", framework, str(key),
           "--repeats", str(args.repeats), "--warmup", str(args.warmup), "--threads", str(args.threads)]
    if args.quick:
        cmd.append("--quick")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {framework} workload {key} failed (exit {proc.returncode}):\n"
                           f"{proc.stderr.strip()}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------- per-layer profile
def profile_layers(key: int = 3, *, repeats: int = 20, warmup: int = 3, threads: int = 2,
                   quick: bool = False) -> dict:
    """Forward and backward milliseconds of every layer of CNN workload ``key`` (3 or 6), trainlab only.

    The step runs as the README's loop would, layer by layer: ``x = layer(x)`` for each
    layer, the loss, then ``dout = layer.backward(dout)`` in reverse (the first layer with
    ``input_grad=False``), the update. Medians over ``repeats`` steps. The second Conv2d's
    backward is also compared with its two GEMMs alone at the same shapes (``dW = dY cols^T``
    and ``W^T dY`` on whole matrices, timed after every step: a paired measurement).
    """
    import numpy as np

    from trainlab import kernels, nn, optim
    from trainlab.optim.optimizer import Optimizer

    if key not in (3, 6):
        raise ValueError(f"profile_layers: workload must be 3 or 6 (a CNN), got {key}")
    sizes = QUICK if quick else FULL
    limiter = _limit_threads(threads)
    Optimizer.num_threads = threads
    if kernels.active():
        kernels.set_num_threads(threads)
    batch, cin, image, c1, c2 = _cnn_spec(key, sizes)
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((batch, cin, image, image), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    layers = [nn.Conv2d(cin, c1, 3, padding=1, rng=rng), nn.BatchNorm2d(c1), nn.ReLU(), nn.MaxPool2d(2),
              nn.Conv2d(c1, c2, 3, padding=1, rng=rng), nn.BatchNorm2d(c2), nn.ReLU(), nn.MaxPool2d(2),
              nn.Flatten(), nn.Linear(c2 * (image // 4) ** 2, 10, rng=rng)]
    model = nn.Sequential(*layers)
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9, momentum_form="buffer")
    names = [f"{i}: {type(m).__name__}({m.extra_repr()})" for i, m in enumerate(layers)]
    fwd = [[] for _ in layers]
    bwd = [[] for _ in layers]
    rest, steps, gemm = [], [], []
    clock = time.perf_counter
    conv = layers[4]
    f, k = conv.out_channels, conv.fan_in
    positions = batch * (image // 2) ** 2          # conv2 runs on the pooled image, padding 1
    cols = rng.standard_normal((k, positions), dtype=np.float32)     # the whole im2col matrix, as one GEMM reads it
    dy = rng.standard_normal((f, positions), dtype=np.float32)
    wt = np.ascontiguousarray(conv.weight.data.reshape(f, k).T)
    dw, dcols = np.empty((f, k), np.float32), np.empty((k, positions), np.float32)
    for r in range(warmup + repeats):
        keep = r >= warmup
        start = clock()
        x = x0
        for i, layer in enumerate(layers):
            t = clock()
            x = layer(x)
            if keep:
                fwd[i].append(clock() - t)
        t = clock()
        loss_fn(x, y)
        dout = loss_fn.backward()
        loss_time = clock() - t
        for i in range(len(layers) - 1, -1, -1):
            t = clock()
            dout = layers[i].backward(dout, input_grad=False) if i == 0 else layers[i].backward(dout)
            if keep:
                bwd[i].append(clock() - t)
        t = clock()
        opt.step()
        opt.zero_grad()
        if keep:
            rest.append(loss_time + clock() - t)
            steps.append(clock() - start)
        t = clock()
        np.matmul(dy, cols.T, out=dw)
        np.matmul(wt, dy, out=dcols)
        if keep:
            gemm.append(clock() - t)
    del limiter
    med = statistics.median
    return {"workload": key, "kernels": kernels.path(), "names": names,
            "forward_ms": [med(v) * 1e3 for v in fwd], "backward_ms": [med(v) * 1e3 for v in bwd],
            "loss_and_update_ms": med(rest) * 1e3, "step_ms": med(steps) * 1e3,
            "conv2_backward_ms": med(bwd[4]) * 1e3, "conv2_gemm_ms": med(gemm) * 1e3,
            "threads": threads}


def format_profile(prof: dict) -> str:
    lines = [f"per-layer profile of workload {prof['workload']} ({WORKLOADS[prof['workload']].description}), "
             f"trainlab kernels: {prof['kernels']}, threads={prof['threads']} (medians, ms)",
             f"  {'layer':<44} {'forward':>8} {'backward':>9}"]
    for name, f, b in zip(prof["names"], prof["forward_ms"], prof["backward_ms"], strict=True):
        lines.append(f"  {name:<44} {f:8.2f} {b:9.2f}")
    lines.append(f"  {'loss + SGD update':<44} {prof['loss_and_update_ms']:8.2f}")
    lines.append(f"  {'whole step':<44} {prof['step_ms']:8.2f}")
    ratio = prof["conv2_backward_ms"] / prof["conv2_gemm_ms"]
    lines.append(f"  layer 4 (conv2) backward {prof['conv2_backward_ms']:.2f} ms = {ratio:.2f}x its two GEMMs "
                 f"alone ({prof['conv2_gemm_ms']:.2f} ms)")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- report
def _fmt_time(seconds: float) -> str:
    return f"{seconds * 1e3:9.3f} ms"


def _fmt_mem(nbytes: float | None) -> str:
    return "      n/a" if nbytes is None else f"{nbytes / 2**20:7.1f} MiB"


def summarize(results: dict[tuple[str, int], list[dict]]) -> dict[int, dict]:
    """Per workload: median time, largest peak memory and GFLOP/s of each framework."""
    table: dict[int, dict] = {}
    for (framework, key), runs in results.items():
        times = [t for r in runs for t in r["times"]]
        median = statistics.median(times)
        row = table.setdefault(key, {})
        row[framework] = {"median_s": median, "min_s": min(times),
                          "peak_bytes": max(r["peak_bytes"] for r in runs),
                          "kernels": runs[0].get("kernels"), "blas_kernel": blas_kernel(runs[0].get("blas", [])),
                          "gflops": (runs[0]["flops"] / median / 1e9) if "flops" in runs[0] else None}
    return table


def format_table(table: dict[int, dict], frameworks: tuple[str, ...]) -> str:
    lines = []
    head = f"{'#':>2}  {'workload':<30}"
    for fw in frameworks:
        head += f"  {fw + ' median':>14}  {fw + ' peak':>13}"
    if len(frameworks) == 2:
        head += f"  {'ratio':>6}  {'mem ratio':>9}  {'min ratio':>9}"
    head += "  " + " | ".join(f"{fw} kernels / BLAS" for fw in frameworks)
    lines += [head, "-" * len(head)]
    sgemm = table.get(0, {}).get("trainlab", {}).get("gflops")
    notes = []
    for key in sorted(table):
        row = table[key]
        line = f"{key:>2}  {WORKLOADS[key].description:<30}"
        for fw in frameworks:
            cell = row.get(fw)
            line += (f"  {_fmt_time(cell['median_s']):>14}  {_fmt_mem(cell['peak_bytes']):>13}"
                     if cell else f"  {'-':>14}  {'-':>13}")
        if len(frameworks) == 2 and all(fw in row for fw in frameworks):
            a, b = (row[fw] for fw in frameworks)
            mem_ratio = a["peak_bytes"] / b["peak_bytes"] if b["peak_bytes"] else float("nan")
            line += (f"  {a['median_s'] / b['median_s']:6.2f}  {mem_ratio:9.2f}"
                     f"  {a['min_s'] / b['min_s']:9.2f}")
        cells = [row.get(fw) for fw in frameworks]
        line += "  " + " | ".join(f"{cell['kernels'].split(' (')[0]} / {cell['blas_kernel']}"
                                  if cell and cell.get("kernels") else "-" for cell in cells)
        lines.append(line)
        for fw in frameworks:
            cell = row.get(fw)
            if cell and cell["gflops"] is not None:
                frac = f" = {cell['gflops'] / sgemm:.0%} of numpy sgemm" if sgemm and key else ""
                notes.append(f"    workload {key} {fw}: {cell['gflops']:.1f} GFLOP/s{frac}")
    return "\n".join(lines + ([""] + notes if notes else []))


def _describe_blas(info: list[dict]) -> str:
    parts = []
    for d in info:
        desc = f"{d.get('internal_api')} {d.get('version') or ''}".strip()
        extra = [f"{k}={d[k]}" for k in ("architecture", "threading_layer", "num_threads", "mkl", "mkldnn")
                 if d.get(k) is not None]
        parts.append(f"{desc} ({', '.join(extra)})")
    return "; ".join(parts)


# ---------------------------------------------------------------------------- CLI
def _parse_workloads(text: str) -> list[int]:
    try:
        keys = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        keys = [-1]
    bad = [k for k in keys if k not in WORKLOADS]
    if bad or not keys:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of workloads from {sorted(WORKLOADS)}, got {text!r}")
    return keys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trainlab bench",
        description="Time trainlab against PyTorch on identical CPU workloads (one process each, "
                    "alternating). Workloads: " + "; ".join(f"{w.key}: {w.description}"
                                                         for w in WORKLOADS.values()))
    parser.add_argument("--workloads", type=_parse_workloads, default=None,
                        help="comma-separated workload numbers (default: 1,2,3,6,4,5,7; the sgemm "
                             "reference 0 is added when 2 is run)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed steps per worker process (default 20, --quick 2)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed steps before timing (default 5, --quick 1)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="worker processes per framework and workload, alternating "
                             "trainlab/torch (default 3, --quick 1)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads for both frameworks (default: the number of CPUs)")
    parser.add_argument("--frameworks", default="trainlab,torch",
                        help="comma-separated subset of trainlab,torch (default both)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes and few repeats: a smoke test, not a measurement")
    parser.add_argument("--json", metavar="PATH", help="also write every raw result to PATH")
    parser.add_argument("--profile", type=int, metavar="WORKLOAD", choices=(3, 6),
                        help="instead of the comparison: per-layer forward/backward times of CNN "
                             "workload 3 or 6 (trainlab only, this process)")
    parser.add_argument("--worker", nargs=2, metavar=("FRAMEWORK", "WORKLOAD"), help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``trainlab bench``; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.repeats = args.repeats if args.repeats is not None else (2 if args.quick else 20)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 5)
    args.rounds = args.rounds if args.rounds is not None else (1 if args.quick else 3)
    for name in ("repeats", "rounds", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")

    if args.profile is not None:
        print(format_profile(profile_layers(args.profile, repeats=args.repeats, warmup=args.warmup,
                                            threads=args.threads, quick=args.quick)))
        return 0
    if args.worker is not None:
        framework, key = args.worker
        result = run_worker(framework, int(key), repeats=args.repeats, warmup=args.warmup,
                            threads=args.threads, quick=args.quick)
        print(json.dumps(result))
        return 0

    frameworks = tuple(fw.strip() for fw in args.frameworks.split(",") if fw.strip())
    bad = [fw for fw in frameworks if fw not in FRAMEWORKS]
    if bad or not frameworks:
        parser.error(f"--frameworks must be a subset of {','.join(FRAMEWORKS)}, got {args.frameworks!r}")
    if "torch" in frameworks and importlib.util.find_spec("torch") is None:
        print("torch is not installed: timing trainlab only", file=sys.stderr)
        frameworks = tuple(fw for fw in frameworks if fw != "torch")
    keys = list(args.workloads or DEFAULT_WORKLOADS)
    if 2 in keys:
        # the sgemm reference runs just before workload 2, so that the two are timed under
        # the same machine load and the fraction of sgemm compares like with like
        keys = [k for k in keys if k != 0]
        keys.insert(keys.index(2), 0)

    overrides = {k: os.environ[k] for k in OPENBLAS_OVERRIDES if k in os.environ}
    print(f"trainlab bench: {len(frameworks)} framework(s), workloads {','.join(map(str, keys))}, "
          f"threads={args.threads}, rounds={args.rounds}, warmup={args.warmup}, repeats={args.repeats}"
          + (" (quick: tiny sizes, not a measurement)" if args.quick else ""))
    if overrides:
        print("WARNING: " + ", ".join(f"{k}={v}" for k, v in overrides.items())
              + " is set; for timings run with `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE`")
    else:
        print("OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are unset")

    results: dict[tuple[str, int], list[dict]] = {}
    blas: dict[str, list[dict]] = {}
    kernel_paths: dict[str, str | None] = {}
    # Rounds outermost: each round runs every workload (each framework in turn), so a slow
    # minute on a shared machine touches all workloads alike, and the sgemm reference is
    # timed alongside the MLP it is compared with. The order of the frameworks reverses
    # every round (A B, B A, A B, ...), so a steady drift of the machine's speed favours
    # neither.
    for rnd in range(args.rounds):
        order = frameworks if rnd % 2 == 0 else frameworks[::-1]
        for key in keys:
            for fw in order:
                res = _spawn_worker(fw, key, args)
                results.setdefault((fw, key), []).append(res)
                blas.setdefault(fw, res["blas"])
                kernel_paths.setdefault(fw, res.get("kernels"))
    for fw in frameworks:
        print(f"{fw} libraries: {_describe_blas(blas.get(fw, []))}")
        print(f"{fw} kernel path: {kernel_paths.get(fw)}; BLAS kernel: {blas_kernel(blas.get(fw, []))}")
    print()
    print(format_table(summarize(results), frameworks))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([r for runs in results.values() for r in runs], fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
