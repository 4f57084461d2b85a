"""Parameter, Module and Sequential: the containers every layer builds on.

The shape of the API is PyTorch's, so code and habits port both ways:

* a :class:`Parameter` holds ``.data`` and ``.grad`` (NumPy arrays of the same
  shape and dtype); ``backward`` *accumulates* into ``.grad`` until
  :meth:`Module.zero_grad` clears it;
* a :class:`Module` owns parameters, buffers (non-trainable state such as the
  BatchNorm running statistics, never touched by an optimizer) and child
  modules, registered by attribute assignment;
* ``state_dict()`` uses PyTorch's key names (``"0.weight"``,
  ``"1.running_var"``, ``"1.num_batches_tracked"``) and order, so a state dict
  loads into the equivalent ``torch.nn.Sequential``.

Unlike PyTorch there is no autograd tape: each layer implements
``forward(x)`` (caching what its backward needs) and ``backward(dout) -> dx``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from trainlab import _validate

__all__ = ["Parameter", "Module", "Sequential"]

FLOAT_DTYPES = _validate.LAYER_DTYPES


def is_channel_major(a: np.ndarray) -> bool:
    """True when ``a`` (3-D or more) is a C-contiguous ``(C, N, ...)`` buffer seen as ``(N, C, ...)``.

    This is the memory layout Conv2d returns (see :mod:`trainlab.nn.conv`); an array that
    is C-contiguous as well (N == 1 or C == 1) counts as C-ordered.
    """
    return a.ndim >= 3 and not a.flags.c_contiguous and a.swapaxes(0, 1).flags.c_contiguous


def check_float_dtype(dtype: Any, where: str) -> np.dtype:
    """Return ``np.dtype(dtype)`` if it is float32 or float64, else raise ``TypeError``."""
    return _validate.float_dtype(where, "dtype", dtype)


class Parameter:
    """A trainable array with its gradient.

    Attributes:
        data: the value, an ``np.ndarray`` (float32 by default).
        grad: an array of the same shape and dtype as ``data``, holding
            dL/d(data) accumulated over ``backward`` calls since the last
            :meth:`zero_grad`. Starts at zeros.
        init: a short description of the initializer that produced ``data``
            (e.g. ``"he(fan_in, normal)"``), shown by :meth:`Module.summary`.

    Performance: :meth:`zero_grad` only marks the gradient as zero; the first
    write after it (``matmul_into_grad``, ``sum_into_grad``, ``accumulate_grad``)
    overwrites the array instead of adding to it, so a training step never
    spends a pass on filling zeros. The array is filled with zeros only when
    ``grad`` is read before anything was written (reading it always shows the
    logical value).

    Assigning ``p.grad = g`` (an array of ``data``'s shape and dtype, kept by
    reference) makes ``g`` the gradient, and a later ``backward`` adds to it, as in
    PyTorch; ``p.grad = None`` sets it back to zero (a fresh array).
    """

    __slots__ = ("data", "_grad", "init", "_grad_is_zero", "_grad_stale")

    def __init__(self, data: np.ndarray, init: str = "") -> None:
        try:
            data = np.asarray(data)
        except (TypeError, ValueError) as exc:
            raise _validate.argument_error(TypeError, "Parameter", "data", f"data must be a floating-point "
                                           f"array, got {type(data).__name__} ({exc})") from None
        if not np.issubdtype(data.dtype, np.floating):
            raise _validate.argument_error(TypeError, "Parameter", "data",
                                           f"data must be a floating-point array, got {data.dtype}")
        if not isinstance(init, str):
            raise _validate.argument_error(TypeError, "Parameter", "init", f"init must be a string "
                                           f"describing the initializer, got {type(init).__name__}")
        self.data = np.asarray(data, order="C")
        self._grad = np.zeros_like(self.data)
        self.init = init
        self._grad_is_zero = True      # the logical gradient is zero
        self._grad_stale = False       # ... but the array still holds old values

    @property
    def grad(self) -> np.ndarray:
        if self._grad_stale:
            self._grad.fill(0)
            self._grad_stale = False
        return self._grad

    @grad.setter
    def grad(self, value: np.ndarray | None) -> None:
        if value is None:
            self._grad = np.zeros_like(self.data)
            self._grad_is_zero, self._grad_stale = True, False
            return
        if not isinstance(value, np.ndarray) or value.dtype != self.data.dtype:
            raise _validate.argument_error(
                TypeError, "Parameter", "grad", f"grad must be an array of the parameter's dtype "
                f"{self.data.dtype}, got {getattr(value, 'dtype', type(value).__name__)}")
        if value.shape != self.data.shape:
            raise _validate.argument_error(ValueError, "Parameter", "grad", f"grad must have the parameter's "
                                           f"shape {self.data.shape}, got {value.shape}")
        self._grad = value
        self._grad_is_zero = False      # backward adds to the assigned gradient
        self._grad_stale = False

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def size(self) -> int:
        return self.data.size

    def zero_grad(self) -> None:
        """Set ``grad`` to zero (lazily: the array is cleared when next read or overwritten)."""
        if not self._grad_is_zero:
            self._grad_is_zero = True
            self._grad_stale = True

    def _written(self) -> None:
        self._grad_is_zero = False
        self._grad_stale = False

    def accumulate_grad(self, value: np.ndarray) -> None:
        """``grad += value`` (a plain copy when ``grad`` is known to be zero)."""
        if self._grad_is_zero:
            np.copyto(self._grad, value)
            self._written()
        else:
            self._grad += value

    def matmul_into_grad(self, a: np.ndarray, b: np.ndarray) -> None:
        """``grad += a @ b`` without a temporary when ``grad`` is known to be zero."""
        grad = self._grad
        if self._grad_is_zero and a.dtype == grad.dtype and b.dtype == grad.dtype:
            np.matmul(a, b, out=grad)
            self._written()
        else:
            self.accumulate_grad(a @ b)

    def sum_into_grad(self, value: np.ndarray, axis: int | tuple[int, ...]) -> None:
        """``grad += value.sum(axis)`` without a temporary when ``grad`` is known to be zero.

        The sum over the rows (``axis=0``) or the columns (``axis=1``) of a C-contiguous
        2-D float array is one BLAS matrix-vector product with a vector of ones
        (``1^T value`` or ``value 1``), faster than ``np.sum``.
        """
        grad = self._grad
        if (axis in (0, 1) and value.ndim == 2 and value.dtype == grad.dtype and value.shape[axis] > 1
                and value.flags.c_contiguous and grad.dtype in FLOAT_DTYPES):
            ones = np.ones(value.shape[axis], dtype=value.dtype)
            a, b = (ones, value) if axis == 0 else (value, ones)
            if self._grad_is_zero:
                np.matmul(a, b, out=grad)
                self._written()
            else:
                grad += a @ b
            return
        if self._grad_is_zero and value.dtype == grad.dtype:
            np.sum(value, axis=axis, out=grad)
            self._written()
        else:
            self.accumulate_grad(value.sum(axis=axis))

    def mark_grad_written(self) -> None:
        """Tell the parameter that ``grad`` was modified directly (so it is not known-zero)."""
        self._written()

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class Module:
    """Base class of every layer, loss and container.

    Subclasses implement ``forward(x)`` and ``backward(dout) -> dx``. Assigning a
    :class:`Parameter` or a :class:`Module` to an attribute registers it;
    buffers are registered with :meth:`register_buffer`.
    """

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_hooks", [])
        object.__setattr__(self, "_backward_hooks", [])
        object.__setattr__(self, "training", True)

    # ----------------------------------------------------------------- registration
    def __setattr__(self, name: str, value: Any) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"{type(self).__name__}: call Module.__init__() before assigning attributes")
        params, buffers, modules = self._parameters, self._buffers, self._modules
        if isinstance(value, Parameter):
            params[name] = value
            buffers.pop(name, None)
            modules.pop(name, None)
        elif isinstance(value, Module):
            modules[name] = value
            params.pop(name, None)
            buffers.pop(name, None)
        elif name in buffers:
            buffers[name] = value if value is None else np.asarray(value)
            return
        elif name in params:
            if value is not None:
                raise _validate.argument_error(TypeError, f"{type(self).__name__}.{name}", name,
                                               f"expected a Parameter, got {type(value).__name__}")
            params[name] = None        # as in PyTorch: ``layer.bias = None`` removes the parameter
        object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        # only called when normal lookup fails
        d = self.__dict__
        for store in ("_parameters", "_buffers", "_modules"):
            if store in d and name in d[store]:
                return d[store][name]
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    def register_buffer(self, name: str, value: np.ndarray | None) -> None:
        """Register non-trainable state saved in ``state_dict`` (e.g. ``running_mean``)."""
        self.__dict__.pop(name, None)
        self._buffers[name] = value if value is None else np.asarray(value)

    # ----------------------------------------------------------------- forward / backward
    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, dout: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        out = self.forward(*args, **kwargs)
        for hook in self._forward_hooks:
            hook(self, args[0] if args else None, out)
        return out

    def backward_with_hooks(self, dout: np.ndarray) -> np.ndarray:
        """Run :meth:`backward` and then the backward hooks ``hook(module, dx, dout)``."""
        dx = self.backward(dout)
        for hook in self._backward_hooks:
            hook(self, dx, dout)
        return dx

    def register_forward_hook(self, hook: Callable[[Module, Any, Any], None]) -> Callable[[], None]:
        """Call ``hook(module, input, output)`` after every forward; returns a remover."""
        self._forward_hooks.append(hook)
        return lambda: self._forward_hooks.remove(hook) if hook in self._forward_hooks else None

    def register_backward_hook(self, hook: Callable[[Module, Any, Any], None]) -> Callable[[], None]:
        """Call ``hook(module, grad_input, grad_output)`` after every backward run by a container.

        Returns a function that removes the hook.
        """
        self._backward_hooks.append(hook)
        return lambda: self._backward_hooks.remove(hook) if hook in self._backward_hooks else None

    # ----------------------------------------------------------------- traversal
    def children(self) -> Iterator[Module]:
        yield from self._modules.values()

    def named_children(self) -> Iterator[tuple[str, Module]]:
        yield from self._modules.items()

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        yield prefix, self
        for name, child in self._modules.items():
            if child is not None:
                yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        seen: set[int] = set()
        for mod_name, mod in self.named_modules(prefix):
            for name, p in mod._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self) -> list[Parameter]:
        """All trainable parameters, in registration order (each once)."""
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
        for mod_name, mod in self.named_modules(prefix):
            for name, b in mod._buffers.items():
                if b is not None:
                    yield (f"{mod_name}.{name}" if mod_name else name), b

    def buffers(self) -> list[np.ndarray]:
        return [b for _, b in self.named_buffers()]

    # ----------------------------------------------------------------- modes and dtype
    def train(self, mode: bool = True) -> Module:
        """Set training mode (BatchNorm uses batch statistics, Dropout drops). Returns self."""
        mode = _validate.flag(f"{type(self).__name__}.train", "mode", mode)
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> Module:
        """Set evaluation mode (BatchNorm uses running statistics, Dropout is identity)."""
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.zero_grad()

    def to(self, dtype: Any) -> Module:
        """Cast every parameter (data and grad) and floating buffer to ``dtype``; returns self."""
        dt = check_float_dtype(dtype, f"{type(self).__name__}.to")
        for m in self.modules():
            for p in m._parameters.values():
                if p is not None and p.data.dtype != dt:
                    p.data = p.data.astype(dt)
                    p._grad = p._grad.astype(dt)        # the lazy-zero flags still hold
            for name, b in m._buffers.items():
                if b is not None and np.issubdtype(b.dtype, np.floating) and b.dtype != dt:
                    m._buffers[name] = b.astype(dt)
            m._on_dtype_change(dt)
        return self

    def _on_dtype_change(self, dtype: np.dtype) -> None:
        """Hook for layers that keep dtype-dependent scratch buffers."""

    # ----------------------------------------------------------------- state dict
    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Copies of all parameters and buffers, keyed and ordered as PyTorch does."""
        out: OrderedDict[str, np.ndarray] = OrderedDict()
        self._collect_state(out, "")
        return out

    def _collect_state(self, out: OrderedDict, prefix: str) -> None:
        for name, p in self._parameters.items():
            if p is not None:
                out[prefix + name] = p.data.copy()
        for name, b in self._buffers.items():
            if b is not None:
                out[prefix + name] = np.array(b, copy=True)
        for name, child in self._modules.items():
            if child is not None:
                child._collect_state(out, f"{prefix}{name}.")

    def _state_slots(self) -> OrderedDict[str, tuple[Module, str, str]]:
        slots: OrderedDict[str, tuple[Module, str, str]] = OrderedDict()
        for mod_name, mod in self.named_modules():
            pre = f"{mod_name}." if mod_name else ""
            for name, p in mod._parameters.items():
                if p is not None:
                    slots[pre + name] = (mod, name, "param")
            for name, b in mod._buffers.items():
                if b is not None:
                    slots[pre + name] = (mod, name, "buffer")
        return slots

    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True) -> tuple[list[str], list[str]]:
        """Copy values from ``state_dict`` into this module's parameters and buffers.

        Values may be NumPy arrays or anything ``np.asarray`` accepts (a CPU
        ``torch.Tensor`` included). Values are cast to the dtype of the
        receiving array. Nothing is changed unless every check passes.

        Args:
            state_dict: mapping of PyTorch-style keys to arrays.
            strict: if True, missing and unexpected keys are errors.

        Returns:
            ``(missing_keys, unexpected_keys)``.

        Raises:
            KeyError: (strict) listing every missing and every unexpected key.
            ValueError: listing every key whose shape does not match or whose value is not numeric.
            TypeError: ``state_dict`` is not a mapping, ``strict`` not a bool.
        """
        where = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, Mapping):
            raise _validate.argument_error(TypeError, where, "state_dict", f"state_dict must be a dict of "
                                           f"arrays, got {type(state_dict).__name__}")
        strict = _validate.flag(where, "strict", strict)
        slots = self._state_slots()
        missing = [k for k in slots if k not in state_dict]
        unexpected = [k for k in state_dict if k not in slots]
        problems = []
        if strict and missing:
            problems.append("missing keys: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys: " + ", ".join(unexpected))
        values = {}
        bad_shapes, bad_types = [], []
        for key, (mod, name, kind) in slots.items():
            if key not in state_dict:
                continue
            try:
                value = np.asarray(state_dict[key])
            except (TypeError, ValueError):
                bad_types.append(f"{key} (not an array: {type(state_dict[key]).__name__})")
                continue
            target = mod._parameters[name].data if kind == "param" else mod._buffers[name]
            if value.dtype.kind not in "biuf":
                bad_types.append(f"{key} (expected numbers, got dtype {value.dtype})")
            elif value.shape != target.shape:
                bad_shapes.append(f"{key} (expected {tuple(target.shape)}, got {tuple(value.shape)})")
            values[key] = value
        if bad_shapes:
            problems.append("wrong shapes: " + ", ".join(bad_shapes))
        if bad_types:
            problems.append("wrong types: " + ", ".join(bad_types))
        if problems:
            msg = f"{where}: " + "; ".join(problems)
            raise (ValueError(msg) if (bad_shapes or bad_types) and not (strict and (missing or unexpected))
                   else KeyError(msg))
        for key, value in values.items():
            mod, name, kind = slots[key]
            if kind == "param":
                p = mod._parameters[name]
                np.copyto(p.data, value, casting="unsafe")
            else:
                buf = mod._buffers[name]
                if buf.ndim == 0:
                    mod._buffers[name] = np.array(value, dtype=buf.dtype)
                else:
                    np.copyto(buf, value, casting="unsafe")
        return missing, unexpected

    # ----------------------------------------------------------------- description
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        if self._modules:
            for name, child in self._modules.items():
                child_repr = repr(child).replace("\n", "\n  ")
                lines.append(f"\n  ({name}): {child_repr}")
            lines.append("\n")
        lines.append(")")
        return "".join(lines)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of ``forward``'s output for an input of ``input_shape`` (default: unchanged)."""
        return tuple(input_shape)

    def summary(self, input_shape: tuple[int, ...] | None = None) -> str:
        """A table of layers, output shapes, parameter counts and initializers.

        Args:
            input_shape: shape of one input batch, e.g. ``(32, 784)``; when
                given, the output shape of each layer is shown.
        """
        rows = [("layer", "output shape", "params", "init")]
        layers = list(self._modules.items()) if self._modules else [(type(self).__name__, self)]
        shape = None if input_shape is None else \
            _validate.shape(f"{type(self).__name__}.summary", "input_shape", input_shape)
        total = 0
        for name, layer in layers:
            if shape is not None:
                shape = layer.output_shape(shape)
            n = sum(p.size for p in layer.parameters())
            total += n
            inits = ", ".join(f"{pn}: {p.init}" for pn, p in layer.named_parameters() if p.init)
            label = f"{name}: {type(layer).__name__}({layer.extra_repr()})" if self._modules else \
                f"{type(layer).__name__}({layer.extra_repr()})"
            rows.append((label, "" if shape is None else str(shape), f"{n:,}", inits))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths)
        lines = [fmt.format(*rows[0]), "  ".join("-" * w for w in widths)]
        lines += [fmt.format(*r) for r in rows[1:]]
        lines.append(f"total parameters: {total:,}")
        return "\n".join(line.rstrip() for line in lines)


class Sequential(Module):
    """A chain of modules: ``forward`` runs them in order, ``backward`` in reverse.

    Children are named ``"0"``, ``"1"``, ... as in ``torch.nn.Sequential``, so
    state-dict keys match. Layers built with ``init="auto"`` are resolved here
    to the seed's recommendation for the activation that follows them (through
    BatchNorm, Dropout, pooling or Flatten in between), or to xavier when no
    activation follows.
    """

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise _validate.argument_error(TypeError, "Sequential", "modules",
                                               f"modules[{i}] must be a Module, got {type(m).__name__}")
            setattr(self, str(i), m)
        self._resolve_auto_init()

    def _resolve_auto_init(self) -> None:
        layers = list(self._modules.values())
        for i, layer in enumerate(layers):
            if not getattr(layer, "init_is_auto", False):
                continue
            activation = None
            for nxt in layers[i + 1:]:
                if getattr(nxt, "is_activation", False):
                    activation = nxt
                    break
                if not getattr(nxt, "transparent_to_init", False):
                    break
            layer.resolve_auto_init(activation)

    def __getitem__(self, idx: int | slice) -> Module:
        layers = list(self._modules.values())
        if isinstance(idx, slice):
            return Sequential(*layers[idx])
        return layers[idx]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def append(self, module: Module) -> Sequential:
        if not isinstance(module, Module):
            raise _validate.argument_error(TypeError, "Sequential.append", "module",
                                           f"module must be a Module, got {type(module).__name__}")
        setattr(self, str(len(self._modules)), module)
        self._resolve_auto_init()
        return self

    def forward(self, x: np.ndarray) -> np.ndarray:
        for layer in self._modules.values():
            x = layer(x)
        return x

    def backward(self, dout: np.ndarray, *, input_grad: bool = True) -> np.ndarray | None:
        """Run every layer's backward in reverse order; returns dL/dx.

        Args:
            dout: dL/d(output).
            input_grad: with ``False`` the gradient with respect to the input is
                not needed (the input is data, as when ``x.requires_grad`` is
                False in PyTorch): the first layer skips computing it when it can
                (Linear saves one matrix product) and ``None`` is returned. The
                parameter gradients are the same either way.
        """
        layers = list(self._modules.values())
        if not layers:
            return dout
        for layer in layers[:0:-1]:
            dout = layer.backward_with_hooks(dout)
        first = layers[0]
        if (not input_grad and not first._backward_hooks
                and (isinstance(first, Sequential) or getattr(first, "can_skip_input_grad", False))):
            first.backward(dout, input_grad=False)
            return None
        return first.backward_with_hooks(dout)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        shape = tuple(input_shape)
        for layer in self._modules.values():
            shape = layer.output_shape(shape)
        return shape
