"""Smoke tests of ``trainlab.bench`` at tiny sizes (no timing assertions)."""

from __future__ import annotations

import json

import pytest

from trainlab import bench


@pytest.mark.parametrize("key", sorted(bench.WORKLOADS))
def test_trainlab_worker_runs_every_workload(key):
    result = bench.run_worker("trainlab", key, repeats=2, warmup=1, threads=1, quick=True)
    assert result["framework"] == "trainlab" and result["workload"] == key
    assert len(result["times"]) == 2 and result["median_s"] > 0
    assert result["peak_bytes"] >= 0
    assert any(d.get("user_api") == "blas" for d in result["blas"])
    json.dumps(result)      # what the worker prints


@pytest.mark.parametrize("key", [1, 5])
def test_torch_worker_runs(key):
    pytest.importorskip("torch")
    result = bench.run_worker("torch", key, repeats=1, warmup=1, threads=1, quick=True)
    assert result["framework"] == "torch" and result["median_s"] > 0
    assert any(d.get("internal_api") == "aten" for d in result["blas"])


def test_main_spawns_workers_and_prints_the_table(capsys, tmp_path):
    raw = tmp_path / "raw.json"
    code = bench.main(["--quick", "--workloads", "5", "--frameworks", "trainlab", "--repeats", "1",
                       "--threads", "1", "--json", str(raw)])
    assert code == 0
    out = capsys.readouterr().out
    assert "BatchNorm1d fwd+bwd" in out and "trainlab libraries: openblas" in out
    assert "trainlab kernel path: " in out and "BLAS kernel: openblas" in out
    runs = json.loads(raw.read_text())
    assert [(r["framework"], r["workload"]) for r in runs] == [("trainlab", 5)]


def test_rounds_reverse_the_framework_order_and_time_sgemm_just_before_workload_2(monkeypatch, capsys):
    calls = []

    def fake_worker(fw, key, args):
        calls.append((fw, key))
        return {"framework": fw, "workload": key, "times": [1e-3], "peak_bytes": 1, "blas": []}

    monkeypatch.setattr(bench, "_spawn_worker", fake_worker)
    monkeypatch.setattr(bench.importlib.util, "find_spec", lambda name: object())
    assert bench.main(["--workloads", "1,2", "--rounds", "2", "--repeats", "1"]) == 0
    capsys.readouterr()
    assert calls == [("trainlab", 1), ("torch", 1), ("trainlab", 0), ("torch", 0), ("trainlab", 2), ("torch", 2),
                     ("torch", 1), ("trainlab", 1), ("torch", 0), ("trainlab", 0), ("torch", 2), ("trainlab", 2)]


def test_mlp_flops_counts_forward_weight_and_input_gradients():
    # forward 2N(ab + bc), weight grads the same, input grad of the second layer only: 2N bc
    assert bench.mlp_flops(4, (3, 5, 2)) == 2 * 4 * (2 * (15 + 10) + 10)


def test_table_has_ratio_and_gflops_fraction():
    def run(fw, key, t, peak, flops=None):
        r = {"framework": fw, "workload": key, "times": [t, t], "peak_bytes": peak}
        if flops:
            r["flops"] = flops
        return r
    results = {("trainlab", 0): [run("trainlab", 0, 1.0, 10, 50e9)],
               ("torch", 0): [run("torch", 0, 2.0, 20, 50e9)],
               ("trainlab", 2): [run("trainlab", 2, 2.0, 30, 70e9)],
               ("torch", 2): [run("torch", 2, 4.0, 60, 70e9)]}
    text = bench.format_table(bench.summarize(results), ("trainlab", "torch"))
    assert "0.50" in text                   # trainlab / torch
    assert "35.0 GFLOP/s = 70% of numpy sgemm" in text


@pytest.mark.parametrize("argv", [["--workloads", "9"], ["--workloads", "a,b"], ["--repeats", "0"],
                                  ["--frameworks", "jax"]])
def test_bad_arguments_exit_with_usage(argv):
    with pytest.raises(SystemExit) as err:
        bench.main(argv)
    assert err.value.code == 2


# ---------------------------------------------------------------- hot-path contracts the benchmark relies on
def test_backward_without_input_grad_gives_the_same_parameter_gradients():
    import numpy as np

    from trainlab import nn

    def build():
        rng = np.random.default_rng(0)
        return nn.Sequential(nn.Linear(6, 5, rng=rng), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3, rng=rng))

    x = np.random.default_rng(1).standard_normal((8, 6))
    g = np.random.default_rng(2).standard_normal((8, 3))
    full, lean = build().to(np.float64), build().to(np.float64)
    assert full(x).shape == lean(x).shape
    dx = full.backward(g)
    assert dx.shape == x.shape
    assert lean.backward(g, input_grad=False) is None
    for (name, p), (_, q) in zip(full.named_parameters(), lean.named_parameters(), strict=True):
        np.testing.assert_array_equal(p.grad, q.grad, err_msg=name)


def test_zero_grad_is_lazy_but_reads_as_zero():
    import numpy as np

    from trainlab import nn

    p = nn.Parameter(np.ones((2, 3), dtype=np.float32))
    p.accumulate_grad(np.full((2, 3), 2.0, dtype=np.float32))
    p.zero_grad()
    p.matmul_into_grad(np.ones((2, 1), dtype=np.float32), np.ones((1, 3), dtype=np.float32))
    np.testing.assert_array_equal(p.grad, 1.0)          # overwritten, not added to the stale 2s
    p.zero_grad()
    np.testing.assert_array_equal(p.grad, 0.0)          # read after zero_grad: zeros
    p.sum_into_grad(np.ones((4, 2, 3), dtype=np.float32), axis=0)
    np.testing.assert_array_equal(p.grad, 4.0)
    p.sum_into_grad(np.ones((4, 2, 3), dtype=np.float32), axis=0)
    np.testing.assert_array_equal(p.grad, 8.0)           # accumulates
    b = nn.Parameter(np.zeros(3, dtype=np.float32))
    b.sum_into_grad(np.ones((5, 3), dtype=np.float32), axis=0)     # BLAS column sum
    b.sum_into_grad(np.ones((5, 3), dtype=np.float32), axis=0)
    np.testing.assert_array_equal(b.grad, 10.0)


@pytest.mark.parametrize("name", ["sgd", "adam", "rmsprop", "adagrad"])
def test_optimizer_lanes_give_bit_identical_updates(name, monkeypatch):
    import numpy as np

    from trainlab import _blas, nn, optim
    from trainlab.optim.optimizer import Optimizer

    monkeypatch.setattr(Optimizer, "parallel_min_elements", 1)
    monkeypatch.setattr(_blas, "available", lambda: False)   # SGD runs lanes only on the NumPy path
    shapes = [(7, 5), (3,), (11, 2), (4, 4), (6,)]

    def run(threads):
        monkeypatch.setattr(Optimizer, "num_threads", threads)
        rng = np.random.default_rng(0)
        params = [nn.Parameter(rng.standard_normal(s).astype(np.float32)) for s in shapes]
        kwargs = {"momentum": 0.9} if name in ("sgd", "rmsprop") else {}
        opt = optim.create(name, params, lr=0.01, **kwargs)
        for _ in range(3):
            for p in params:
                p.zero_grad()
                p.accumulate_grad(rng.standard_normal(p.shape).astype(np.float32))
            opt.step()
        return [p.data.copy() for p in params], opt.state_dict()

    (single, state1), (lanes, state2) = run(1), run(3)
    for a, b in zip(single, lanes, strict=True):
        np.testing.assert_array_equal(a, b)
    assert state1["state"].keys() == state2["state"].keys()
