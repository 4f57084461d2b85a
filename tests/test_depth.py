"""The seed's depth claim: 10 layers of 500 units on 1000x500 N(0, 1) inputs."""

import numpy as np
import pytest

from trainlab import init, nn

DEPTH, WIDTH = 10, 500


def layer_stds(init_name, activation, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1000, WIDTH)).astype(np.float32)
    layers = []
    for _ in range(DEPTH):
        layers += [nn.Linear(WIDTH, WIDTH, init=init_name, rng=rng), activation()]
    model = nn.Sequential(*layers)
    stds = []
    for layer in model:
        x = layer(x)
        if layer.is_activation if hasattr(layer, "is_activation") else False:
            stds.append(float(x.std()))
    return np.array(stds)


def test_tanh_small_random_vanishes_and_xavier_holds():
    small = layer_stds("small_random", nn.Tanh)
    assert small[-1] < 1e-5, small
    xavier = layer_stds("xavier", nn.Tanh)
    assert 0.18 <= xavier[-1] <= 0.30, xavier


def test_relu_xavier_shrinks_and_he_holds():
    xavier = layer_stds("xavier", nn.ReLU)
    assert xavier[0] / xavier[-1] > 10, xavier
    he = layer_stds("he", nn.ReLU)
    assert np.all((he >= 0.5) & (he <= 2.0)), he


@pytest.mark.parametrize("seed", [1, 2])
def test_depth_claims_hold_for_other_seeds(seed):
    assert layer_stds("small_random", nn.Tanh, seed)[-1] < 1e-5
    assert 0.18 <= layer_stds("xavier", nn.Tanh, seed)[-1] <= 0.30
    assert np.all((layer_stds("he", nn.ReLU, seed) >= 0.5) & (layer_stds("he", nn.ReLU, seed) <= 2.0))


def test_xavier_relu_shrinks_by_about_one_over_sqrt2_per_layer():
    stds = layer_stds("xavier", nn.ReLU)
    ratios = stds[1:] / stds[:-1]
    assert np.all(np.abs(ratios - 1 / np.sqrt(2)) < 0.05), ratios
    assert init.for_activation("relu") == "he"
