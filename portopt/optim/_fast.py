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
from collections.abc import Callable
from typing import Any

import numpy as np

from ..parameter import Parameter
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
#: below this many elements a compiled kernel runs on the calling thread: waking numba's
#: thread pool costs more than the work (measured: 4 scalars of RMSprop, 270 us a step
#: with 2 threads on a busy machine, 30 us with one)
SERIAL_BELOW = 1 << 15

_data = operator.attrgetter("data")
_writeable = operator.attrgetter("flags.writeable")
_grad = operator.attrgetter("grad")
_grad_slot = operator.attrgetter("_grad")
_shape = operator.attrgetter("shape")


class Plan:
    """The fast step of one param group, built once and reused while the group holds
    the very same arrays.

    The group's state moves into flat buffers (one per state key) whose views become the
    per-parameter state arrays, so ``opt.state[p]`` keeps torch's layout; ``step`` and
    the scalar entries are shared by the group. Parameters stay the user's arrays.
    :meth:`gather` checks by identity, in C loops, that nothing was swapped since.

    ``compiled`` picks the optimizer's numba kernel (``Optimizer._launch``), which
    reaches parameters and gradients where they are through a chunk table
    (``portopt/backends/_numba/_common.py``): the parameters' addresses are fixed here,
    the gradients' are read from the arrays each step (or, where that cannot be done,
    the gradients are gathered into one array first). Parameters and gradients that are
    consecutive views of one buffer each (``portopt.flat_parameters(grads=True)``) are
    stepped as two flat arrays.

    Otherwise the step runs the generic kernel over cache-sized chunks of flat arrays
    (:meth:`run_chunked`): gradients and parameters are gathered into one array
    each (unless they are one buffer already) and parameters are copied back after the
    step. That lands on the generic kernel's bits because every operation of an
    elementwise optimizer treats each element alike.
    """

    def __init__(self, group: dict[str, Any], state: Any, keys: tuple[str, ...],
                 scalars: tuple[str, ...], *, compiled: bool) -> None:
        self.group = group
        self.compiled = compiled
        self.params = list(group["params"])
        self.datas = [p.data for p in self.params]
        self.shapes = [d.shape for d in self.datas]
        # portopt.Parameter's gradient slot read directly (its property is a Python call)
        exact = all(type(p) is Parameter for p in self.params)
        self.grad_of = _grad_slot if exact else _grad
        self.states = [state[p] for p in self.params]
        dtype = self.datas[0].dtype
        sizes = np.array([d.size for d in self.datas], np.int64)
        self.offsets = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int64)
        self.total = total = int(sizes.sum())
        self.state_buffers = {}
        for key in keys:
            flat = np.concatenate([st[key] for st in self.states], axis=None).astype(dtype)
            for st, d, start, n in zip(self.states, self.datas, self.offsets, sizes):
                st[key] = flat[start:start + n].reshape(d.shape)
            self.state_buffers[key] = flat
        self.arrays = {k: [st[k] for st in self.states] for k in keys}
        self.settings: tuple[Any, ...] | None = None
        self.scalar_keys = scalars
        self.scalars = {k: self.states[0][k] for k in scalars}
        self.counts_steps = "step" in self.states[0]
        self.step: Any = None
        self.grads = np.empty(total, dtype)  # where gradients are gathered
        self.grad_view = self.grads  # the gradients as one flat array (chunked mode)
        self.held: list[Any] = []  # the gradients a compiled step reads, kept alive
        # (slots, arrays' addresses, ...) when the Parameters are read in compiled code
        self.rows: tuple[Any, ...] | None = None
        # gradients that are consecutive views of one buffer (flat_parameters(grads=True)),
        # read where they are while the group holds them; looked for a few times only
        self.grad_list: list[Any] = []
        self.flat_grads: np.ndarray | None = None
        self.grad_looks = 2
        self.flat_params = _consecutive(self.datas, total)
        if compiled:
            self._build_tables(sizes)
        elif self.flat_params is None:
            # gathered into param_buffer, written back by one copy per parameter
            self.param_buffer = np.empty(total, dtype)
            self.param_targets = [d.reshape(-1) for d in self.datas]
            self.param_sources = [self.param_buffer[start:start + n]
                                  for start, n in zip(self.offsets, sizes)]

    def _build_tables(self, sizes: np.ndarray) -> None:
        """The chunk tables of a compiled plan: one over the parameters, and one over
        the whole flat range for flat parameters with flat gradients."""
        numba_kernels = kernels()
        chunk, itemsize = numba_kernels.CHUNK, self.grads.itemsize
        counts = -(-sizes // chunk)  # chunks per parameter; none for an empty one
        tensor_of = np.repeat(np.arange(sizes.size, dtype=np.int64), counts)
        first = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
        start_of = (np.arange(tensor_of.size, dtype=np.int64) - first[tensor_of]) * chunk
        lengths = np.minimum(sizes[tensor_of] - start_of, chunk)
        bases = np.array([d.ctypes.data for d in self.datas], np.int64)
        offsets = self.offsets[tensor_of] + start_of
        self.table = np.stack([bases[tensor_of] + start_of * itemsize,
                               np.zeros_like(offsets), offsets, lengths], axis=1)
        self.gathered = self.grads.ctypes.data + offsets * itemsize  # grads in self.grads
        self.tensor_of, self.start_of = tensor_of, start_of
        self.flat_table = None
        layout = numba_kernels.array_layout()
        self.layout = layout
        if layout is not None:
            # valid while the plan holds the same arrays, which gather() checks first
            self.data_ids = np.fromiter(map(id, self.datas), np.int64, len(self.datas))
            self.check = (layout, id(np.ndarray), id(self.grads.dtype), itemsize,
                          np.array([d.ndim for d in self.datas], np.int64),
                          np.array([n for d in self.datas for n in d.shape], np.int64),
                          np.concatenate(([0], np.cumsum([d.ndim for d in self.datas])[:-1]))
                          .astype(np.int64))
        slots = numba_kernels.parameter_slots(Parameter) if layout is not None else None
        if slots is not None and self.grad_of is _grad_slot:
            # portopt Parameters: their arrays and gradients are read from their slots in
            # compiled code (the objects are held by the plan, so their addresses stay)
            self.param_ids = np.fromiter(map(id, self.params), np.int64, len(self.params))
            self.rows = (slots, self.data_ids, *self.check)
        if self.flat_params is not None:
            starts = np.arange(0, self.total, chunk, dtype=np.int64)
            self.flat_table = np.stack(
                [self.flat_params.ctypes.data + starts * itemsize, np.zeros_like(starts),
                 starts, np.minimum(self.total - starts, chunk)], axis=1)

    def gather(self, group: dict[str, Any], state: Any, numbers: tuple[str, ...]) -> bool:
        """Whether the group still holds the planned arrays (and may still take the fast
        path, with one ``step`` and one value of each scalar shared by its parameters);
        if so, the step's gradients are ready for the kernel: in the chunk table, or in
        one flat array."""
        params = group["params"]
        if (group is not self.group or len(params) != len(self.params)
                or not _group_allows(group, numbers)
                or not self._same_settings(group, numbers)
                or not self._same_params(params)
                or not all(map(operator.is_, map(state.get, params), self.states))):
            return False
        for key, arrays in self.arrays.items():
            if not all(map(operator.is_, map(operator.itemgetter(key), self.states), arrays)):
                return False
        for key in self.scalar_keys:
            values = list(map(operator.itemgetter(key), self.states))
            if values.count(values[0]) != len(values):
                return False
            self.scalars[key] = values[0]
        if self.counts_steps:
            steps = list(map(operator.itemgetter("step"), self.states))
            if steps.count(steps[0]) != len(steps):
                return False
            self.step = steps[0]
        if self.rows is not None:
            found = kernels().parameter_rows(self.param_ids, *self.rows, self.tensor_of,
                                             self.start_of, self.table)
            if found == 0:  # the gradients' addresses are in the table
                # (the Parameters hold the gradients until the step has run)
                self.run_table, self.held = self.table, []
                return True
            if found == 1:
                return False
        grads = list(map(self.grad_of, params))
        flat = self._flat_grads(grads)
        if self.compiled:
            return self._fill_table(grads, flat)
        if flat is not None:
            self.grad_view = flat
            return True
        if len(grads) == 1 and _plain_array(grads[0], self.grads.dtype) and (
                grads[0].shape == self.datas[0].shape):
            self.grad_view = grads[0].reshape(-1)
            return True
        if not self._concatenate(grads):
            return False
        self.grad_view = self.grads
        return True

    def _same_params(self, params: list[Any]) -> bool:
        """Whether the group holds the planned parameters, and they the planned arrays,
        still writeable (with slot-read Parameters, the arrays are checked in compiled
        code by ``gather``)."""
        if self.compiled and self.rows is not None:
            try:  # Parameters compare by identity: one C-level pass over the list
                return params == self.params
            except Exception:  # another object put in the list may refuse to compare
                return False
        return (all(map(operator.is_, params, self.params))
                and all(map(operator.is_, map(_data, params), self.datas))
                and self._writeable())

    def _writeable(self) -> bool:
        """Whether every parameter array may still be written (one made read-only after
        planning must take the checked step, which refuses it)."""
        if self.compiled and self.layout is not None:
            return kernels().all_writeable(self.data_ids, self.layout)
        return all(map(_writeable, self.datas))

    def _same_settings(self, group: dict[str, Any], numbers: tuple[str, ...]) -> bool:
        """Whether the group's settings are still those the plan was built with (the
        first call records them). The numbers the kernels read may change from step to
        step, as schedulers change them, but not between zero and nonzero: switching
        momentum, amsgrad or centered on asks for state the plan lacks, and the generic
        step checks that as torch does."""
        if self.settings is None:
            self.other_settings = operator.itemgetter(
                *[k for k in group if k != "params" and k not in numbers])
        try:
            settings = (len(group), self.other_settings(group),
                        [bool(x) for k in numbers for x in _as_tuple(group[k])])
        except KeyError:  # a setting was removed
            return False
        if self.settings is None:
            self.settings = settings
        try:
            return settings == self.settings
        except ValueError:  # an array among the values, replaced by another one
            return False

    def _flat_grads(self, grads: list[Any]) -> np.ndarray | None:
        """The gradients as one flat view when they are consecutive views of one buffer
        beside flat parameters, else ``None``."""
        if self.flat_params is None:
            return None
        if self.flat_grads is not None and all(map(operator.is_, grads, self.grad_list)):
            return self.flat_grads
        if self.grad_looks and isinstance(getattr(grads[0], "base", None), np.ndarray):
            self.grad_looks -= 1
            flat = _consecutive_grads(grads, self.datas, self.flat_params)
            if flat is not None:
                self.grad_list, self.flat_grads = grads, flat
                return flat
        return None

    def _concatenate(self, grads: list[Any]) -> bool:
        """Gather the gradients into one array, when each is an array of its parameter's
        shape and dtype."""
        try:  # rejects a missing (None) or sparse gradient, or one of another dtype
            if list(map(_shape, grads)) != self.shapes:
                return False
            np.concatenate(grads, axis=None, out=self.grads, casting="no")
        except (AttributeError, TypeError, ValueError):
            return False
        return True

    def _fill_table(self, grads: list[Any], flat: np.ndarray | None) -> bool:
        if flat is not None and self.flat_table is not None:
            self.flat_table[:, 1] = flat.ctypes.data + self.flat_table[:, 2] * flat.itemsize
            self.run_table = self.flat_table
            self.held = grads
            return True
        self.run_table = self.table
        if self.layout is not None and kernels().gradient_rows(
                np.fromiter(map(id, grads), np.int64, len(grads)), *self.check,
                self.tensor_of, self.start_of, self.table):
            self.held = grads  # the table holds their addresses: keep them alive
            return True
        if not self._concatenate(grads):
            return False
        self.table[:, 1] = self.gathered
        return True

    def launch(self, kernel: Any, *args: Any) -> None:
        """Run a compiled kernel over the chunk table (the caller then finishes the step);
        a small group runs on this thread alone (``SERIAL_BELOW``)."""
        if self.total >= SERIAL_BELOW:
            kernel(self.run_table, *args)
            return
        import numba  # loaded already: the kernel was compiled by it

        threads = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            kernel(self.run_table, *args)
        finally:
            numba.set_num_threads(threads)

    def run_chunked(self, state_type: Any, update: Callable[[Any, Any, Any], Any]) -> None:
        """Run the generic kernel ``update(param, grad, state)`` over cache-sized chunks of
        the flat arrays, writing each chunk's results back in place before the next one
        is computed, then finish the step."""
        params, grads, buffers = self.param_view(), self.grad_view, self.state_buffers
        fixed = {**self.scalars, "step": self.step}
        new_state = None
        for start in range(0, max(self.total, 1), CHUNK):
            part = slice(start, start + CHUNK)
            state = state_type._make(buffers[f][part] if f in buffers else fixed.get(f)
                                     for f in state_type._fields)
            new_data, new_state = update(params[part], grads[part], state)
            params[part] = new_data
            for key, buffer in buffers.items():
                buffer[part] = getattr(new_state, key)
        self.finish(getattr(new_state, "step", None),
                    **{k: getattr(new_state, k) for k in self.scalar_keys})

    def param_view(self) -> np.ndarray:
        """The parameters as one flat array (chunked mode)."""
        if self.flat_params is not None:
            return self.flat_params
        np.concatenate(self.datas, axis=None, out=self.param_buffer)
        return self.param_buffer

    def finish(self, step: Any = None, **scalars: Any) -> None:
        """Write gathered parameters back, and give every state the new ``step``
        (``step + 1`` unless given) and the new values of the scalar entries."""
        self.held = []
        if not self.compiled and self.flat_params is None:
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


def _as_tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


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
