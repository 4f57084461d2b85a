"""One-click presets, each set up to show one claim of the seed.

Each preset is a URL state (``query``), the claim in the seed's words (``claim``), where the
seed makes it (``section``), the study that measures it with a numeric verdict (``study``:
``trainlab experiment NAME``), and what the page should show (``shows``). ``expect`` says
which ``Monitor.diagnose()`` findings each side has after ``expect["steps"]`` steps (an empty
list: none of ``expect["absent"]``); the tests hold every preset to it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PRESETS", "get"]

_DEEP = {"ds": "spiral", "n": 600, "depth": 10, "width": 64, "batch": 32, "seed": 0, "every": 5,
         "opt": "sgd", "lr": 0.1}

PRESETS: list[dict[str, Any]] = [
    {
        "id": "tanh-small-vanish",
        "title": "10 tanh layers, small random init: activations vanish",
        "section": "Weight Initialization: Small Random Numbers",
        "claim": "In deeper networks (e.g. 10 layers), activations and gradients will exponentially shrink "
                 "to zero: the vanishing gradient problem.",
        "shows": "Each layer's activation histogram is narrower than the one before; by layer 10 it is a line "
                 "at zero, and the diagnosis names vanishing activations and gradients. The loss stays at "
                 "ln 3 ≈ 1.10: nothing learns.",
        "study": "init-depth",
        "query": {**_DEEP, "act": "tanh", "init": "small_random"},
        "expect": {"steps": 1, "A": ["vanishing_activations", "vanishing_gradients"]},
    },
    {
        "id": "relu-normal-explode",
        "title": "10 ReLU layers, N(0, 1) init: activations explode",
        "section": "Weight Initialization: Small Random Numbers (the other direction)",
        "claim": "Activations and gradients will exponentially shrink or grow to zero or infinity: "
                 "the vanishing/exploding gradient problem.",
        "shows": "Unit-variance weights multiply each layer's spread by about √(n/2) = 5.7: the histograms "
                 "widen layer after layer and the diagnosis names exploding activations; the first SGD step "
                 "sends the loss to NaN.",
        "study": "init-depth",
        "query": {**_DEEP, "act": "relu", "init": "normal"},
        "expect": {"steps": 1, "A": ["exploding_activations"]},
    },
    {
        "id": "tanh-normal-saturate",
        "title": "10 tanh layers, N(0, 1) init: tanh saturates",
        "section": "Weight Initialization: Xavier Initialization",
        "claim": "Xavier is best for the tanh activation function; with unit-variance weights tanh saturates.",
        "shows": "The activation histograms pile up at −1 and +1 in every layer (the local gradient there is "
                 "below 0.02) and the diagnosis names saturated tanh units.",
        "study": "init-depth",
        "query": {**_DEEP, "act": "tanh", "init": "normal"},
        "expect": {"steps": 1, "A": ["saturated"]},
    },
    {
        "id": "tanh-small-vs-xavier",
        "title": "10 tanh layers: small random against xavier",
        "section": "Weight Initialization: Xavier Initialization",
        "claim": "Xavier, W = randn · √(1/n_prev), is best for tanh: it keeps the activations' spread "
                 "through the layers.",
        "shows": "Same data, seed and batches: on the left the activations vanish and the loss stays flat; "
                 "on the right xavier keeps every layer's histogram wide and the spiral is learned.",
        "study": "init-train",
        "query": {**_DEEP, "act": "tanh", "init": "small_random", "cmp": 1, "b.init": "xavier"},
        "expect": {"steps": 1, "A": ["vanishing_activations"], "B": [],
                   "absent": ["vanishing_activations", "exploding_activations", "saturated"]},
    },
    {
        "id": "relu30-xavier-vs-he",
        "title": "30 ReLU layers, xavier against he",
        "section": "Weight Initialization: Xavier and He Initialization",
        "claim": "Xavier is inefficient for the ReLU activation function; He, W = randn · √(2/n_prev), "
                 "is best for ReLU.",
        "shows": "With xavier each ReLU layer halves the variance: after 30 layers the activations have "
                 "vanished and the loss stalls at chance. He's factor 2 holds them, and the same net trains.",
        "study": "depth-30",
        "query": {**_DEEP, "ds": "digits", "depth": 30, "width": 32, "batch": 64, "every": 10, "act": "relu",
                  "init": "xavier", "opt": "sgd", "lr": 0.05, "cmp": 1, "b.init": "he"},
        "expect": {"steps": 1, "A": ["vanishing_activations"], "B": [],
                   "absent": ["vanishing_activations", "exploding_activations"]},
    },
    {
        "id": "lr1-bn",
        "title": "lr 1.0 with and without BN",
        "section": "Batch Normalization: benefits",
        "claim": "Batch normalization allows for higher learning rates.",
        "shows": "Plain SGD at lr 1.0 on a 10-layer ReLU net: without BatchNorm the loss blows up to NaN "
                 "within a few steps; with it the same learning rate trains.",
        "study": "batchnorm",
        "query": {**_DEEP, "ds": "digits", "depth": 10, "width": 64, "batch": 64, "act": "relu", "init": "he",
                  "opt": "sgd", "lr": 1.0, "cmp": 1, "b.bn": 1},
        "expect": {"steps": 30, "A": ["nonfinite"], "B": [], "absent": ["nonfinite"]},
    },
    {
        "id": "sigmoid-bn-gradflow",
        "title": "10 sigmoid layers: BN restores the gradient flow",
        "section": "Batch Normalization: benefits",
        "claim": "Batch normalization improves gradient flow through the network.",
        "shows": "Without BN the gradient shrinks by up to 4× per sigmoid layer on its way back: the first "
                 "layers' gradient histograms are a line at zero. With BN before each sigmoid they stay wide.",
        "study": "batchnorm",
        "query": {**_DEEP, "act": "sigmoid", "init": "xavier", "cmp": 1, "b.bn": 1},
        "expect": {"steps": 1, "A": ["vanishing_gradients"], "B": [], "absent": ["vanishing_gradients"]},
    },
    {
        "id": "small-init-bn",
        "title": "Small random init, with and without BN",
        "section": "Batch Normalization: benefits",
        "claim": "Batch normalization reduces dependence on initialization.",
        "shows": "The same 10-layer ReLU net from W = randn · 0.01: without BN the activations vanish and "
                 "nothing learns; BN rescales every layer, so the same bad init trains.",
        "study": "batchnorm",
        "query": {**_DEEP, "act": "relu", "init": "small_random", "cmp": 1, "b.bn": 1},
        "expect": {"steps": 1, "A": ["vanishing_activations"], "B": [], "absent": ["vanishing_activations"]},
    },
    {
        "id": "sgd-vs-adam",
        "title": "The digits MLP: SGD against Adam",
        "section": "Learning Rate Update Methods: Adam",
        "claim": "Adam combines the ideas of Momentum and RMSProp; it reaches a given loss in fewer steps "
                 "than plain gradient descent.",
        "shows": "A 64-128-128-10 ReLU net (he) on the digits, each rule at a sound learning rate: Adam's loss "
                 "falls faster in the first epochs.",
        "study": "optimizers",
        "query": {**_DEEP, "ds": "digits", "depth": 2, "width": 128, "batch": 64, "every": 5, "act": "relu",
                  "init": "he", "opt": "sgd", "lr": 0.03, "cmp": 1, "b.opt": "adam", "b.lr": 0.001},
        "expect": {"steps": 1, "A": [], "B": [], "absent": ["vanishing_activations", "exploding_activations"]},
    },
    {
        "id": "adam-vs-seed-adam",
        "title": "PyTorch's Adam against the seed's Adam",
        "section": "Learning Rate Update Methods: Adam",
        "claim": "The seed's Adam, w ← w − α·m/√(v + ε), has no bias correction: its first steps are "
                 "√(1 − β2)/(1 − β1) ≈ 0.32 times Adam's.",
        "shows": "Same net, same lr: the update-to-weight ratios of the seed's rule start about 3× lower "
                 "and catch up as the moving averages fill.",
        "study": "optimizers",
        "query": {**_DEEP, "ds": "moons", "depth": 3, "width": 32, "act": "relu", "init": "he", "every": 1,
                  "opt": "adam", "lr": 0.01, "cmp": 1, "b.opt": "adam_seed"},
        "expect": {"steps": 1, "A": [], "B": [], "absent": ["vanishing_activations", "exploding_activations"]},
    },
    {
        "id": "valley-momentum",
        "title": "Valley: momentum and Nesterov against gradient descent",
        "section": "Learning Rate Update Methods: Momentum, Nesterov",
        "claim": "Momentum builds up speed like a ball rolling down a hill; Nesterov looks ahead and corrects. "
                 "In an ill-conditioned valley both beat plain gradient descent.",
        "shows": "½(x² + 100y²) from (−10, 1), lr 0.01 for all three: gradient descent crawls along the "
                 "floor; momentum and Nesterov reach the minimum in a fraction of the steps.",
        "study": "optimizers",
        "tab": "opt",
        "query": {"tab": "opt", "surf": "valley", "osteps": 600, "orules": "sgd,momentum,nesterov",
                  "o.sgd.lr": 0.01, "o.momentum.lr": 0.01, "o.momentum.mom": 0.9, "o.nesterov.lr": 0.01,
                  "o.nesterov.mom": 0.9},
        "expect": {"faster": ["momentum", "nesterov"], "than": "sgd"},
    },
    {
        "id": "saddle-adaptive",
        "title": "Saddle: adaptive rules escape where SGD stalls",
        "section": "Learning Rate Update Methods: AdaGrad, RMSProp, Adam",
        "claim": "AdaGrad, RMSProp and Adam scale each step by the gradient's history, so a tiny gradient "
                 "still gives a full-sized step.",
        "shows": "x² − y² started on the stable axis, 1e-6 off it: SGD first slides into the saddle point "
                 "and barely moves; the adaptive rules leave it in a fraction of the steps.",
        "study": "optimizers",
        "tab": "opt",
        "query": {"tab": "opt", "surf": "saddle", "osteps": 150, "orules": "sgd,adagrad,rmsprop,adam",
                  "o.sgd.lr": 0.1, "o.adagrad.lr": 0.1, "o.rmsprop.lr": 0.1, "o.adam.lr": 0.1},
        "expect": {"faster": ["adagrad", "rmsprop", "adam"], "than": "sgd"},
    },
    {
        "id": "rosenbrock-all",
        "title": "Rosenbrock: the six rules and the seed's Adam",
        "section": "Learning Rate Update Methods",
        "claim": "Each rule reacts differently to a curved, flat-bottomed valley.",
        "shows": "From (−1.5, 2): gradient descent needs a tiny lr to stay stable and crawls; momentum "
                 "overshoots the bends; the adaptive rules follow the floor.",
        "study": "optimizers",
        "tab": "opt",
        "query": {"tab": "opt", "surf": "rosenbrock", "osteps": 1500,
                  "orules": "sgd,momentum,nesterov,adagrad,rmsprop,adam,adam_seed",
                  "o.sgd.lr": 0.001, "o.momentum.lr": 0.0005, "o.nesterov.lr": 0.0005, "o.adagrad.lr": 0.5,
                  "o.rmsprop.lr": 0.01, "o.adam.lr": 0.05, "o.adam_seed.lr": 0.05},
        "expect": {},
    },
]


def get(preset_id: str) -> dict[str, Any]:
    """The preset with id ``preset_id`` (``ValueError`` listing the ids otherwise)."""
    for preset in PRESETS:
        if preset["id"] == preset_id:
            return preset
    raise ValueError(f"unknown preset {preset_id!r}; presets: {', '.join(p['id'] for p in PRESETS)}")
