"""trainlab: initialization, batch normalization and update rules, exact and visible."""

from trainlab import data, init, nn, optim
from trainlab.monitor import Monitor
from trainlab.train import History, Trainer

__version__ = "0.1.0"

__all__ = ["data", "init", "nn", "optim", "Trainer", "History", "Monitor", "__version__"]
