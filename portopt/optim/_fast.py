"""The fused fast path on NumPy: when a param group may take it, and the host scalars
its kernels need.

A group takes the fused kernel of its algorithm (``portopt/backends/_numba/``) when
numba is installed and nothing in the group needs the generic kernel: ``foreach`` is not
``False`` (which asks for the reference path), neither ``differentiable`` nor
``capturable`` is set, the hyper-parameters are Python numbers, and every parameter is a
writable, C-contiguous, real float32/float64 NumPy array, listed once, with a dense
gradient of its shape and dtype and a state the generic kernel has already created (the
first step, which creates the state, runs the generic kernel), every parameter of the
group having a gradient. Otherwise the group runs the generic kernel, whose numbers the
fused one reproduces bit for bit.
"""

from __future__ import annotations

import collections
import functools
import itertools
import operator
from typing import Any

import numpy as np

from ._checks import is_array
from ._math import round_to_float32
from ._params import is_sparse


@functools.cache
def kernels() -> Any:
    """The compiled kernels' module, or ``None`` without numba."""
    try:
        from ..backends import _numba
    except ImportError:
        return None
    return _numba


def _plain_array(x: Any, dtype: Any) -> bool:
    return (type(x) is np.ndarray and x.dtype == dtype and x.flags.c_contiguous
            and x.flags.writeable)


Keys = tuple[str, ...]


def eligible(group: dict[str, Any], work: list[Any], state: Any, numbers: Keys,
             scalars: Keys) -> tuple[Keys, Keys] | None:
    """The group's flat state keys (arrays of each parameter's shape) and its scalar
    state keys when ``group`` can take a fast path (see the module docstring), else
    ``None``. ``numbers`` are the group entries the kernels read as plain numbers;
    ``scalars`` the state entries that are numbers, not arrays (``step`` apart), which
    must hold the same value for every parameter of the group."""
    if not work or type(work[0].data) is not np.ndarray:
        return None
    if len(work) != len(group["params"]):  # a parameter without a gradient this step
        return None
    if not _group_allows(group, numbers):
        return None
    dtype = work[0].data.dtype
    if dtype not in (np.float32, np.float64):
        return None
    first = state.get(work[0].param)
    if not first:
        return None
    keys = tuple(k for k in first if k != "step" and k not in scalars)
    scalars = tuple(k for k in first if k in scalars)
    seen = set()
    for item in work:
        if id(item.param) in seen or is_sparse(item.grad):
            return None
        seen.add(id(item.param))
        if not (_plain_array(item.data, dtype) and _plain_array(item.grad, dtype)
                and item.grad.shape == item.data.shape):
            return None
        saved = state.get(item.param)
        if not saved or saved.keys() != first.keys() or any(
                not _plain_array(saved[k], dtype) or saved[k].shape != item.data.shape
                for k in keys):
            return None
        if any(not _same_value(saved[k], first[k]) for k in scalars + ("step",) if k in first):
            return None
    return keys, scalars


def _same_value(a: Any, b: Any) -> bool:
    """Whether two scalar state entries hold the same number, in the same type."""
    if a is b:
        return True
    if type(a) is not type(b) or getattr(a, "shape", ()) != () or (
            getattr(a, "dtype", None) != getattr(b, "dtype", None)):
        return False
    return bool(a == b)


def cast(value: float, dtype: Any) -> Any:
    """A host scalar as the generic kernel meets it: rounded to the array's dtype."""
    return np.float32(round_to_float32(value)) if dtype == np.float32 else np.float64(value)


#: elements per chunk of the generic kernel on flat arrays: its temporaries (float64
#: ones included) stay in the cache
CHUNK = 1 << 16

_data = operator.attrgetter("data")
_grad = operator.attrgetter("grad")


class Plan:
    """The fast step of one param group, built once and reused while the group holds
    the very same arrays.

    The group's state moves into flat buffers (one per state key) whose views become the
    per-parameter state arrays, so ``opt.state[p]`` keeps torch's layout; ``step`` and
    the scalar entries are shared by the group. Gradients are gathered into one flat
    array each step. Parameters stay the user's arrays: when they are already
    consecutive views of one buffer (``portopt.flat_parameters``) the step works on that
    buffer directly; otherwise they are gathered into a flat copy and written back after
    the step. :meth:`gather` checks by identity, in C loops, that nothing was swapped
    since.

    ``compiled`` picks the optimizer's numba kernel (``Optimizer._launch``); otherwise
    the step runs the generic kernel over cache-sized chunks of the flat arrays
    (``Optimizer._chunked_step``), which lands on the generic kernel's bits because
    every operation of an elementwise optimizer treats each element alike.
    """

    def __init__(self, group: dict[str, Any], state: Any, keys: tuple[str, ...],
                 scalars: tuple[str, ...], *, compiled: bool) -> None:
        self.group = group
        self.compiled = compiled
        self.params = list(group["params"])
        self.datas = [p.data for p in self.params]
        self.states = [state[p] for p in self.params]
        dtype = self.datas[0].dtype
        sizes = np.array([d.size for d in self.datas], np.int64)
        self.sizes = sizes
        self.offsets = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
        self.total = total = int(sizes.sum())
        self.state_buffers = {}
        for key in keys:
            flat = np.concatenate([st[key] for st in self.states], axis=None).astype(dtype)
            for st, d, start, n in zip(self.states, self.datas, self.offsets, sizes):
                st[key] = flat[start:start + n].reshape(d.shape)
            self.state_buffers[key] = flat
        self.arrays = {k: [st[k] for st in self.states] for k in keys}
        self.scalar_keys = scalars
        self.scalars = {k: self.states[0][k] for k in scalars}
        self.counts_steps = "step" in self.states[0]
        self.step: Any = None
        self.grads = np.empty(total, dtype)
        self.grad_view = self.grads  # the gradients the kernel reads, flat
        # gradients that are consecutive views of one buffer (flat_parameters(grads=True)),
        # read where they are while the group holds them; looked for a few times only
        self.grad_list: list[Any] = []
        self.flat_grads: np.ndarray | None = None
        self.grad_looks = 2
        self.flat_params = _consecutive(self.datas, total)
        if self.flat_params is None:
            self.param_buffer = np.empty(total, dtype)
            if compiled:
                self.addresses = np.array([d.ctypes.data for d in self.datas], np.int64)
            else:  # written back by one copy per parameter, through views made once
                self.param_targets = [d.reshape(-1) for d in self.datas]
                self.param_sources = [self.param_buffer[start:start + n]
                                      for start, n in zip(self.offsets, sizes)]

    def gather(self, group: dict[str, Any], state: Any, numbers: tuple[str, ...]) -> bool:
        """Whether the group still holds the planned arrays (and may still take the fast
        path, with one ``step`` and one value of each scalar shared by its parameters);
        if so, its gradients are now in one flat array."""
        params = group["params"]
        if (group is not self.group or len(params) != len(self.params)
                or not _group_allows(group, numbers)
                or not all(map(operator.is_, params, self.params))
                or not all(map(operator.is_, map(_data, params), self.datas))
                or not all(map(operator.is_, map(state.get, params), self.states))):
            return False
        for key, arrays in self.arrays.items():
            if not all(map(operator.is_, map(operator.itemgetter(key), self.states), arrays)):
                return False
        for key in self.scalar_keys:
            values = list(map(operator.itemgetter(key), self.states))
            if not all(map(_same_value, values, itertools.repeat(values[0]))):
                return False
            self.scalars[key] = values[0]
        if self.counts_steps:
            steps = list(map(operator.itemgetter("step"), self.states))
            if not all(map(_same_value, steps, itertools.repeat(steps[0]))):
                return False
            self.step = steps[0]
        if len(params) == 1:  # one gradient: used as it is when it is a plain array
            grad = params[0].grad
            if _plain_array(grad, self.grads.dtype) and grad.shape == self.datas[0].shape:
                self.grad_view = grad.reshape(-1)
                return True
        grads = list(map(_grad, params))
        if self.flat_grads is not None and all(map(operator.is_, grads, self.grad_list)):
            self.grad_view = self.flat_grads
            return True
        if (self.grad_looks and self.flat_params is not None
                and isinstance(getattr(grads[0], "base", None), np.ndarray)):
            self.grad_looks -= 1
            flat = _consecutive_grads(grads, self.datas, self.flat_params)
            if flat is not None:
                self.grad_list, self.flat_grads, self.grad_view = grads, flat, flat
                return True
        try:  # rejects a missing (None) or sparse gradient, or one of another dtype
            np.concatenate(grads, axis=None, out=self.grads, casting="no")
        except (TypeError, ValueError):
            return False
        self.grad_view = self.grads
        return True

    def param_view(self) -> np.ndarray:
        """The parameters as one flat array for the kernel."""
        if self.flat_params is not None:
            return self.flat_params
        np.concatenate(self.datas, axis=None, out=self.param_buffer)
        return self.param_buffer

    def finish(self, step: Any = None, **scalars: Any) -> None:
        """Write gathered parameters back, and give every state the new ``step``
        (``step + 1`` unless given) and the new values of the scalar entries."""
        if self.flat_params is None:
            if self.compiled:
                kernels().scatter(self.param_buffer, self.addresses, self.sizes, self.offsets)
            else:
                collections.deque(map(np.copyto, self.param_targets, self.param_sources), 0)
        updates = dict(scalars)
        if self.counts_steps:
            updates["step"] = self.step + 1 if step is None else step
        for key, value in updates.items():
            collections.deque(map(operator.setitem, self.states, itertools.repeat(key),
                                  itertools.repeat(value)), 0)


def _consecutive(datas: list[np.ndarray], total: int) -> np.ndarray | None:
    """One flat view over the arrays when they lie back to back, in order, in one
    C-contiguous buffer (as ``portopt.flat_parameters`` makes them), else ``None``."""
    root = datas[0]
    while isinstance(root.base, np.ndarray):
        root = root.base
    if not (root.flags.c_contiguous and root.flags.writeable and root.dtype == datas[0].dtype):
        return None
    start = datas[0].ctypes.data
    offset, rem = divmod(start - root.ctypes.data, root.itemsize)
    if rem or offset < 0 or offset + total > root.size:
        return None
    position = start
    for d in datas:
        if d.ctypes.data != position:
            return None
        position += d.nbytes
    return root.reshape(-1)[offset:offset + total]


def _consecutive_grads(grads: list[Any], datas: list[np.ndarray],
                       flat_params: np.ndarray) -> np.ndarray | None:
    """One flat view over the gradients when they are plain arrays of their parameters'
    shapes and dtype lying back to back in one buffer apart from the parameters' own
    (``flat_params``), else ``None``."""
    dtype = flat_params.dtype
    if not all(_plain_array(g, dtype) and g.shape == d.shape for g, d in zip(grads, datas)):
        return None
    flat = _consecutive(grads, flat_params.size)
    if flat is None or np.may_share_memory(flat, flat_params):
        return None
    return flat


def _group_allows(group: dict[str, Any], numbers: tuple[str, ...]) -> bool:
    """Whether the group's settings let it take the fused kernel: no flag that asks for
    another path, and the hyper-parameters in ``numbers`` are plain numbers."""
    if (group.get("foreach") is False or group.get("fused") or group.get("differentiable")
            or group.get("capturable")):
        return False
    for k in numbers:
        values = group[k] if isinstance(group[k], (tuple, list)) else (group[k],)
        if any(is_array(v) for v in values):
            return False
    return True
