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
# # 2. Batch normalization, step by step
#
# Batch normalization (Ioffe & Szegedy, 2015) normalizes the input of each activation over
# the mini-batch, so that every layer sees inputs of a steady scale, however the layers
# before it change during training. In this notebook you will
#
# 1. compute the algorithm by hand, line by line, and check it against `nn.BatchNorm1d`;
# 2. see what it keeps for test time (running statistics) and how its gradient flows;
# 3. measure its four benefits with the `Monitor`: better gradient flow, higher learning
#    rates, less dependence on the initialization, and a regularizing noise.

# %%
import os

import numpy as np

from trainlab import Monitor, Trainer, data, init, models, nn, optim, plotting

QUICK = os.environ.get("TRAINLAB_TUTORIAL_QUICK") == "1"   # CI sets this: fewer epochs, same code
rng = np.random.default_rng(0)

# %% [markdown]
# ## The algorithm
#
# For the $m$ values $x_1, \dots, x_m$ of one unit over a mini-batch:
#
# $$\mu = \frac{1}{m} \sum_{i=1}^{m} x_i \qquad
#   \sigma^2 = \frac{1}{m} \sum_{i=1}^{m} (x_i - \mu)^2 \qquad
#   \hat{x}_i = \frac{x_i - \mu}{\sqrt{\sigma^2 + \epsilon}} \qquad
#   y_i = \gamma \hat{x}_i + \beta$$
#
# $\gamma$ and $\beta$ are learned: they let the network undo the normalization where a
# unit-Gaussian input is not what the activation wants (tanh, for instance). Here it is in
# NumPy, for a batch of 8 examples with 3 units each:

# %%
x = rng.normal(loc=[2.0, -1.0, 0.5], scale=[3.0, 0.1, 1.0], size=(8, 3))   # three badly scaled units
gamma, beta, eps = np.array([1.0, 2.0, 0.5]), np.array([0.0, 1.0, -1.0]), 1e-5

mu = x.mean(axis=0)                        # mini-batch mean
var = ((x - mu) ** 2).mean(axis=0)         # mini-batch variance (divides by m, not m - 1)
x_hat = (x - mu) / np.sqrt(var + eps)      # normalize
y = gamma * x_hat + beta                   # scale and shift

bn = nn.BatchNorm1d(3, eps=eps, dtype=np.float64)
bn.weight.data[:] = gamma
bn.bias.data[:] = beta
bn.train()
print("largest difference to nn.BatchNorm1d:", np.abs(bn(x) - y).max())
print("x_hat mean per unit:", x_hat.mean(axis=0).round(12), " std per unit:", x_hat.std(axis=0).round(6))

# %% [markdown]
# Each unit of $\hat{x}$ has mean 0 and standard deviation 1, whatever its scale before.
# The second unit's std is a little below 1: its variance is about 0.01, so the $\epsilon$
# under the root is not negligible there.

# %% [markdown]
# ## Test time: running statistics
#
# At test time there may be a single example, so there is no batch to average over. During
# training each BatchNorm layer keeps exponential averages of the batch statistics
# (PyTorch's convention, momentum 0.1, and the *unbiased* variance $\sigma^2 \cdot m/(m-1)$
# for the running one); `model.eval()` normalizes with them instead.

# %%
m = len(x)
print("running_mean:", bn.running_mean, " expected:", 0.9 * 0 + 0.1 * mu)
print("running_var: ", bn.running_var, " expected:", 0.9 * 1 + 0.1 * var * m / (m - 1))
bn.eval()
print("eval output of the first example:", bn(x[:1]))

# %% [markdown]
# ## The backward pass
#
# With upstream gradient $dy$, the closed form (two sums per unit) is
#
# $$d\beta = \sum_i dy_i \qquad d\gamma = \sum_i dy_i \hat{x}_i \qquad
#   dx_i = \frac{\gamma}{\sqrt{\sigma^2 + \epsilon}}
#          \left(dy_i - \frac{d\beta}{m} - \hat{x}_i \frac{d\gamma}{m}\right)$$
#
# Note the two subtracted terms: the gradient that reaches $x$ has zero mean and is
# orthogonal to $\hat{x}$, because shifting or scaling a whole batch does not change $y$.

# %%
bn.train()
bn.zero_grad()
bn(x)
dy = rng.standard_normal(x.shape)          # a random upstream gradient
dx = bn.backward(dy)
dbeta, dgamma = dy.sum(axis=0), (dy * x_hat).sum(axis=0)
dx_by_hand = gamma / np.sqrt(var + eps) * (dy - dbeta / m - x_hat * dgamma / m)
print("dx:    ", np.abs(dx - dx_by_hand).max())
print("dgamma:", np.abs(bn.weight.grad - dgamma).max(), " dbeta:", np.abs(bn.bias.grad - dbeta).max())

# %% [markdown]
# ## Benefit 1: gradients flow through deep networks
#
# A sigmoid passes at most 1/4 of the gradient it receives ($\sigma' \le 1/4$), so through
# 10 sigmoid layers the gradient shrinks by orders of magnitude. With BatchNorm before each
# sigmoid, its input stays in the range where $\sigma'$ is largest. The Monitor records the
# gradient norm at every layer's output; compare the two profiles at initialization.

# %%
splits = data.load("digits", rng=np.random.default_rng(0))
xb, yb = splits.train.x[:256], splits.train.y[:256]
loss = nn.CrossEntropyLoss()
with plotting.style():
    fig, ax = plotting.figure(figsize=(8, 4))
    for use_bn in (False, True):
        net = models.mlp(64, [100] * 10, 10, activation="sigmoid", batchnorm=use_bn, init="xavier",
                         rng=np.random.default_rng(1))
        monitor = Monitor(net)
        stats = monitor.observe(xb, yb, loss)
        linears = [name for name, layer in net.named_children() if isinstance(layer, nn.Linear)]
        norms = [stats[name]["grad_norm"] for name in linears]
        label = "with BN" if use_bn else "without BN"
        ax.semilogy(range(1, len(norms) + 1), norms, "o-", color=plotting.color("bn" if use_bn else "no_bn"),
                    label=label)
        print(f"{label:10s} gradient norm, last layer / first layer: {norms[-1] / norms[0]:.1e}")
    ax.set(xlabel="Linear layer (1 = first)", ylabel="||dL/dz|| at its output",
           title="gradient at initialization, 10 sigmoid layers")
    ax.legend()
fig

# %% [markdown]
# ## Benefit 2: higher learning rates
#
# Without BatchNorm, a large learning rate makes the weights, and with them the scale of
# every layer's output, grow until training diverges. With it, a layer's output does not
# depend on the scale of its weights, so the same step size stays stable. Train an
# 8-layer ReLU network with plain SGD at growing learning rates:

# %%
epochs = 1 if QUICK else 4
lrs = (0.1, 1.0, 3.0)
monitors = {}
for use_bn in (False, True):
    row = []
    for lr in lrs:
        net = models.mlp(64, [100] * 8, 10, activation="relu", batchnorm=use_bn, rng=np.random.default_rng(1))
        monitors[use_bn, lr] = monitor = Monitor(net, every=5)
        trainer = Trainer(net, optim.SGD(net.parameters(), lr=lr), loss, monitor=monitor, log=None,
                          progress=False, nan_guard=False)   # let it diverge: that is the point
        with np.errstate(all="ignore"):
            history = trainer.fit(splits.train, splits.val, epochs=epochs, batch_size=64,
                                  rng=np.random.default_rng(2))
        row.append(f"lr {lr:<4g}: val acc {history.val_accuracy[-1]:.2f}")
    print(("with BN:    " if use_bn else "without BN: ") + "   ".join(row))
    for lr in lrs:
        findings = monitors[use_bn, lr].diagnose()
        print(f"    the monitor at lr {lr:g}:", findings[0] if findings else "no findings")

# %% [markdown]
# Read the monitor's findings: without BatchNorm a large learning rate makes the
# activations overflow (NaN); with it, training at a ten times larger rate works. Even
# BatchNorm has a limit: at the largest rate many ReLUs die (they output 0 for every
# example). The monitor of the BatchNorm network at lr 1 shows per layer how large each
# step is relative to the weights (panel c):

# %%
monitors[True, 1.0].plot()

# %% [markdown]
# ## Benefit 3: less dependence on the initialization
#
# Scale every weight matrix by a different standard deviation, from $10^{-3}$ to 1. Without
# BatchNorm the activations of the last hidden layer vanish or explode with it; with
# BatchNorm they are the same for every scale, because each layer's output is normalized.


# %%
def scaled(std):
    return lambda shape, *, rng, dtype: init.normal(shape, rng=rng, std=std, dtype=dtype)


for use_bn in (False, True):
    cells = []
    for std in (1e-3, 1e-2, 1e-1, 1.0):
        net = models.mlp(64, [100] * 6, 10, activation="relu", batchnorm=use_bn, init=scaled(std),
                         rng=np.random.default_rng(1))
        stats = Monitor(net).observe(xb)
        last_relu = [name for name, layer in net.named_children() if isinstance(layer, nn.ReLU)][-1]
        cells.append(f"std {std:g}: {stats[last_relu]['act_std']:.2g}")
    print(("with BN:    " if use_bn else "without BN: ") + "   ".join(cells))

# %% [markdown]
# ## Benefit 4: a regularizing noise
#
# In training mode, an example is normalized with the statistics of *its* mini-batch, so
# its output depends a little on which other examples it was drawn with. That noise acts
# like a mild regularizer (and, in the paper, reduced the need for dropout). Push the same
# example through BatchNorm in five different random batches:

# %%
bn = nn.BatchNorm1d(64, dtype=np.float64)
outputs = []
for seed in range(5):
    others = splits.train.x[np.random.default_rng(seed).choice(len(splits.train.x), 31, replace=False)]
    batch = np.concatenate([splits.train.x[:1], others]).astype(np.float64)
    outputs.append(bn(batch)[0])
spread = np.std(outputs, axis=0)
print(f"the same example, five batches: its normalized values move by {spread.mean():.3f} on average "
      f"(their own scale is 1)")

# %% [markdown]
# On a small data set the regularizing effect shows as a smaller gap between training and
# validation accuracy. `History.plot()` draws both, with the best epoch marked:

# %%
net = models.mlp(64, [256, 256], 10, activation="relu", batchnorm=True, rng=np.random.default_rng(1))
trainer = Trainer(net, optim.SGD(net.parameters(), lr=0.1, momentum=0.9), loss, log=None, progress=False)
history = trainer.fit(splits.train, splits.val, epochs=2 if QUICK else 15, batch_size=32,
                      rng=np.random.default_rng(2))
print(f"train accuracy {history.train_accuracy[-1]:.3f}, validation accuracy {history.val_accuracy[-1]:.3f}")
history.plot(title="64-256-256-10 with BatchNorm")

# %% [markdown]
# ## Exercises
#
# 1. Put BatchNorm *after* the activation instead of before it (build the `nn.Sequential`
#    by hand). Does the gradient-flow profile of benefit 1 change?
# 2. Set `bn.weight.data[:] = np.sqrt(var + eps)` and `bn.bias.data[:] = mu` after the first
#    batch. What does the layer compute now? Why does that mean BatchNorm never removes
#    representational power?
# 3. Repeat benefit 4 with batches of 4 and of 256 examples. How does the noise scale with
#    the batch size? What goes wrong with a batch of 1?
# 4. Train benefit 2's network with BN at lr 3.0 and record it with
#    `Monitor(net, every=5, histograms=True)`; look at `monitor.plot()`. Which layer's update
#    ratio is the largest?
