"""Argument validation for every public constructor and function (one place decides what is valid).

Every check raises a ``ValueError`` (a value of the right kind out of range: ``lr=-1``,
``shape=(2, -3)``) or a ``TypeError`` (a value of the wrong kind: ``shape='34'``,
``gain='2'``, an int64 input to a layer). The message reads
``"{owner}: {argument} must be {what was expected}, got {the value}"``, and the exception
carries two attributes:

* ``exc.argument``: the argument's name as the caller spells it (``"betas"`` for a bad
  ``betas[1]``), so that the config layer can name the key (``optimizer.betas``);
* ``exc.owner``: the class or function that refused it (``"Adam"``).

:func:`argument_error` builds such an exception for checks that are not covered here.

The rules:

* **Numbers**: a real hyperparameter is a ``numbers.Real`` that is not a bool (Python and
  NumPy scalars alike), never NaN, and finite unless the check says otherwise; an integer
  argument is a ``numbers.Integral`` that is not a bool.
* **Shapes** are an int or a sequence of ints ``>= 0`` (not a string, not floats, not bools).
* **dtypes** are real floating types: float32 or float64 for layers (what they compute in),
  any of float16/32/64 for initializers.
* **Layer inputs** (:func:`layer_input`): float32 and float64 arrays are used as they are
  (any strides, read-only included: layers never write into their input); float16 and
  non-native byte orders are promoted to float32/float64 by NumPy's rule
  (``np.result_type(dtype, np.float32)``); integer, bool, complex and every other kind is
  refused with a ``TypeError`` that names the layer and says how to convert. This check is
  two attribute tests on the hot path.
"""

from __future__ import annotations

import difflib
import math
import numbers
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = ["argument_error", "real", "integer", "flag", "choice", "shape", "float_dtype", "generator",
           "count", "real_tuple", "layer_input", "upstream", "LAYER_DTYPES", "INIT_DTYPES"]

LAYER_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
INIT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
_F32, _F64 = LAYER_DTYPES
#: the most values any one array may hold (NumPy's limit is sys.maxsize bytes)
MAX_VALUES = sys.maxsize // 16


def argument_error(kind: type[Exception], owner: str, argument: str, message: str) -> Exception:
    """``kind(f"{owner}: {message}")`` with ``.argument`` and ``.owner`` attached (raise it).

    Args:
        kind: ``ValueError`` or ``TypeError``.
        owner: the class or function that refuses the value (``"SGD"``, ``"init.he"``).
        argument: the argument's name as the caller passes it (``"betas"``).
        message: what was expected and what was given.
    """
    exc = kind(f"{owner}: {message}")
    exc.argument = argument
    exc.owner = owner
    return exc


def _expected(kind: type[Exception], owner: str, name: str, what: str, value: Any,
              argument: str | None) -> Exception:
    shown = f"{value!r}" if kind is ValueError else f"{value!r} ({type(value).__name__})"
    return argument_error(kind, owner, argument or name, f"{name} must be {what}, got {shown}")


def _bounds(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high:g}"
    return ""


def real(owner: str, name: str, value: Any, *, low: float | None = None, high: float | None = None,
         low_open: bool = False, high_open: bool = False, finite: bool = True, allow_nan: bool = False,
         argument: str | None = None) -> float:
    """``float(value)`` if it is a real number (not a bool) in the stated interval, else raise.

    Args:
        owner, name: who checks, and the argument's name as shown in the message (``"betas[0]"``).
        low, high: bounds; ``low_open``/``high_open`` exclude them.
        finite: refuse ``±inf``.
        allow_nan: accept NaN (refused by default).
        argument: the name put on ``exc.argument`` when it differs from ``name`` (``"betas"``).

    Raises:
        TypeError: not a real number. ValueError: NaN, infinite (with ``finite``) or out of range.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise _expected(TypeError, owner, name, "a real number", value, argument)
    number = float(value)
    bounds = _bounds(low, high, low_open, high_open)
    if math.isnan(number) and allow_nan:
        return number
    if math.isnan(number) or (finite and math.isinf(number)):
        what = " ".join(w for w in ("a finite number" if finite else "a number", bounds) if w)
        raise _expected(ValueError, owner, name, what, value, argument)
    ok = True
    if low is not None:
        ok = number > low if low_open else number >= low
    if ok and high is not None:
        ok = number < high if high_open else number <= high
    if not ok:
        raise _expected(ValueError, owner, name, bounds, value, argument)
    return number


def integer(owner: str, name: str, value: Any, *, low: int | None = None, high: int | None = None,
            argument: str | None = None) -> int:
    """``int(value)`` if it is an integer (not a bool) in ``[low, high]``, else raise.

    Raises:
        TypeError: not an integer (``3.0``, ``'3'``, ``True``). ValueError: out of range.
    """
    kind = {0: "a non-negative int", 1: "a positive int"}.get(low, "an int") if high is None \
        else f"an int in [{low}, {high}]"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise _expected(TypeError, owner, name, kind, value, argument)
    number = int(value)
    if (low is not None and number < low) or (high is not None and number > high):
        raise _expected(ValueError, owner, name, kind, value, argument)
    return number


def count(owner: str, name: str, value: Any) -> int:
    """A positive size of a layer (``in_features``, ``num_features``, ...), small enough to allocate."""
    number = integer(owner, name, value, low=1)
    if number > MAX_VALUES:
        raise argument_error(ValueError, owner, name, f"{name} must be a positive int that an array can "
                                                      f"hold (at most {MAX_VALUES}), got {value!r}")
    return number


def flag(owner: str, name: str, value: Any) -> bool:
    """``bool(value)`` if it is ``True``/``False`` (or a NumPy bool), else ``TypeError``."""
    if not isinstance(value, (bool, np.bool_)):
        raise _expected(TypeError, owner, name, "True or False", value, None)
    return bool(value)


def choice(owner: str, name: str, value: Any, valid: Iterable[str]) -> str:
    """``value`` if it is one of the strings ``valid``; the error lists them and suggests the nearest."""
    valid = tuple(valid)
    if not isinstance(value, str) or value not in valid:
        near = difflib.get_close_matches(str(value), valid, n=1) if isinstance(value, str) else []
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        kind = ValueError if isinstance(value, str) else TypeError
        raise argument_error(kind, owner, name, f"unknown {name} {value!r}{hint}; valid: {', '.join(valid)}")
    return value


def shape(owner: str, name: str, value: Any) -> tuple[int, ...]:
    """A shape: an int ``n`` (meaning ``(n,)``) or a sequence of ints ``>= 0``, as a tuple.

    Raises:
        TypeError: a string, a non-sequence, or an entry that is not an int (``2.7``, ``True``).
        ValueError: a negative entry, or more values than an array can hold.
    """
    what = "a tuple of non-negative ints"
    if isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, (bool, np.bool_)):
        value = (value,)
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise _expected(TypeError, owner, name, what, value, None)
    entries = list(value)
    for entry in entries:
        if isinstance(entry, (bool, np.bool_)) or not isinstance(entry, numbers.Integral):
            raise _expected(TypeError, owner, name, what, value if isinstance(value, tuple) else tuple(entries),
                            None)
    dims = tuple(int(e) for e in entries)
    if any(d < 0 for d in dims):
        raise _expected(ValueError, owner, name, what, dims, None)
    if math.prod(dims) > MAX_VALUES:
        raise argument_error(ValueError, owner, name, f"{name} {dims} has more values than an array can hold")
    return dims


def float_dtype(owner: str, name: str, value: Any, *,
                allowed: tuple[np.dtype, ...] = LAYER_DTYPES) -> np.dtype:
    """``np.dtype(value)`` if it is one of ``allowed`` (real floating types), else ``TypeError``."""
    names = " or ".join(str(d) for d in allowed)
    try:
        dt = np.dtype(value)
    except (TypeError, ValueError):
        raise _expected(TypeError, owner, name, names, value, None) from None
    if dt not in allowed:
        raise argument_error(TypeError, owner, name, f"{name} must be {names}, got {dt}")
    return dt


def generator(owner: str, name: str, value: Any, *, purpose: str = "") -> np.random.Generator:
    """``value`` if it is a ``numpy.random.Generator``, else a ``TypeError`` saying how to make one."""
    if not isinstance(value, np.random.Generator):
        why = f" {purpose}" if purpose else ""
        raise argument_error(TypeError, owner, name, f"{name} must be a numpy.random.Generator "
                             f"(e.g. {name}=np.random.default_rng(0)){why}, got {type(value).__name__}")
    return value


def real_tuple(owner: str, name: str, value: Any, length: int) -> tuple:
    """``tuple(value)`` of exactly ``length`` entries (the entries are checked by the caller)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise _expected(TypeError, owner, name, f"a tuple of {length} numbers", value, None)
    items = tuple(value)
    if len(items) != length:
        raise _expected(ValueError, owner, name, f"a tuple of {length} numbers", value, None)
    return items


def layer_input(x: Any, owner: str, name: str = "input") -> np.ndarray:
    """``x`` as an array a layer computes with: the input-dtype rule (see the module docstring).

    float32/float64 arrays come back unchanged (two attribute tests); float16 and
    byte-swapped floats are promoted to float32/float64; everything else raises.

    Raises:
        TypeError: an integer, bool, complex, object or string array (or something that is
            no array at all), naming ``owner`` and how to convert.
    """
    if type(x) is not np.ndarray:
        try:
            x = np.asarray(x)
        except (TypeError, ValueError) as exc:
            raise argument_error(TypeError, owner, name, f"{name} must be a float32 or float64 array, "
                                 f"got {type(x).__name__} ({exc})") from None
    dt = x.dtype
    if dt is _F32 or dt is _F64:
        return x
    return _promote(x, owner, name)


def upstream(dout: Any, shape: tuple[int, ...], owner: str) -> np.ndarray:
    """``dout`` as an array of the forward output's ``shape`` (a backward's one check: a tuple compare).

    Raises:
        ValueError: another shape (NumPy would broadcast some of them silently).
    """
    if type(dout) is not np.ndarray:
        dout = np.asarray(dout)
    if dout.shape != shape:
        raise argument_error(ValueError, owner, "dout", f"dout must have the shape of the forward output "
                             f"{tuple(shape)}, got {dout.shape}")
    return dout


def _promote(x: np.ndarray, owner: str, name: str) -> np.ndarray:
    dt = x.dtype
    if dt == _F32 or dt == _F64:
        return x
    if dt.kind == "f" and dt.itemsize <= 8:          # float16, or a byte-swapped float32/float64
        return x.astype(np.result_type(dt.newbyteorder("="), np.float32))
    raise argument_error(TypeError, owner, name,
                         f"{name} must be a floating-point array (float32 or float64; float16 is promoted "
                         f"to float32), got {dt}; convert it first, e.g. x.astype(np.float32)")
