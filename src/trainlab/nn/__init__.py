"""Layers, losses and containers (PyTorch-shaped, NumPy inside)."""

from trainlab.nn.activation import LeakyReLU, ReLU, Sigmoid, Tanh
from trainlab.nn.batchnorm import BatchNorm1d, BatchNorm2d
from trainlab.nn.conv import Conv2d, Flatten, MaxPool2d
from trainlab.nn.dropout import Dropout
from trainlab.nn.linear import Linear
from trainlab.nn.loss import CrossEntropyLoss, MSELoss
from trainlab.nn.module import Module, Parameter, Sequential

__all__ = [
    "Module", "Parameter", "Sequential", "Linear", "Conv2d", "MaxPool2d", "Flatten", "BatchNorm1d", "BatchNorm2d",
    "ReLU", "LeakyReLU", "Tanh", "Sigmoid", "Dropout", "CrossEntropyLoss", "MSELoss",
]
