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
# # 3. Six update rules, from gradient descent to Adam
#
# An optimizer turns the gradient $\partial L / \partial w$ into a step. The six classic rules
# differ in what they remember from earlier steps: nothing (gradient descent), a velocity
# (momentum, Nesterov), or the size of past gradients (AdaGrad, RMSProp, Adam). In this
# notebook you will
#
# 1. write each rule in NumPy from its formula and check it against trainlab's optimizer
#    and its kernel in `trainlab.optim.functional`;
# 2. watch all six move on 2-D surfaces: a narrow valley, a saddle and Rosenbrock's banana;
# 3. compare them on a real network.

# %%
import os

import numpy as np

from trainlab import Trainer, data, models, nn, optim, plotting
from trainlab.optim import functional

QUICK = os.environ.get("TRAINLAB_TUTORIAL_QUICK") == "1"   # CI sets this: fewer steps and epochs

# %% [markdown]
# ## A test surface
#
# $f(x, y) = \tfrac{1}{2}(x^2 + 10 y^2)$ is a valley ten times steeper across ($y$) than
# along ($x$). Its gradient is $(x, 10y)$. Every rule below starts at $(-4, 1)$.


# %%
def valley(w):
    return 0.5 * (w[0] ** 2 + 10 * w[1] ** 2)


def valley_grad(w):
    return np.array([w[0], 10 * w[1]])


def by_trainlab(make_optimizer, grad, start, steps):
    """Run one of trainlab's optimizers on a 2-D point; returns the path, shape (steps + 1, 2)."""
    p = nn.Parameter(np.array(start, dtype=np.float64))
    opt = make_optimizer([p])
    path = [p.data.copy()]
    for _ in range(steps):
        opt.zero_grad()
        p.grad[...] = grad(p.data)
        opt.step()
        path.append(p.data.copy())
    return np.array(path)


start, steps = (-4.0, 1.0), 20

# %% [markdown]
# ## 1. Gradient descent
#
# $$w \leftarrow w - \alpha \frac{\partial L}{\partial w}$$
#
# Steps are proportional to the slope: large on steep walls, tiny on plateaus.

# %%
lr = 0.05
w = np.array(start)
for _ in range(steps):
    w = w - lr * valley_grad(w)
ours = by_trainlab(lambda p: optim.SGD(p, lr=lr), valley_grad, start, steps)
print("by hand", w, " trainlab", ours[-1], " difference", np.abs(w - ours[-1]).max())

# %% [markdown]
# ## 2. Momentum
#
# A ball rolling downhill gathers speed: the velocity $v$ accumulates past gradients.
#
# $$v \leftarrow \mu v - \alpha \frac{\partial L}{\partial w} \qquad w \leftarrow w + v$$
#
# `optim.Momentum` is `SGD(momentum=0.9)`. By default it keeps PyTorch's form of the same
# rule (a buffer $b \leftarrow \mu b + g$, then $w \leftarrow w - \alpha b$, which is the
# same path while $\alpha$ is constant); `momentum_form="velocity"` is exactly the formula
# above. Its kernel is `functional.sgd`, which we call directly here too.

# %%
mu = 0.9
w, v = np.array(start), np.zeros(2)
for _ in range(steps):
    v = mu * v - lr * valley_grad(w)
    w = w + v
ours = by_trainlab(lambda p: optim.Momentum(p, lr=lr, momentum=mu, momentum_form="velocity"), valley_grad,
                   start, steps)
kernel_w, kernel_v = np.array(start), np.zeros(2)
for _ in range(steps):
    functional.sgd(kernel_w, valley_grad(kernel_w), kernel_v, lr=lr, momentum=mu, momentum_form="velocity")
print("by hand", w, " trainlab", ours[-1], " kernel", kernel_w)
print("largest difference:", max(np.abs(w - ours[-1]).max(), np.abs(w - kernel_w).max()))

# %% [markdown]
# ## 3. Nesterov momentum
#
# Look ahead along the velocity before correcting:
#
# $$v \leftarrow \mu v - \alpha \frac{\partial L}{\partial w} \qquad
#   w \leftarrow w + \mu v - \alpha \frac{\partial L}{\partial w}$$

# %%
w, v = np.array(start), np.zeros(2)
for _ in range(steps):
    g = valley_grad(w)
    v = mu * v - lr * g
    w = w + mu * v - lr * g
ours = by_trainlab(lambda p: optim.Nesterov(p, lr=lr, momentum=mu, momentum_form="velocity"), valley_grad,
                   start, steps)
print("by hand", w, " trainlab", ours[-1], " difference", np.abs(w - ours[-1]).max())

# %% [markdown]
# ## 4. AdaGrad
#
# Each coordinate gets its own step size, smaller where the gradients have been large:
# $G$ is the running *sum* of squared gradients.
#
# $$G \leftarrow G + \left(\frac{\partial L}{\partial w}\right)^2 \qquad
#   w \leftarrow w - \frac{\alpha}{\sqrt{G + \epsilon}} \frac{\partial L}{\partial w}$$
#
# PyTorch (and trainlab by default) put $\epsilon$ outside the root, $\sqrt{G} + \epsilon$;
# `eps_inside_sqrt=True` is the formula above.

# %%
lr_adaptive, eps = 0.5, 1e-10
w, G = np.array(start), np.zeros(2)
for _ in range(steps):
    g = valley_grad(w)
    G = G + g * g
    w = w - lr_adaptive / np.sqrt(G + eps) * g
ours = by_trainlab(lambda p: optim.Adagrad(p, lr=lr_adaptive, eps=eps, eps_inside_sqrt=True), valley_grad,
                   start, steps)
print("by hand", w, " trainlab", ours[-1], " difference", np.abs(w - ours[-1]).max())

# %% [markdown]
# ## 5. RMSProp
#
# AdaGrad's sum only grows, so its steps only shrink. RMSProp keeps a moving *average*
# instead, with decay $\gamma$ (`alpha` in PyTorch and trainlab):
#
# $$G \leftarrow \gamma G + (1 - \gamma) \left(\frac{\partial L}{\partial w}\right)^2 \qquad
#   w \leftarrow w - \frac{\alpha}{\sqrt{G + \epsilon}} \frac{\partial L}{\partial w}$$

# %%
lr_rms, decay, eps = 0.05, 0.99, 1e-8
w, G = np.array(start), np.zeros(2)
for _ in range(steps):
    g = valley_grad(w)
    G = decay * G + (1 - decay) * g * g
    w = w - lr_rms / np.sqrt(G + eps) * g
ours = by_trainlab(lambda p: optim.RMSprop(p, lr=lr_rms, alpha=decay, eps=eps, eps_inside_sqrt=True),
                   valley_grad, start, steps)
print("by hand", w, " trainlab", ours[-1], " difference", np.abs(w - ours[-1]).max())

# %% [markdown]
# ## 6. Adam
#
# Momentum and RMSProp together: a moving average $m$ of the gradient and $v$ of its square.
#
# $$m \leftarrow \beta_1 m + (1 - \beta_1) \frac{\partial L}{\partial w} \qquad
#   v \leftarrow \beta_2 v + (1 - \beta_2) \left(\frac{\partial L}{\partial w}\right)^2 \qquad
#   w \leftarrow w - \frac{\alpha}{\sqrt{v + \epsilon}} m$$
#
# This is the formula as it is usually first taught. Kingma & Ba's Adam (PyTorch's, and
# `optim.Adam`'s default) also divides $m$ and $v$ by $1 - \beta^t$ to undo their start at
# zero; `optim.adam_seed` is the formula above (no bias correction, $\epsilon$ under the root).

# %%
lr_adam, b1, b2, eps = 0.05, 0.9, 0.999, 1e-8
w, m, v = np.array(start), np.zeros(2), np.zeros(2)
for _ in range(steps):
    g = valley_grad(w)
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    w = w - lr_adam * m / np.sqrt(v + eps)
ours = by_trainlab(lambda p: optim.adam_seed(p, lr=lr_adam), valley_grad, start, steps)
kernel_w, kernel_m, kernel_v = np.array(start), np.zeros(2), np.zeros(2)
for t in range(1, steps + 1):
    functional.adam(kernel_w, valley_grad(kernel_w), kernel_m, kernel_v, step=t, lr=lr_adam,
                    bias_correction=False, eps_inside_sqrt=True)
print("by hand", w, " trainlab", ours[-1], " kernel", kernel_w)
print("largest difference:", max(np.abs(w - ours[-1]).max(), np.abs(w - kernel_w).max()))

# %% [markdown]
# The differences are zero or a few units of the last bit of a float64 (trainlab folds some
# constants together, as Kingma & Ba's "efficient version" does).
#
# ## Trajectories on three surfaces
#
# * the **valley** above: the steep direction caps gradient descent's learning rate (above
#   $2/10$ it diverges), so it crawls along the flat one; momentum builds speed along it;
# * a **saddle** $f = x^2 - y^2$, started almost on the ridge at $(1, 0.001)$: the gradient
#   in $y$ is tiny, so gradient descent stalls near the saddle point, while the adaptive
#   rules divide by the gradient's size and move away at once;
# * **Rosenbrock** $f = (1 - x)^2 + 100 (y - x^2)^2$: a curved, flat-bottomed valley with its
#   minimum at $(1, 1)$.
#
# Each rule gets a learning rate that suits it on each surface (printed below). In the top
# row, dots mark every tenth of the run, so you see how fast each rule goes, not only where;
# the bottom row shows the same runs against the step: the distance to the minimum, and
# on the saddle the distance from the ridge.

# %%
SURFACES = {   # name: (f, gradient, start, x range, y range, minimum of f or None)
    "valley": (valley, valley_grad, (-4.0, 1.0), (-4.5, 1.0), (-1.2, 1.5), 0.0),
    "saddle": (lambda w: w[0] ** 2 - w[1] ** 2, lambda w: np.array([2 * w[0], -2 * w[1]]), (1.0, 1e-3),
               (-0.5, 1.2), (-0.3, 1.6), None),
    "rosenbrock": (lambda w: (1 - w[0]) ** 2 + 100 * (w[1] - w[0] ** 2) ** 2,
                   lambda w: np.array([-2 * (1 - w[0]) - 400 * w[0] * (w[1] - w[0] ** 2),
                                       200 * (w[1] - w[0] ** 2)]), (-1.5, 2.0), (-2.0, 2.0), (-1.0, 3.0), 0.0),
}
TITLES = {"valley": "valley ½(x² + 10y²)", "saddle": "saddle x² − y²", "rosenbrock": "Rosenbrock"}
RULES = {
    "sgd": lambda lr: (lambda p: optim.SGD(p, lr=lr)),
    "momentum": lambda lr: (lambda p: optim.Momentum(p, lr=lr, momentum=0.9)),
    "nesterov": lambda lr: (lambda p: optim.Nesterov(p, lr=lr, momentum=0.9)),
    "adagrad": lambda lr: (lambda p: optim.Adagrad(p, lr=lr)),
    "rmsprop": lambda lr: (lambda p: optim.RMSprop(p, lr=lr)),
    "adam": lambda lr: (lambda p: optim.Adam(p, lr=lr)),
}
LR = {
    "valley": {"sgd": 0.05, "momentum": 0.01, "nesterov": 0.01, "adagrad": 0.5, "rmsprop": 0.05, "adam": 0.1},
    "saddle": {"sgd": 0.01, "momentum": 0.01, "nesterov": 0.01, "adagrad": 0.05, "rmsprop": 0.01, "adam": 0.02},
    "rosenbrock": {"sgd": 5e-4, "momentum": 1e-4, "nesterov": 1e-4, "adagrad": 0.3, "rmsprop": 3e-3, "adam": 0.03},
}
STEPS = {"valley": 100, "saddle": 300, "rosenbrock": 500 if QUICK else 2000}
for name, lrs in LR.items():
    print(f"{name:11s}", "  ".join(f"{rule} {lr:g}" for rule, lr in lrs.items()))

with plotting.style():
    fig, axes = plotting.figure(2, 3, figsize=(12, 8))
    for col, (name, (f, grad, w0, xlim, ylim, f_min)) in enumerate(SURFACES.items()):
        ax, ax_steps = axes[0, col], axes[1, col]
        gx, gy = np.meshgrid(np.linspace(*xlim, 200), np.linspace(*ylim, 200))
        z = f(np.stack([gx, gy]))
        ax.contour(gx, gy, z if f_min is None else np.log1p(z), levels=15, colors="#bbbbbb", linewidths=0.7)
        for rule, lr in LR[name].items():
            path = by_trainlab(RULES[rule](lr), grad, w0, STEPS[name])
            # plotting.series: the rule's colour, line style and marker, as in every trainlab figure,
            # so that momentum and Nesterov stay apart where their paths coincide
            every = STEPS[name] // 10
            ax.plot(path[:, 0], path[:, 1], **plotting.series(rule, lw=1.6, ms=4, markevery=every), label=rule)
            progress = f(path.T) - f_min if f_min is not None else np.abs(path[:, 1])
            ax_steps.semilogy(progress, **plotting.series(rule, marker=None))
        ax.plot(*w0, "k*", ms=12)
        ax.set(xlim=xlim, ylim=ylim, xlabel="x", ylabel="y", title=TITLES[name])
        ax.grid(False)
        ax_steps.set(xlabel="step", ylabel="f − min f" if f_min is not None else "|y|, distance from the ridge")
        if f_min is None:
            ax_steps.set_ylim(5e-4, 20)
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="lower center", ncols=6)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
fig

# %% [markdown]
# * In the valley, momentum and Nesterov overshoot and swing back, but reach the bottom
#   sooner than gradient descent at five times their learning rate.
# * On the saddle, gradient descent needs hundreds of steps to leave the ridge: its step in
#   $y$ is proportional to $|y|$, which starts at 0.001. Momentum multiplies its speed
#   step after step; the adaptive rules take steps of about $\alpha$ from the first one.
# * On Rosenbrock every rule follows the same curved valley floor; the dots and the bottom
#   panel show that Adam gets to the minimum first.

# %% [markdown]
# ## On a network
#
# The surfaces are two-dimensional; a network has thousands of weights whose gradients
# differ in scale by orders of magnitude, which is where the adaptive rules help most.
# Train the same ReLU network on the digits with each rule at a typical learning rate:

# %%
splits = data.load("digits", rng=np.random.default_rng(0))
epochs = 1 if QUICK else 8
typical = {"sgd": 0.1, "momentum": 0.03, "nesterov": 0.03, "adagrad": 0.03, "rmsprop": 1e-3, "adam": 1e-3}
histories = {}
for rule, lr in typical.items():
    net = models.mlp(64, [128, 128], 10, activation="relu", rng=np.random.default_rng(1))
    trainer = Trainer(net, optim.create(rule, net.parameters(), lr=lr), nn.CrossEntropyLoss(), log=None,
                      progress=False)
    histories[rule] = trainer.fit(splits.train, splits.val, epochs=epochs, batch_size=64,
                                  rng=np.random.default_rng(2))
    print(f"{rule:9s} lr {lr:<6g} final training loss {histories[rule].train_loss[-1]:.3f}, "
          f"validation accuracy {histories[rule].val_accuracy[-1]:.3f}")
histories["adam"].plot(title="Adam, lr 1e-3")

# %% [markdown]
# ## Exercises
#
# 1. On the valley, find the largest learning rate at which gradient descent still
#    converges. Show that it is $2 / 10$ (two over the largest curvature) and try it.
# 2. Replace `optim.adam_seed` by `optim.Adam` (with bias correction) in section 6 and
#    compare the first five steps. Why is the seed's version slow at the start?
# 3. On the saddle, start exactly on the ridge, at $(1, 0)$. What does every rule do, and
#    why? (Look at the gradient there.)
# 4. AdaGrad's step size only shrinks. Run it for 5,000 steps on Rosenbrock and plot
#    $\alpha / \sqrt{G}$ against the step. Then run `trainlab experiment optimizers --quick`
#    and read its verdicts.
