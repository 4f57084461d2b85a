"""Layers, losses and containers (PyTorch-shaped, NumPy inside).

Input dtypes (one rule for every layer and loss):

* float32 and float64 inputs are computed in their own precision (mixed with a layer's
  float32 parameters, a float64 input gives a float64 output, NumPy's promotion);
* float16 inputs (and byte-swapped floats) are promoted to float32 first, the way
  ``np.result_type(x.dtype, np.float32)`` does: there are no float16 kernels;
* integer, bool, complex and other inputs are refused with a ``TypeError`` that names
  the layer and says to convert (``x.astype(np.float32)``). A cast would have to guess:
  PyTorch itself refuses integer inputs to Linear, Conv2d, BatchNorm, LeakyReLU, Dropout
  and the losses, and ``Sigmoid`` of an int64 array computed in int64 returns 0 or 1;
* non-contiguous and read-only inputs are accepted and give the same values as a
  C-contiguous copy; no layer writes into its input;
* an empty batch (``N = 0``) works as in PyTorch: an empty output and gradient, a NaN
  loss; BatchNorm in training leaves its running statistics and counts the batch.
  Training-mode BatchNorm on exactly one value per channel raises a ``ValueError``.

The check costs two attribute tests per call (see :func:`trainlab._validate.layer_input`).
"""

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
