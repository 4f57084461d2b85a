"""Module and Sequential: traversal, modes, dtype, state dicts (PyTorch interop), auto init, summary."""

import numpy as np
import pytest

from trainlab import init, nn

# every test runs on both kernel paths (compiled and NumPy reference); see conftest.py
pytestmark = pytest.mark.usefixtures("kernel_path")

torch = pytest.importorskip("torch")


def conv_net(rng, dtype=np.float32):
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, rng=rng, dtype=dtype), nn.BatchNorm2d(4, dtype=dtype), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(4 * 4 * 4, 16, rng=rng, dtype=dtype), nn.BatchNorm1d(16, dtype=dtype), nn.Tanh(),
        nn.Dropout(0.2, rng=rng), nn.Linear(16, 3, rng=rng, dtype=dtype),
    )


def torch_conv_net():
    t = torch.nn
    return t.Sequential(t.Conv2d(1, 4, 3, padding=1), t.BatchNorm2d(4), t.ReLU(), t.MaxPool2d(2), t.Flatten(),
                        t.Linear(64, 16), t.BatchNorm1d(16), t.Tanh(), t.Dropout(0.2), t.Linear(16, 3))


def test_state_dict_loads_strictly_into_torch_and_outputs_agree():
    rng = np.random.default_rng(0)
    model = conv_net(rng, np.float64)
    model.train()
    for _ in range(3):  # move the running statistics away from their start
        model(rng.standard_normal((8, 1, 8, 8)))
    sd = model.state_dict()
    assert list(sd)[:7] == ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                            "1.running_var", "1.num_batches_tracked"]
    twin = torch_conv_net().double()
    result = twin.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in sd.items()}, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    model.eval()
    twin.eval()
    x = rng.standard_normal((5, 1, 8, 8))
    np.testing.assert_allclose(model(x), twin(torch.from_numpy(x)).detach().numpy(), rtol=0, atol=1e-12)


def test_torch_state_dict_loads_into_trainlab():
    twin = torch_conv_net().double().eval()
    model = conv_net(np.random.default_rng(1), np.float64).eval()
    model.load_state_dict(twin.state_dict())
    x = np.random.default_rng(2).standard_normal((3, 1, 8, 8))
    np.testing.assert_allclose(model(x), twin(torch.from_numpy(x)).detach().numpy(), atol=1e-12)


def test_state_dict_round_trip_and_copies():
    rng = np.random.default_rng(3)
    a, b = conv_net(rng), conv_net(rng)
    sd = a.state_dict()
    sd["0.weight"][...] = 0  # a copy: the model is untouched
    assert a[0].weight.data.any()
    b.load_state_dict(a.state_dict())
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb
        np.testing.assert_array_equal(va, vb)


def test_load_state_dict_lists_every_problem_and_changes_nothing():
    rng = np.random.default_rng(4)
    model = conv_net(rng)
    before = model.state_dict()
    sd = model.state_dict()
    del sd["0.bias"], sd["6.running_var"]
    sd["7.weight"] = np.zeros(3)
    with pytest.raises(KeyError) as info:
        model.load_state_dict(sd)
    msg = str(info.value)
    assert "missing keys: 0.bias, 6.running_var" in msg and "unexpected keys: 7.weight" in msg
    sd = model.state_dict()
    sd["0.weight"] = np.zeros((4, 1, 5, 5))
    sd["5.bias"] = np.zeros(17)
    with pytest.raises(ValueError, match=r"0\.weight \(expected \(4, 1, 3, 3\), got \(4, 1, 5, 5\)\).*"
                                         r"5\.bias \(expected \(16,\), got \(17,\)\)"):
        model.load_state_dict(sd)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    sd = model.state_dict()
    del sd["0.bias"]
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert missing == ["0.bias"] and unexpected == []


def test_parameters_buffers_modes_and_zero_grad():
    model = conv_net(np.random.default_rng(5))
    names = [n for n, _ in model.named_parameters()]
    assert names == ["0.weight", "0.bias", "1.weight", "1.bias", "5.weight", "5.bias", "6.weight", "6.bias",
                     "9.weight", "9.bias"]
    assert len(model.parameters()) == 10
    assert [n for n, _ in model.named_buffers()] == ["1.running_mean", "1.running_var", "1.num_batches_tracked",
                                                     "6.running_mean", "6.running_var", "6.num_batches_tracked"]
    model.eval()
    assert all(not m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    x = np.random.default_rng(0).standard_normal((4, 1, 8, 8)).astype(np.float32)
    y = model(x)
    model.backward(np.ones_like(y))
    assert any(p.grad.any() for p in model.parameters())
    model.zero_grad()
    assert not any(p.grad.any() for p in model.parameters())


def test_setting_a_parameter_to_none_removes_it_as_in_torch():
    torch = pytest.importorskip("torch")
    layer = nn.Linear(3, 2, rng=np.random.default_rng(0))
    tlayer = torch.nn.Linear(3, 2)
    layer.bias = None
    tlayer.bias = None
    assert layer.bias is None and tlayer.bias is None
    assert [n for n, _ in layer.named_parameters()] == [n for n, _ in tlayer.named_parameters()] == ["weight"]
    x = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    np.testing.assert_array_equal(layer(x), x @ layer.weight.data.T)     # no bias added
    with pytest.raises(TypeError, match="Linear.bias: expected a Parameter"):
        layer.bias = np.zeros(2)


def test_to_dtype_casts_params_and_buffers_and_returns_self():
    model = conv_net(np.random.default_rng(6))
    assert model.to(np.float64) is model
    assert all(p.data.dtype == np.float64 and p.grad.dtype == np.float64 for p in model.parameters())
    assert model[1].running_var.dtype == np.float64
    assert model[1].num_batches_tracked.dtype == np.int64
    y = model(np.zeros((2, 1, 8, 8)))
    assert y.dtype == np.float64
    with pytest.raises(TypeError, match="float32 or float64"):
        model.to(np.int8)


def test_auto_init_follows_the_activation_through_batchnorm():
    def draw(init_name, act):
        rng = np.random.default_rng(9)
        layers = [nn.Linear(50, 40, init=init_name, rng=rng), nn.BatchNorm1d(40)]
        if act is not None:
            layers.append(act)
        return nn.Sequential(*layers)[0].weight.data

    np.testing.assert_array_equal(draw("auto", nn.ReLU()), draw("he", nn.ReLU()))
    np.testing.assert_array_equal(draw("auto", nn.Tanh()), draw("xavier", nn.Tanh()))
    np.testing.assert_array_equal(draw("auto", nn.Sigmoid()), draw("xavier", None))
    np.testing.assert_array_equal(draw("auto", None), draw("xavier", None))
    leaky = nn.Sequential(nn.Linear(50, 40, rng=np.random.default_rng(9)), nn.LeakyReLU(0.2))[0]
    np.testing.assert_array_equal(leaky.weight.data,
                                  init.he((40, 50), rng=np.random.default_rng(9), negative_slope=0.2))
    assert leaky.weight.init.startswith("he(") and "auto: leaky_relu" in leaky.weight.init
    # the conv in a conv-BN-ReLU block gets he; the final Linear gets xavier
    model = conv_net(np.random.default_rng(0))
    assert model[0].weight.init.startswith("he(") and model[5].weight.init.startswith("xavier(")
    assert "auto: linear" in model[9].weight.init


def test_summary_lists_layers_shapes_counts_and_inits():
    model = nn.Sequential(nn.Linear(784, 256, init="he", rng=np.random.default_rng(0)), nn.BatchNorm1d(256),
                          nn.ReLU(), nn.Linear(256, 10, init="xavier", rng=np.random.default_rng(0)))
    text = model.summary((32, 784))
    lines = text.splitlines()
    assert "0: Linear(784, 256)" in lines[2] and "(32, 256)" in lines[2] and "200,960" in lines[2]
    assert "he(fan_in, normal)" in lines[2]
    assert "1: BatchNorm1d(256" in lines[3] and "512" in lines[3]
    assert "(32, 10)" in lines[5] and "xavier(fan_in, normal)" in lines[5]
    assert lines[-1] == f"total parameters: {784 * 256 + 256 + 512 + 2570:,}"


def test_hooks_see_every_layer():
    model = conv_net(np.random.default_rng(0))
    seen_fwd, seen_bwd = [], []
    removers = [m.register_forward_hook(lambda mod, i, o: seen_fwd.append(type(mod).__name__))
                for m in model]
    removers += [m.register_backward_hook(lambda mod, gi, go: seen_bwd.append(type(mod).__name__))
                 for m in model]
    y = model(np.zeros((2, 1, 8, 8), dtype=np.float32))
    model.backward(np.ones_like(y))
    assert len(seen_fwd) == len(seen_bwd) == len(model)
    assert seen_bwd == seen_fwd[::-1]
    for r in removers:
        r()
    model(np.zeros((2, 1, 8, 8), dtype=np.float32))
    assert len(seen_fwd) == len(model)


def test_sequential_rejects_non_modules_and_indexes():
    with pytest.raises(TypeError, match=r"modules\[1\] must be a Module"):
        nn.Sequential(nn.ReLU(), "relu")
    model = conv_net(np.random.default_rng(0))
    assert isinstance(model[2], nn.ReLU) and len(model[:3]) == 3 and len(list(model)) == 10


def test_design_snippet_runs():
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Linear(784, 256, init="he", rng=rng), nn.BatchNorm1d(256), nn.ReLU(),
                          nn.Linear(256, 10, init="xavier", rng=rng))
    loss_fn = nn.CrossEntropyLoss()
    x = rng.standard_normal((32, 784)).astype(np.float32)
    y = rng.integers(0, 10, 32)
    model.train()
    loss = loss_fn(model(x), y)
    model.backward(loss_fn.backward())
    assert isinstance(loss, float) and np.isfinite(loss)
    assert model[0].weight.grad.shape == (256, 784)
