# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 1. Weight initialization: why a deep network trains at all
#
# Before the first step of training, every weight of a network is a random number. How
# large those numbers are decides whether a signal survives the trip through ten layers,
# forward (the activations) and backward (the gradients). In this notebook you will
#
# 1. write the three classic initializations as formulas and check that trainlab draws
#    exactly those;
# 2. push a batch through 10 layers and *watch* the activations vanish or explode;
# 3. see why **xavier** suits tanh and **he** suits ReLU;
# 4. train the same deep network with each of them.
#
# Everything runs on a CPU; `TRAINLAB_TUTORIAL_QUICK=1` makes the training cells shorter.

# %%
import os

import numpy as np

from trainlab import Monitor, Trainer, data, init, models, nn, optim, plotting

QUICK = os.environ.get("TRAINLAB_TUTORIAL_QUICK") == "1"   # CI sets this: fewer epochs, same code
rng = np.random.default_rng(0)

# %% [markdown]
# ## The three formulas
#
# A fully connected layer computes $z = W a_{prev}$ with $W$ of shape `(n, n_prev)`, where
# $n_{prev}$ is the number of inputs of the layer (its *fan-in*).
#
# | name | formula | meant for |
# |---|---|---|
# | small random | $W = \text{randn}(n, n_{prev}) \cdot 0.01$ | small networks |
# | xavier | $W = \text{randn}(n, n_{prev}) \cdot \sqrt{1 / n_{prev}}$ | tanh |
# | he | $W = \text{randn}(n, n_{prev}) \cdot \sqrt{2 / n_{prev}}$ | ReLU |
#
# trainlab's initializers are functions of a shape that take an explicit random generator.
# Draw with the same seed by hand and with trainlab, and compare:

# %%
n_prev, n = 500, 500
by_hand = {
    "small_random": np.random.default_rng(1).standard_normal((n, n_prev)) * 0.01,
    "xavier": np.random.default_rng(1).standard_normal((n, n_prev)) * np.sqrt(1 / n_prev),
    "he": np.random.default_rng(1).standard_normal((n, n_prev)) * np.sqrt(2 / n_prev),
}
for name, w in by_hand.items():
    ours = init.get(name)((n, n_prev), rng=np.random.default_rng(1), dtype=np.float64)
    rel = np.max(np.abs(ours - w) / np.abs(w))
    print(f"{name:13s} std {ours.std():.4f}   largest relative difference to the formula {rel:.1e}")

# %% [markdown]
# The differences are at the level of one rounding of a float64 (about 1e-16): trainlab
# computes exactly the formula. Note the standard deviations: 0.01, $\sqrt{1/500} = 0.0447$
# and $\sqrt{2/500} = 0.0632$.
#
# ## Ten layers deep: the activations vanish
#
# Take 10 layers of 500 tanh units with small random weights, feed it a batch of unit
# Gaussian inputs and record every layer with a `Monitor`. `monitor.observe(x)` runs one
# forward pass and keeps per-layer statistics (and, with `histograms=True`, histograms).


# %%
def deep_net(init_name, activation, depth=10, width=500, seed=0):
    return models.mlp(width, [width] * depth, 10, activation=activation, init=init_name,
                      rng=np.random.default_rng(seed))


x = rng.standard_normal((1000, 500)).astype(np.float32)
small_tanh = Monitor(deep_net("small_random", "tanh"), histograms=True)
small_tanh.observe(x)
tanh_layers = small_tanh.layer_names[1:-1:2]          # Linear, Tanh, Linear, Tanh, ..., Linear
print("std of the tanh outputs, layer by layer:",
      " ".join(f"{small_tanh.latest()[name]['act_std']:.1e}" for name in tanh_layers))

# %% [markdown]
# Each tanh layer multiplies the spread of its input by about $0.01 \cdot \sqrt{500} = 0.22$,
# so after 10 layers almost nothing is left ($0.22^{10} \approx 3 \cdot 10^{-7}$). The
# histograms of the outputs show it: every layer's distribution is a narrower spike
# around zero (look at the numbers under each panel, the range of its x axis).

# %%
small_tanh.plot_histograms("act", layers=tanh_layers)

# %% [markdown]
# Backward, the same happens to the gradients: $\partial L / \partial a$ is multiplied by
# $W^T$ on the way down, so with small weights the first layers get almost no gradient and
# do not learn. Give `observe` labels and a loss and it runs the backward pass too;
# `Monitor.plot()` then shows both directions, layer by layer (during training it also
# shows them over the steps).

# %%
loss = nn.CrossEntropyLoss()
y = rng.integers(0, 10, len(x))
monitor = Monitor(deep_net("small_random", "tanh"))
monitor.observe(x, y, loss)
monitor.plot()

# %% [markdown]
# ## xavier for tanh, he for ReLU
#
# The variance of $z = \sum_{j=1}^{n_{prev}} W_j a_j$ is $n_{prev} \cdot \mathrm{Var}(W)
# \cdot E[a^2]$. To keep it from layer to layer we need $\mathrm{Var}(W) = 1 / n_{prev}$:
# that is **xavier**. A ReLU sets half of its inputs to zero, which halves $E[a^2]$; to make
# up for it, **he** doubles the variance: $\mathrm{Var}(W) = 2 / n_{prev}$.
#
# Let's measure the std of every activation layer for each initialization and activation
# (`plotting.style()` gives the figure trainlab's fonts and colours).

# %%
with plotting.style():
    fig, axes = plotting.figure(1, 2, figsize=(11, 4))
    for ax, activation in zip(axes, ("tanh", "relu"), strict=True):
        for init_name in ("small_random", "xavier", "he"):
            monitor = Monitor(deep_net(init_name, activation))
            stats = monitor.observe(x)
            layer_stds = [stats[name]["act_std"] for name in monitor.layer_names[1:-1:2]]
            ax.semilogy(range(1, 11), layer_stds, "o-", color=plotting.color(init_name), label=init_name)
        ax.set(title=activation, xlabel="layer", ylabel="std of the activations")
        ax.legend()
fig

# %% [markdown]
# * With **tanh**, xavier keeps the spread within a small factor over 10 layers (it shrinks
#   slowly, because tanh squashes large inputs); he keeps it larger, closer to where tanh
#   saturates (|tanh| near 1, where its gradient is almost 0).
# * With **ReLU**, he holds it; xavier loses a factor of about $1/\sqrt{2}$ per layer.
# * Small random weights vanish with either.
#
# ## Does it matter for training?
#
# Train a 10-hidden-layer ReLU network on the 8x8 digits, once with each initialization.

# %%
splits = data.load("digits", rng=np.random.default_rng(0))
epochs = 2 if QUICK else 15
results = {}
for init_name in ("small_random", "xavier", "he"):
    model = models.mlp(64, [100] * 10, 10, activation="relu", init=init_name, rng=np.random.default_rng(1))
    trainer = Trainer(model, optim.SGD(model.parameters(), lr=0.05), nn.CrossEntropyLoss(), log=None,
                      progress=False)
    results[init_name] = trainer.fit(splits.train, splits.val, epochs=epochs, batch_size=64,
                                     rng=np.random.default_rng(2))
    print(f"{init_name:13s} validation accuracy after {epochs} epochs: {results[init_name].val_accuracy[-1]:.3f}")

# %% [markdown]
# The small-random network stays at chance (0.1): its first layers receive no gradient.
# `History.plot()` draws a run's loss, accuracy and learning rate, and marks its best epoch:

# %%
results["he"].plot(title="10 ReLU layers, he initialization")

# %% [markdown]
# ## Exercises
#
# 1. Repeat the depth experiment with `depth=30`. Which initialization still holds the
#    spread? Run `trainlab experiment depth-30 --quick` to see what that means for training.
# 2. Use `init.normal` (std 1) with tanh. What fraction of the units are saturated
#    (`monitor.latest()[layer]["saturation"]`)? Why does that stop learning?
# 3. Derive the factor $1/\sqrt{2}$ per layer of xavier with ReLU from the variance formula
#    above, and compare it with the measured ratio of consecutive layer stds.
# 4. LeakyReLU with slope $a$ passes $a \cdot x$ for negative inputs. Show that the right
#    gain is $\sqrt{2 / (1 + a^2)}$ (`init.he(..., negative_slope=a)`), and check it with a
#    Monitor.
