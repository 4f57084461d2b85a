"""The Optimizer base: parameter groups, per-parameter state, workspace and state dicts.

An optimizer holds two things apart (as Optax and PyTorch do):

* ``param_groups``: a list of dicts, each with ``"params"`` (a list of
  :class:`~trainlab.nn.module.Parameter`) and that group's hyperparameters
  (``lr``, ``momentum``, ...). Schedules change ``group["lr"]`` between steps.
* ``state``: per-parameter arrays (moments, velocities) and the step count,
  keyed by the Parameter object itself, never by a name, so two layers'
  ``"weight"`` can never share moments.

The update rules live in :mod:`trainlab.optim.functional`; a subclass only
validates its hyperparameters, creates its state and calls its kernel.

``state_dict()`` has PyTorch's structure and holds NumPy arrays and plain
JSON-able values only (no pickle needed)::

    {"state": {0: {"step": 3, "exp_avg": array, ...}, ...},
     "param_groups": [{"lr": 0.001, "betas": [0.9, 0.999], ..., "params": [0, 1, ...]}]}

Parameters are numbered in the order of the groups and of each group's list.
Tuples (``betas``) are stored as lists and turned back into tuples on load.
Besides its hyperparameters a group may hold ``"initial_lr"``, which the
learning-rate schedules record (as PyTorch's do).

Scratch memory: the kernels' temporaries go into a few flat buffers per dtype,
sized to the largest parameter and shared by all parameters (views cached per
parameter), each made only when a kernel first asks for it (the BLAS path needs
few or none); they are not state and are not saved.

Threads: when a group holds at least ``parallel_min_elements`` values, ``step``
splits its parameters into ``num_threads`` lanes of about equal size and runs
the kernels of each lane in its own thread (NumPy releases the GIL inside every
pass, so the lanes run on separate cores); each lane has its own scratch buffers.
Every parameter still gets exactly the same arithmetic, so results do not depend
on the thread count. SGD uses no lanes when its updates run through BLAS (see
:mod:`trainlab._blas`): those passes already run on the BLAS threads.
``num_threads`` defaults to the ``TRAINLAB_NUM_THREADS`` environment variable,
else the number of CPUs this process may run on.
"""

from __future__ import annotations

import inspect
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import numpy as np

from trainlab import _blas, _validate
from trainlab.nn.module import Parameter

__all__ = ["Optimizer", "check_hyperparameter"]


def check_hyperparameter(where: str, name: str, value: Any, *, low: float | None = None,
                         high: float | None = None, low_open: bool = False,
                         high_open: bool = False, argument: str | None = None) -> None:
    """Raise unless ``value`` is a finite real number in the stated interval (see :func:`trainlab._validate.real`).

    ``low_open``/``high_open`` exclude the bound. NaN and infinities always fail. The
    message names ``where``, the argument ``name`` and the value given; the exception's
    ``argument`` attribute is ``argument`` (default ``name``).

    Raises:
        TypeError: not a real number (a string, a bool, None, ...).
        ValueError: NaN, infinite or out of range.
    """
    _validate.real(where, name, value, low=low, high=high, low_open=low_open, high_open=high_open,
                   argument=argument)


def check_flag(where: str, name: str, value: Any) -> None:
    """Raise ``TypeError`` unless ``value`` is a bool."""
    _validate.flag(where, name, value)


def _as_tuple(where: str, name: str, value: Any) -> tuple:
    """``tuple(value)``, or ``TypeError`` naming the argument when it is not a sequence."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise _validate.argument_error(TypeError, where, name, f"{name} must be a tuple, got {value!r}")
    return tuple(value)


def default_num_threads() -> int:
    """``TRAINLAB_NUM_THREADS`` if set (an int >= 1), else the CPUs this process may run on."""
    env = os.environ.get("TRAINLAB_NUM_THREADS", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ValueError(f"TRAINLAB_NUM_THREADS must be an int >= 1, got {env!r}") from None
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:      # not on Linux
        return os.cpu_count() or 1


_LANE = threading.local()                       # .index: the lane this thread is updating
_POOL: tuple[int, int, ThreadPoolExecutor] | None = None   # (pid, workers, pool)
_POOL_LOCK = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    """A process-wide pool of ``workers`` threads (recreated after a fork or a size change)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL[0] != os.getpid() or _POOL[1] != workers:
            if _POOL is not None and _POOL[0] == os.getpid():
                _POOL[2].shutdown(wait=False)
            _POOL = (os.getpid(), workers,
                     ThreadPoolExecutor(max_workers=workers, thread_name_prefix="trainlab-optim"))
        return _POOL[2]


def _plain(value: Any) -> Any:
    """A JSON-able copy of a hyperparameter value (tuples become lists, NumPy scalars Python)."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


class _Workspace:
    """The scratch arrays of one parameter's update, made on first use (a sequence of ``work_slots``).

    A kernel asks for a slot only when its path needs it (the BLAS path needs few
    or none), so a workspace nobody reads costs no memory.
    """

    __slots__ = ("_optimizer", "_param")

    def __init__(self, optimizer: Optimizer, param: Parameter) -> None:
        self._optimizer, self._param = optimizer, param

    def __len__(self) -> int:
        return self._optimizer.work_slots

    def __getitem__(self, slot: int) -> np.ndarray:
        if not 0 <= slot < self._optimizer.work_slots:
            raise IndexError(f"workspace slot {slot} out of range(0, {self._optimizer.work_slots})")
        return self._optimizer._work_view(self._param, slot)


class Optimizer:
    """Base class of every optimizer.

    Args:
        params: an iterable of Parameters, or of dicts each with ``"params"``
            (an iterable of Parameters) and hyperparameters overriding the defaults.
        defaults: the constructor's hyperparameters.

    Raises:
        ValueError: an empty parameter list, a parameter listed twice, an
            unknown hyperparameter key, or a hyperparameter out of range.
        TypeError: an element that is not a Parameter (or a set of them: the
            order must be fixed for ``state_dict`` to be meaningful).
    """

    #: name in the ``trainlab.optim.create`` registry
    name: ClassVar[str] = ""
    #: hyperparameters that are tuples (stored as lists in a state dict)
    tuple_hyperparameters: ClassVar[tuple[str, ...]] = ()
    #: per-parameter state entries that are Python ints (the rest are arrays)
    int_state: ClassVar[tuple[str, ...]] = ("step",)
    #: how many scratch arrays shaped like a parameter the kernel may use
    work_slots: ClassVar[int] = 2
    #: threads for large updates (None: :func:`default_num_threads`); see the module docstring
    num_threads: ClassVar[int | None] = None
    #: a group with fewer values than this is updated in the calling thread only
    parallel_min_elements: ClassVar[int] = 1 << 21

    def __init__(self, params: Iterable[Parameter] | Iterable[dict[str, Any]],
                 defaults: dict[str, Any]) -> None:
        where = type(self).__name__
        self.defaults = {k: (_as_tuple(where, k, v) if k in self.tuple_hyperparameters else v)
                         for k, v in defaults.items()}
        self.check_hyperparameters(self.defaults)
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[Parameter, dict[str, Any]] = {}
        self._work: dict[tuple[np.dtype, int, int], np.ndarray] = {}                # (dtype, lane, slot)
        self._work_views: dict[tuple[Parameter, int, int], np.ndarray] = {}        # (param, lane, slot)
        self._lanes: dict[int, tuple[tuple[int, ...], list[list[Parameter]]]] = {}
        if isinstance(params, (Parameter, np.ndarray, dict, str, bytes)) or not isinstance(params, Iterable):
            raise _validate.argument_error(TypeError, where, "params", f"params must be an iterable of "
                                           f"Parameters or of dicts, got a single {type(params).__name__}")
        if isinstance(params, (set, frozenset)):
            raise _validate.argument_error(TypeError, where, "params",
                                           "params must be an ordered iterable (list), not a set")
        items = list(params)
        if not items:
            raise _validate.argument_error(ValueError, where, "params",
                                           "params is empty; expected at least one Parameter")
        if all(isinstance(item, dict) for item in items):
            groups = items
        elif any(isinstance(item, dict) for item in items):
            raise _validate.argument_error(TypeError, where, "params",
                                           "params mixes Parameters and dicts; give one kind")
        else:
            groups = [{"params": items}]
        for group in groups:
            self.add_param_group(group)

    # ----------------------------------------------------------------- groups
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group: ``{"params": [...], **hyperparameters}``; missing ones take the defaults."""
        where = type(self).__name__
        if not isinstance(param_group, dict) or "params" not in param_group:
            raise _validate.argument_error(TypeError, where, "params", f"a param group must be a dict with a "
                                           f"'params' key, got {param_group!r}")
        params = param_group["params"]
        if isinstance(params, Parameter):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise _validate.argument_error(TypeError, where, "params",
                                           "a group's params must be an ordered iterable, not a set")
        elif isinstance(params, (str, bytes, np.ndarray)) or not isinstance(params, Iterable):
            raise _validate.argument_error(TypeError, where, "params", f"a group's params must be an iterable "
                                           f"of Parameters, got {type(params).__name__}")
        params = list(params)
        if not params:
            raise _validate.argument_error(ValueError, where, "params",
                                           "params is empty; expected at least one Parameter")
        for i, p in enumerate(params):
            if not isinstance(p, Parameter):
                raise _validate.argument_error(TypeError, where, "params", f"params[{i}] must be a Parameter, "
                                               f"got {type(p).__name__}")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for i, p in enumerate(params):
            if id(p) in seen:
                raise _validate.argument_error(ValueError, where, "params",
                                               f"params[{i}] ({p!r}) appears more than once")
            seen.add(id(p))
        group = self._complete_group(param_group)
        group["params"] = params
        self.param_groups.append(group)

    def _complete_group(self, given: dict[str, Any]) -> dict[str, Any]:
        """The defaults overridden by ``given`` (without ``params``), validated."""
        unknown = sorted(set(given) - set(self.defaults) - {"params", "initial_lr"})
        if unknown:
            raise _validate.argument_error(ValueError, type(self).__name__, unknown[0], f"unknown hyperparameter(s) "
                                           f"{unknown} in a param group; valid: {sorted(self.defaults)}")
        group = dict(self.defaults)
        for key, value in given.items():
            if key != "params":
                group[key] = (_as_tuple(type(self).__name__, key, value)
                              if key in self.tuple_hyperparameters else value)
        self.check_hyperparameters(group)
        if "initial_lr" in group:
            check_hyperparameter(type(self).__name__, "initial_lr", group["initial_lr"], low=0)
        return group

    def check_hyperparameters(self, hp: dict[str, Any]) -> None:
        """Raise ``ValueError`` naming the argument and value if any hyperparameter is invalid."""

    # ----------------------------------------------------------------- stepping
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter in place from its ``.grad``; returns ``closure()`` if given."""
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            lanes = self._split(group)
            if lanes is None:
                self._step_group(group)
            else:
                pool = _pool(len(lanes) - 1)
                futures = [pool.submit(self._step_lane, i, group, lane)
                           for i, lane in enumerate(lanes[1:], 1)]
                try:
                    self._step_lane(0, group, lanes[0])
                finally:
                    for future in futures:
                        future.result()
        return loss

    def _split(self, group: dict[str, Any]) -> list[list[Parameter]] | None:
        """The group's parameters in lanes of about equal size, or None to run in this thread."""
        threads = self.num_threads if self.num_threads is not None else default_num_threads()
        params = group["params"]
        if threads < 2 or len(params) < 2:
            return None
        key = tuple(id(p) for p in params) + (threads,)
        cached = self._lanes.get(id(group))
        if cached is not None and cached[0] == key:
            return cached[1]
        lanes: list[list[Parameter]] | None = None
        if sum(p.data.size for p in params) >= self.parallel_min_elements:
            lanes = [[] for _ in range(min(threads, len(params)))]
            sizes = [0] * len(lanes)
            for p in sorted(params, key=lambda q: -q.data.size):     # largest first, to the lightest lane
                i = sizes.index(min(sizes))
                lanes[i].append(p)
                sizes[i] += p.data.size
        self._lanes[id(group)] = (key, lanes)
        return lanes

    def _step_lane(self, lane: int, group: dict[str, Any], params: list[Parameter]) -> None:
        _LANE.index = lane
        try:
            with _blas.off():          # lanes run NumPy's kernels; BLAS's pool is not shared between them
                self._step_group({**group, "params": params})
        finally:
            _LANE.index = 0

    def _step_group(self, group: dict[str, Any]) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not implement _step_group")

    def zero_grad(self) -> None:
        """Set every parameter's gradient to zero (``Parameter.zero_grad``)."""
        for group in self.param_groups:
            for p in group["params"]:
                p.zero_grad()

    def _workspace(self, p: Parameter) -> _Workspace:
        """``work_slots`` scratch arrays shaped like ``p``, each made on its first use (see :class:`_Workspace`)."""
        return _Workspace(self, p)

    def _work_view(self, p: Parameter, slot: int) -> np.ndarray:
        """Scratch slot ``slot`` shaped like ``p``: a view of a flat per-dtype (per-lane) buffer."""
        lane = getattr(_LANE, "index", 0)
        data = p.data
        view = self._work_views.get((p, lane, slot))
        if view is not None and view.dtype == data.dtype and view.shape == data.shape:
            return view
        dtype = data.dtype
        buffer = self._work.get((dtype, lane, slot))
        if buffer is None or buffer.size < data.size:
            # as large as the largest parameter that asked for this slot so far (a slot only small
            # parameters use stays small; it grows at most a few times, in the first step)
            buffer = self._work[(dtype, lane, slot)] = np.empty(data.size, dtype=dtype)
            for key in [k for k, v in self._work_views.items() if k[1:] == (lane, slot) and v.dtype == dtype]:
                self._work_views.pop(key, None)
        view = self._work_views[(p, lane, slot)] = buffer[:data.size].reshape(data.shape)
        return view

    def _zeros(self, p: Parameter, fill: float = 0.0) -> np.ndarray:
        """A new state array shaped and typed like ``p.data``."""
        return np.full_like(p.data, fill) if fill else np.zeros_like(p.data)

    # ----------------------------------------------------------------- learning rate
    @property
    def lr(self) -> float:
        """The first group's learning rate; setting it sets every group's."""
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        check_hyperparameter(type(self).__name__, "lr", value, low=0)
        for group in self.param_groups:
            group["lr"] = value

    # ----------------------------------------------------------------- config
    def get_config(self) -> dict[str, Any]:
        """The registry name and constructor hyperparameters (JSON-able), for logging and rebuilding.

        ``trainlab.optim.create(cfg.pop("name"), params, **cfg)`` builds an equal optimizer.
        """
        accepted = inspect.signature(type(self).__init__).parameters
        config: dict[str, Any] = {"name": self.name}
        config.update({k: _plain(v) for k, v in self.defaults.items() if k in accepted})
        return config

    # ----------------------------------------------------------------- state dict
    def state_dict(self) -> dict[str, Any]:
        """A copy of the hyperparameters and state: NumPy arrays and JSON-able values only."""
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {k: _plain(v) for k, v in group.items() if k != "params"}
            ids = []
            for p in group["params"]:
                index[id(p)] = len(index)
                ids.append(index[id(p)])
            packed["params"] = ids
            groups.append(packed)
        state: dict[int, dict[str, Any]] = {}
        for p, entries in self.state.items():
            if id(p) not in index or not entries:
                continue
            state[index[id(p)]] = {k: (v.copy() if isinstance(v, np.ndarray) else _plain(v))
                                   for k, v in entries.items()}
        return {"state": dict(sorted(state.items())), "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load hyperparameters and state saved by :meth:`state_dict`.

        The saved groups must have as many parameters as this optimizer's, in
        the same order; arrays are copied and cast to each parameter's dtype.
        Keys of ``"state"`` may be ints or their strings (as JSON writes them).
        Nothing changes unless every check passes.

        Raises:
            ValueError: a structure, group-size, shape or hyperparameter mismatch.
        """
        where = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, dict) or "state" not in state_dict \
                or "param_groups" not in state_dict:
            raise ValueError(f"{where}: expected a dict with 'state' and 'param_groups'")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{where}: the state dict has {len(saved_groups)} param groups, "
                             f"this optimizer has {len(self.param_groups)}")
        by_index: dict[int, Parameter] = {}
        new_groups = []
        for gi, (saved, group) in enumerate(zip(saved_groups, self.param_groups, strict=True)):
            ids = list(saved["params"])
            if len(ids) != len(group["params"]):
                raise ValueError(f"{where}: param group {gi} has {len(ids)} parameters in the state "
                                 f"dict and {len(group['params'])} here")
            for i, p in zip(ids, group["params"], strict=True):
                by_index[int(i)] = p
            completed = self._complete_group({k: v for k, v in saved.items() if k != "params"})
            completed["params"] = group["params"]
            new_groups.append(completed)
        new_state: dict[Parameter, dict[str, Any]] = {}
        for key, entries in state_dict["state"].items():
            idx = int(key)
            if idx not in by_index:
                raise ValueError(f"{where}: state for parameter {idx}, which no group lists")
            p = by_index[idx]
            loaded: dict[str, Any] = {}
            for name, value in entries.items():
                if name in self.int_state:
                    loaded[name] = int(np.asarray(value).item())
                elif isinstance(value, (bool, str)) or value is None:
                    loaded[name] = value
                else:
                    arr = np.array(value, dtype=p.data.dtype, copy=True)
                    if arr.shape != p.data.shape:
                        raise ValueError(f"{where}: state[{idx}][{name!r}] has shape {arr.shape}, "
                                         f"the parameter has {p.data.shape}")
                    loaded[name] = np.asarray(arr, order="C")
            new_state[p] = loaded
        self.param_groups = new_groups
        self.state = new_state

    # ----------------------------------------------------------------- description
    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(k for k in group if k != "params"):
                lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)
