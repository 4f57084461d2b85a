"""trainlab: initialization, batch normalization and update rules, exact and visible."""

from trainlab import init, nn, optim

__version__ = "0.1.0"

__all__ = ["init", "nn", "optim", "__version__"]
