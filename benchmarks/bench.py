#!/usr/bin/env python
"""Time one optimizer step of portopt against torch.optim, in one process.

Usage::

    python benchmarks/bench.py                      # the full run: a few minutes on 2 cores
    python benchmarks/bench.py --quick              # small sizes, few steps: a smoke run
    python benchmarks/bench.py -o Adam -w 1x16M --markdown adam.md
    python benchmarks/bench.py --device cuda        # portopt on CuPy vs torch on CUDA
    portopt bench ...                               # the same, through the portopt command

What is timed
-------------
Only ``opt.step()``: the wall-clock time (``time.perf_counter``) around one call, with a
device synchronization just before and just after it on CUDA. Before every timed step, and
outside the timing, the gradients are made ready in one of two ways (``--grads``):

``new``
    every parameter's ``.grad`` is assigned an array taken from a pool of three gradient
    sets made before the run, rotating, so each step sees gradient arrays other than the
    step before saw (different objects at different addresses, as when a training loop
    makes fresh gradients each step); nothing is copied.
``in-place``
    the next gradient set of the pool is copied into the arrays that already are the
    ``.grad`` of the parameters (as when backward accumulates into existing gradients);
    the copy is not timed.

Before every timed step an untimed pass over a buffer twice the size of the last-level
cache evicts the step's arrays (``--warm-cache`` turns this off): every step of every
contender starts cold, as after the forward and backward passes of training, whatever the
order of the interleaving left in the cache.

The contenders of one cell (an optimizer x a workload x a gradient mode) run interleaved:
after their warm-up steps (the first one allocates the optimizer state, a later one may
compile a kernel; none is timed), each round every contender takes a short burst of steps,
the order of the contenders rotated from round to round, so that drift of the machine
(clock, other load) hits all of them alike. The slowest contender takes one step a round,
the others as many as their share of the cell's time budget allows (counting the untimed
preparation of each step), up to ``--steps``. A row reports the median over its timed
steps and the interquartile range relative to the median. The share of the CPU time that
other processes took while a cell ran is reported with it; ``--wait-quiet`` waits for the
machine to be quiet before each cell and runs a cell again that was disturbed.

Contenders: torch.optim with ``foreach=False`` (the for-loop), ``foreach=True`` and
``fused=True`` (where torch has a fused kernel: not for RMSprop), on torch tensors; and
portopt on NumPy arrays wrapped in ``portopt.Parameter`` (CuPy arrays with ``--device cuda``),
once as it steps by default and once with ``foreach=False``, its generic per-tensor
reference path.

Ratios are to torch fused, or to torch foreach where torch has no fused kernel; the table
says which. The fraction of the memory roofline is the time the minimum memory traffic of
the step would take at the measured bandwidth, divided by the measured time (see
``BYTES_PER_ELEMENT`` and ``measure_bandwidth``). Extra memory is the peak of the bytes
allocated during one step beyond what was allocated before it, measured on one more step
after the timing (see ``_memory_probe``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import importlib.metadata
import importlib.util
import inspect
import math
import os
import platform
import re
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

# --------------------------------------------------------------------------------------
# What a step must move, at least
# --------------------------------------------------------------------------------------

# The arrays an optimizer step must read and write, one element of each per parameter
# element, with the hyper-parameters benchmarked here (torch's defaults; SGD with
# momentum=0.9): a single pass that reads every input once and writes every output once
# cannot move less. Every written array is one that was also read, so no write lands on a
# cache line that was not already loaded (no write-allocate traffic on top).
#   Adam:    p <- p - lr * m_hat / (sqrt(v_hat) + eps) with m, v updated from g.
#   AdamW:   the same, and p is decayed in the same pass (p is read anyway).
#   SGD:     buf <- momentum * buf + g; p <- p - lr * buf.
#   RMSprop: sq <- alpha * sq + (1 - alpha) * g^2; p <- p - lr * g / (sqrt(sq) + eps).
#   Adagrad: sum <- sum + g^2; p <- p - clr * g / (sqrt(sum) + eps).
# The step counter and the bias corrections are scalars: no traffic per element.
TRAFFIC: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "Adam": (("param", "grad", "exp_avg", "exp_avg_sq"), ("param", "exp_avg", "exp_avg_sq")),
    "AdamW": (("param", "grad", "exp_avg", "exp_avg_sq"), ("param", "exp_avg", "exp_avg_sq")),
    "SGD": (("param", "grad", "momentum_buffer"), ("param", "momentum_buffer")),
    "RMSprop": (("param", "grad", "square_avg"), ("param", "square_avg")),
    "Adagrad": (("param", "grad", "sum"), ("param", "sum")),
}

FLOAT32_BYTES = 4

# Bytes per float32 element: (reads + writes) x 4. Adam/AdamW 28, the others 20.
BYTES_PER_ELEMENT: dict[str, int] = {
    name: (len(reads) + len(writes)) * FLOAT32_BYTES for name, (reads, writes) in TRAFFIC.items()
}

# Hyper-parameters other than torch's defaults, for both libraries.
LR = 1e-3
OPTIMIZER_KWARGS: dict[str, dict[str, Any]] = {
    "Adam": {"lr": LR},
    "AdamW": {"lr": LR},
    "SGD": {"lr": LR, "momentum": 0.9},
    "RMSprop": {"lr": LR},
    "Adagrad": {"lr": LR},
}
OPTIMIZERS = tuple(OPTIMIZER_KWARGS)

WORKLOADS = ("1x16M", "1000x4096", "10000x64")
QUICK_WORKLOADS = ("1x64K", "16x1K", "256x64")
GRAD_MODES = ("new", "in-place")

TORCH_CONTENDERS: dict[str, dict[str, bool]] = {
    "torch for-loop": {"foreach": False},
    "torch foreach": {"foreach": True},
    "torch fused": {"fused": True},
}
PORTOPT_CONTENDERS: dict[str, dict[str, bool]] = {
    "portopt": {},
    "portopt foreach=False": {"foreach": False},
}
# portopt's default step in other settings (NumPy only): parameters (and gradients)
# created with portopt.flat_parameters(grads=True), and the path taken without numba
PORTOPT_SETUPS: dict[str, tuple[bool, bool]] = {  # name: (flat parameters, numba)
    "portopt": (False, True),
    "portopt foreach=False": (False, True),
    "portopt flat": (True, True),
    "portopt no numba": (False, False),
    "portopt flat, no numba": (True, False),
}
CONTENDERS = tuple(TORCH_CONTENDERS) + tuple(PORTOPT_SETUPS)
BASELINES = ("torch fused", "torch foreach")  # the first of these that ran

# Issue 6's targets for portopt's default step, as ratios to torch fused with gradients
# new every step, per setting: NumPy with numba, NumPy without numba (per-tensor
# parameters, and parameters from flat_parameters), CuPy.
TARGETS: dict[str, dict[str, float]] = {
    "1x16M": {"portopt": 0.95, "portopt no numba": 2.5, "portopt flat, no numba": 2.5,
              "cupy": 1.05},
    "1000x4096": {"portopt": 0.35, "portopt no numba": 1.5, "portopt flat, no numba": 1.15,
                  "cupy": 0.2},
    "10000x64": {"portopt": 0.05, "portopt no numba": 1.2, "portopt flat, no numba": 0.06,
                 "cupy": 0.05},
}
ROOFLINE_TARGET = {"1x16M": 0.9}  # with numba

POOL_SIZE = 3  # gradient sets rotated through in "new" mode
BUSY = 0.05  # other processes' share of the CPU time above which a cell is flagged

MARKDOWN_COLUMNS = ("optimizer", "workload", "grads", "contender", "steps", "median ms",
                    "IQR %", "ratio", "vs", "roofline", "GB/s", "extra memory", "other CPU %")

_SUFFIX = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_workload(text: str) -> tuple[int, int]:
    """``"1000x4096"`` -> (1000, 4096): that many float32 tensors of that many elements.

    Either number may end in K (x1024), M (x1024^2) or G: ``1x16M`` is one tensor of
    16,777,216 elements.
    """
    m = re.fullmatch(r"\s*(\d+)([KMG]?)\s*x\s*(\d+)([KMG]?)\s*", text, re.IGNORECASE)
    if not m:
        raise ValueError(f"workload {text!r} is not COUNTxSIZE, e.g. 1000x4096 or 1x16M")
    count = int(m[1]) * _SUFFIX[m[2].upper()]
    size = int(m[3]) * _SUFFIX[m[4].upper()]
    if count < 1 or size < 1:
        raise ValueError(f"workload {text!r} has no elements")
    return count, size


# --------------------------------------------------------------------------------------
# The array libraries on a device
# --------------------------------------------------------------------------------------


class _Lib:
    """One array library on one device, as the benchmark uses it."""

    name = ""
    memory_method = ""

    def asarray(self, a: np.ndarray) -> Any:
        raise NotImplementedError

    def sync(self) -> None:
        pass

    def copy_into(self, dsts: list[Any], srcs: list[Any]) -> None:
        raise NotImplementedError

    def peak_extra_bytes(self, fn: Callable[[], Any]) -> int | None:
        """Peak bytes allocated while ``fn()`` runs, beyond what was allocated before."""
        return None


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2: torch's profiler logs each start and stop there."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w", encoding="ascii") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class _TorchLib(_Lib):
    name = "torch"

    def __init__(self, device: str) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)
        self.memory_method = (
            "torch.cuda.max_memory_allocated" if self.device.type == "cuda"
            else "torch.profiler allocation events"
        )

    def asarray(self, a: np.ndarray) -> Any:
        # torch's own allocation (64-byte aligned), not a view of the NumPy buffer
        return self.torch.from_numpy(a).to(self.device, copy=True)

    def param(self, a: np.ndarray) -> Any:
        return self.torch.nn.Parameter(self.asarray(a))

    def sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def copy_into(self, dsts: list[Any], srcs: list[Any]) -> None:
        self.torch._foreach_copy_(dsts, srcs)

    def peak_extra_bytes(self, fn: Callable[[], Any]) -> int | None:
        torch = self.torch
        if self.device.type == "cuda":
            self.sync()
            torch.cuda.reset_peak_memory_stats(self.device)
            base = torch.cuda.memory_allocated(self.device)
            fn()
            self.sync()
            return torch.cuda.max_memory_allocated(self.device) - base
        # CPU: torch's allocator reports every allocation and free to the profiler when
        # profile_memory=True; their running sum over the step peaks at the extra bytes the
        # step held at once. The event tree is a private API: give up quietly if it moved.
        try:
            from torch._C._profiler import _EventType
            from torch.profiler import ProfilerActivity, profile

            with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU],
                                          profile_memory=True) as prof:
                fn()
            events: list[Any] = []
            todo = list(prof.profiler.kineto_results.experimental_event_tree())
            while todo:
                node = todo.pop()
                todo.extend(node.children)
                if node.tag == _EventType.Allocation:
                    events.append(node)
            events.sort(key=lambda e: e.start_time_ns)
            current = peak = 0
            for event in events:
                current += event.extra_fields.alloc_size
                peak = max(peak, current)
            return peak
        except Exception:
            return None


class _NumPyLib(_Lib):
    name = "numpy"
    memory_method = "tracemalloc"

    def asarray(self, a: np.ndarray) -> Any:
        return a.copy()

    def copy_into(self, dsts: list[Any], srcs: list[Any]) -> None:
        for d, s in zip(dsts, srcs):
            np.copyto(d, s)

    def peak_extra_bytes(self, fn: Callable[[], Any]) -> int | None:
        # NumPy reports its array buffers to tracemalloc; only allocations made after
        # start() are traced, so the peak is the step's own. Memory that compiled code
        # allocates outside NumPy and Python (numba's runtime) is not seen.
        tracemalloc.start()
        try:
            fn()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()


class _CuPyLib(_Lib):
    name = "cupy"
    memory_method = "cupy.cuda.MemoryHook on the memory pool"

    def __init__(self) -> None:
        import cupy

        self.cupy = cupy

    def asarray(self, a: np.ndarray) -> Any:
        return self.cupy.asarray(a)

    def sync(self) -> None:
        self.cupy.cuda.Device().synchronize()

    def copy_into(self, dsts: list[Any], srcs: list[Any]) -> None:
        for d, s in zip(dsts, srcs):
            self.cupy.copyto(d, s)

    def peak_extra_bytes(self, fn: Callable[[], Any]) -> int | None:
        cupy = self.cupy

        class PeakHook(cupy.cuda.MemoryHook):
            name = "portopt-bench-peak"

            def __init__(self) -> None:
                self.current = self.peak = 0

            def malloc_postprocess(self, **kw: Any) -> None:
                self.current += kw["mem_size"]
                self.peak = max(self.peak, self.current)

            def free_postprocess(self, **kw: Any) -> None:
                self.current -= kw["mem_size"]

        hook = PeakHook()
        self.sync()
        with hook:
            fn()
            self.sync()
        return hook.peak


# --------------------------------------------------------------------------------------
# Memory bandwidth
# --------------------------------------------------------------------------------------


@dataclass
class Bandwidth:
    """Measured bandwidths in bytes per second; ``used`` is the one the roofline uses."""

    used: float
    kernel: str
    detail: str
    others: dict[str, float] = field(default_factory=dict)


def measure_bandwidth(nbytes: int = 256 << 20, threads: int = 2, repeats: int = 5) -> Bandwidth:
    """Memory bandwidth of NumPy streaming kernels on arrays of ``nbytes`` each, split over
    ``threads`` Python threads (NumPy releases the GIL inside a ufunc), best of ``repeats``.

    The roofline uses the in-place add ``a += b`` (reads a and b, writes a: 12 bytes per
    float32 element), because that is an optimizer step's access pattern: every array
    written is one just read. Copy ``a[:] = b`` and the triad ``a[:] = b + s*c`` write to an
    array they did not read, which on a write-allocate cache also reads the destination
    first, traffic they are not credited with (8 and 12 bytes counted); they are reported
    for reference and come out lower.
    """
    n = max(nbytes // FLOAT32_BYTES, threads * 1024)
    rng = np.random.default_rng(0)
    a = rng.random(n, dtype=np.float32)
    b = rng.random(n, dtype=np.float32)
    c = rng.random(n, dtype=np.float32)
    bounds = [n * i // threads for i in range(threads + 1)]
    chunk = 1 << 18
    tmps = [np.empty(chunk, np.float32) for _ in range(threads)]

    def add_inplace(i: int) -> None:
        lo, hi = bounds[i], bounds[i + 1]
        np.add(a[lo:hi], b[lo:hi], out=a[lo:hi])

    def copy(i: int) -> None:
        lo, hi = bounds[i], bounds[i + 1]
        np.copyto(a[lo:hi], b[lo:hi])

    def triad(i: int) -> None:  # in chunks that stay in cache between the two ufuncs
        for lo in range(bounds[i], bounds[i + 1], chunk):
            hi = min(lo + chunk, bounds[i + 1])
            t = tmps[i][: hi - lo]
            np.multiply(c[lo:hi], np.float32(3.0), out=t)
            np.add(b[lo:hi], t, out=a[lo:hi])

    kernels = {"a += b": (add_inplace, 12), "a[:] = b": (copy, 8),
               "a[:] = b + s*c": (triad, 12)}
    rates: dict[str, float] = {}
    with ThreadPoolExecutor(threads) as pool:
        for name, (fn, per_element) in kernels.items():
            best = math.inf
            for _ in range(repeats + 1):  # the first touches the pages
                t0 = time.perf_counter()
                list(pool.map(fn, range(threads)))
                best = min(best, time.perf_counter() - t0)
            rates[name] = per_element * n / best
    used = rates.pop("a += b")
    detail = (f"NumPy in-place add `a += b` on float32 arrays of {nbytes >> 20} MiB, "
              f"{threads} thread{'s' if threads > 1 else ''}, best of {repeats}, "
              "12 bytes per element")
    return Bandwidth(used, "a += b", detail, rates)


def measure_bandwidth_cupy(nbytes: int = 1 << 30, repeats: int = 5) -> Bandwidth:
    """Device memory bandwidth of CuPy's in-place add (and copy, for reference)."""
    import cupy

    n = nbytes // FLOAT32_BYTES
    a = cupy.ones(n, dtype=cupy.float32)
    b = cupy.ones(n, dtype=cupy.float32)
    dev = cupy.cuda.Device()
    rates = {}
    for name, fn, per_element in (("a += b", lambda: cupy.add(a, b, out=a), 12),
                                  ("a[:] = b", lambda: cupy.copyto(a, b), 8)):
        best = math.inf
        for _ in range(repeats + 1):
            dev.synchronize()
            t0 = time.perf_counter()
            fn()
            dev.synchronize()
            best = min(best, time.perf_counter() - t0)
        rates[name] = per_element * n / best
    used = rates.pop("a += b")
    detail = (f"CuPy in-place add `a += b` on float32 arrays of {nbytes >> 20} MiB, "
              f"best of {repeats}, 12 bytes per element")
    return Bandwidth(used, "a += b", detail, rates)


class BandwidthProbe:
    """One timed pass of the in-place add ``a += b`` over two arrays of ``nbytes`` each
    (12 bytes per float32 element), returning bytes per second.

    The bandwidth a shared machine gives drifts, by half or more within minutes on a cloud
    VM whose neighbours share its memory, so one measurement at the start would misplace
    the roofline of later cells. The probe runs interleaved with the steps instead, before
    every burst of steps, and each cell's roofline uses the median of its passes.
    """

    def __init__(self, nbytes: int, threads: int = 2, device: str = "cpu") -> None:
        self.nbytes, self.device, self.threads = nbytes, device, threads
        n = max(nbytes // FLOAT32_BYTES, threads * 1024)
        self.n = n
        if device == "cuda":
            import cupy

            self.xp = cupy
            self.pool = None
        else:
            self.xp = np
            self.pool = ThreadPoolExecutor(threads)
        # Random data, written: an array of zeros straight from the allocator would be
        # pages never touched, all mapped to the kernel's one zero page, read from cache.
        rng = np.random.default_rng(7)
        self.a = self.xp.asarray(rng.random(n, dtype=np.float32))
        self.b = self.xp.asarray(rng.random(n, dtype=np.float32) * np.float32(1e-6))
        self.bounds = [n * i // threads for i in range(threads + 1)]
        self()  # touch the pages

    def __call__(self) -> float:
        if self.pool is None:
            dev = self.xp.cuda.Device()
            dev.synchronize()
            t0 = time.perf_counter()
            self.xp.add(self.a, self.b, out=self.a)
            dev.synchronize()
            return 12 * self.n / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        list(self.pool.map(self._add, range(self.threads)))
        return 12 * self.n / (time.perf_counter() - t0)

    def _add(self, i: int) -> None:
        lo, hi = self.bounds[i], self.bounds[i + 1]
        np.add(self.a[lo:hi], self.b[lo:hi], out=self.a[lo:hi])

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


# --------------------------------------------------------------------------------------
# Contenders and cells
# --------------------------------------------------------------------------------------


@dataclass
class Contender:
    name: str
    lib: _Lib
    params: list[Any]
    opt: Any
    own_grads: list[Any] = field(default_factory=list)
    samples: list[float] = field(default_factory=list)
    numba: bool = True  # False: portopt steps as if numba were not installed
    flat_grads: list[Any] = field(default_factory=list)  # from flat_parameters(grads=True)

    def prepare(self, mode: str, pool: list[list[Any]], k: int) -> None:
        """Make the gradients of step ``k`` ready (not timed)."""
        grads = pool[k % len(pool)]
        if mode == "new":
            for p, g in zip(self.params, grads):
                p.grad = g
        else:
            self.lib.copy_into(self.own_grads, grads)

    def timed_step(self, mode: str, pool: list[list[Any]], k: int,
                   flush: Callable[[], None] | None = None) -> float:
        self.prepare(mode, pool, k)
        if flush is not None:
            flush()
        self.lib.sync()
        with _without_numba(not self.numba):
            t0 = time.perf_counter()
            self.opt.step()
            self.lib.sync()
            return time.perf_counter() - t0


@contextlib.contextmanager
def _without_numba(active: bool) -> Iterator[None]:
    """portopt's fast path as it is without numba (the plan a step builds keeps it)."""
    from portopt.optim import _fast

    if not active:
        yield
        return
    kernels = _fast.kernels
    _fast.kernels = lambda: None
    try:
        yield
    finally:
        _fast.kernels = kernels


@dataclass
class Row:
    optimizer: str
    workload: str
    numel: int
    grads: str
    contender: str
    steps: int = 0
    median_s: float = math.nan
    iqr: float = math.nan
    baseline: str | None = None
    ratio: float = math.nan
    roofline: float = math.nan
    extra_bytes: int | None = None
    param_bytes: int = 0
    other_cpu: float | None = None
    bandwidth: float = math.nan  # the median of the cell's probe passes, B/s
    skipped: str | None = None


def _torch_unavailable(torch: Any, name: str, kwargs: dict[str, bool]) -> str | None:
    cls = getattr(torch.optim, name)
    params = inspect.signature(cls.__init__).parameters
    for key in kwargs:
        if key not in params:
            return f"torch.optim.{name} has no `{key}` argument (no {key} kernel)"
    return None


def _build_contenders(name: str, init: list[np.ndarray],
                      torch_lib: _TorchLib, port_lib: _Lib,
                      skipped: dict[str, str]) -> list[Contender]:
    import portopt
    from portopt.optim import _fast

    out = []
    for cname, flags in TORCH_CONTENDERS.items():
        reason = _torch_unavailable(torch_lib.torch, name, flags)
        if reason:
            skipped[cname] = reason
            continue
        params = [torch_lib.param(a) for a in init]
        try:
            opt = getattr(torch_lib.torch.optim, name)(params, **OPTIMIZER_KWARGS[name], **flags)
        except Exception as exc:
            skipped[cname] = f"{type(exc).__name__}: {exc}"
            continue
        out.append(Contender(cname, torch_lib, params, opt))
    for cname, (flat, numba) in PORTOPT_SETUPS.items():
        flags = PORTOPT_CONTENDERS.get(cname, {})
        if port_lib.name != "numpy" and (flat or not numba):
            skipped[cname] = "a NumPy setting"
            continue
        if numba and _fast.kernels() is None:
            skipped[cname] = "numba is not installed"
            continue
        if flat:
            params = portopt.flat_parameters([port_lib.asarray(a) for a in init], grads=True)
        else:
            params = [portopt.Parameter(port_lib.asarray(a)) for a in init]
        try:
            opt = getattr(portopt.optim, name)(params, **OPTIMIZER_KWARGS[name], **flags)
        except Exception as exc:
            skipped[cname] = f"{type(exc).__name__}: {exc}"
            continue
        out.append(Contender(cname, port_lib, params, opt, numba=numba,
                             flat_grads=[p.grad for p in params] if flat else []))
    return out


@dataclass
class Settings:
    steps: int = 100
    min_steps: int = 5
    warmup: int = 3
    budget: float = 2.0
    # An untimed pause before each contender's burst. torch and numba each bring an OpenMP
    # runtime (two libgomp copies, two thread pools) whose idle workers spin for some
    # milliseconds after a parallel region; on 2 cores the spinning workers of the last
    # contender would steal the CPU from the next one (torch's fused CPU kernels open a
    # parallel region per tensor and suffer worst). The pause lets them fall asleep.
    settle: float = 0.02
    # Evict the caches before every timed step (see CacheFlusher); False keeps them warm.
    flush: bool = True
    # Seconds to wait, before each cell, for other processes to leave the CPUs alone; a
    # cell that still ran beside other work is run once more. 0: no waiting.
    wait_quiet: float = 0.0


def last_level_cache_bytes() -> int | None:
    """The largest CPU cache of CPU 0, from Linux's sysfs; None where it is not told."""
    best = None
    try:
        for index in os.scandir("/sys/devices/system/cpu/cpu0/cache"):
            if not index.name.startswith("index"):
                continue
            with open(os.path.join(index.path, "size"), encoding="ascii") as f:
                text = f.read().strip()
            size = int(text.rstrip("KMG")) * _SUFFIX[text[-1]] if text[-1] in "KMG" \
                else int(text)
            best = size if best is None else max(best, size)
    except (OSError, ValueError):
        return None
    return best


class CacheFlusher:
    """An untimed pass over a buffer larger than the last-level cache, made before every
    timed step, so that each step of each contender starts with its arrays out of the
    cache, as after the forward and backward passes of a training step. Without it a
    contender would find in the cache what itself or the contender before it left there,
    depending on the order of the interleaving (the 10,000 x 64 workload's arrays fit)."""

    def __init__(self, nbytes: int, device: str = "cpu") -> None:
        self.nbytes = nbytes
        n = nbytes // FLOAT32_BYTES
        if device == "cuda":
            import cupy

            self.xp = cupy
        else:
            self.xp = np
        self.buf = self.xp.asarray(np.random.default_rng(3).random(n, dtype=np.float32))

    def __call__(self) -> None:
        self.xp.negative(self.buf, out=self.buf)  # reads and writes every line


def _wait_quiet(watch: _CpuWatch, limit: float, out: TextIO) -> None:
    """Wait up to ``limit`` seconds for a second in which other processes use no more than
    ``BUSY`` of the machine's CPU time."""
    if not watch.ok:
        return
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        watch.start()
        time.sleep(1.0)
        busy = watch.stop()
        if busy is None or busy <= BUSY:
            return
    print(f"  note: the machine was still busy after {limit:g} s; going on", file=out,
          flush=True)


class _CpuWatch:
    """The share of the machine's CPU time that other processes used between ``start()``
    and ``stop()``, from /proc/stat and this process's own CPU time (Linux; None elsewhere).
    Other work on a 2-core machine skews every row, torch fused's most."""

    def __init__(self) -> None:
        self.ok = os.path.exists("/proc/stat")
        self.hz = os.sysconf("SC_CLK_TCK") if self.ok else 100
        self.ncpu = os.cpu_count() or 1
        self.t0 = self.busy0 = self.own0 = 0.0

    def _busy(self) -> float:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal ...: all but idle and iowait
        return (sum(fields[:8]) - fields[3] - fields[4]) / self.hz

    def start(self) -> None:
        if self.ok:
            self.t0, self.busy0 = time.perf_counter(), self._busy()
            self.own0 = sum(os.times()[:2])

    def stop(self) -> float | None:
        if not self.ok:
            return None
        wall = time.perf_counter() - self.t0
        others = (self._busy() - self.busy0) - (sum(os.times()[:2]) - self.own0)
        return max(0.0, others) / (wall * self.ncpu) if wall > 0 else None


def _run_cell(contenders: list[Contender], mode: str, pools: dict[str, list[list[Any]]],
              settings: Settings, skipped: dict[str, str],
              flush: Callable[[], None] | None = None,
              probe: Callable[[], float] | None = None) -> tuple[list[Contender], list[float]]:
    """Warm up, then time ``contenders`` interleaved; return those that ran, and the
    bandwidths ``probe`` measured, one pass before each burst and one at the end."""
    gc.collect()
    live = []
    estimate = {}
    for c in contenders:
        c.samples = []
        pool = pools[c.lib.name]
        if mode == "in-place":
            # arrays of this contender's own: one flat buffer's views for flat parameters
            c.own_grads = c.flat_grads or [g * 0 for g in pool[0]]
            for p, g in zip(c.params, c.own_grads):
                p.grad = g
        walls = []  # what a step costs here with its untimed preparation: the budget's unit
        try:
            for k in range(max(settings.warmup, 1)):
                t0 = time.perf_counter()
                c.timed_step(mode, pool, k, flush)
                walls.append(time.perf_counter() - t0)
        except Exception as exc:
            skipped[c.name] = f"{type(exc).__name__}: {exc}"
            continue
        # the first step allocates the state, a later one may compile: take the fastest
        estimate[c.name] = min(walls[1:] or walls)
        live.append(c)
    bandwidths: list[float] = []
    if not live:
        return live, bandwidths
    share = settings.budget / len(live)
    wanted = {c.name: max(settings.min_steps, min(settings.steps, int(share / estimate[c.name])))
              for c in live}
    wanted = {k: min(v, settings.steps) for k, v in wanted.items()}
    rounds = max(1, min(wanted.values()))
    step_no = dict.fromkeys(wanted, settings.warmup)
    for r in range(rounds):
        shift = r % len(live)
        for c in live[shift:] + live[:shift]:
            pool = pools[c.lib.name]
            if settings.settle:
                time.sleep(settings.settle)
            if probe is not None:  # after the pause: spinning workers would slow it too
                bandwidths.append(probe())
            n = wanted[c.name]  # spread over the rounds: this round's share
            for _ in range((r + 1) * n // rounds - r * n // rounds):
                c.samples.append(c.timed_step(mode, pool, step_no[c.name], flush))
                step_no[c.name] += 1
    if probe is not None:
        time.sleep(settings.settle)
        bandwidths.append(probe())
    return live, bandwidths


def _memory_probe(c: Contender, mode: str, pools: dict[str, list[list[Any]]]) -> int | None:
    """Extra bytes one more step allocates at its peak (see the libs' peak_extra_bytes)."""
    pool = pools[c.lib.name]
    c.prepare(mode, pool, len(c.samples) + 1)
    gc.collect()
    try:
        return c.lib.peak_extra_bytes(c.opt.step)
    except Exception:
        return None


def _quartiles(xs: list[float]) -> tuple[float, float, float]:
    if len(xs) == 1:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], statistics.median(xs), q[2]


# --------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------


@dataclass
class Report:
    device: str
    machine: dict[str, str]
    bandwidth: Bandwidth
    rows: list[Row]
    settings: Settings
    command: str
    flush_bytes: int = 0
    probe_bytes: int = 0
    probes: list[float] = field(default_factory=list)  # every pass of the probe, B/s
    markdown: str = ""


class DeviceUnavailable(RuntimeError):
    """``--device cuda`` asked for on a machine without CuPy, torch CUDA or a GPU."""


def cuda_unavailable() -> str | None:
    """Why the CUDA mode cannot run here, or None when it can."""
    if importlib.util.find_spec("cupy") is None:
        return "CuPy is not installed (pip install cupy-cuda12x)"
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "CuPy sees no CUDA device"
    except Exception as exc:
        return f"CuPy sees no CUDA device ({type(exc).__name__}: {exc})"
    import torch

    if not torch.cuda.is_available():
        return f"torch {torch.__version__} has no CUDA device (a CPU-only build?)"
    return None


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _git_commit(root: str) -> str | None:
    """``commit 1a2b3c4`` of the checkout portopt is imported from, ``+ local changes``
    where its tracked files differ; None outside a git checkout."""
    import subprocess

    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10)
        if head.returncode:
            return None
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain",
                                "--untracked-files=no", "--", "portopt"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return f"commit {head.stdout.strip()}" + (" + local changes" if dirty.stdout.strip() else "")


def machine_info(device: str, threads: int) -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    import torch

    import portopt

    info = {
        "cpu": cpu,
        "cores": f"{os.cpu_count()} logical CPUs, {usable} usable by this process, "
                 f"{threads} thread{'s' if threads > 1 else ''} used",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "numba": _version("numba"),
        "portopt": portopt.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    if hasattr(os, "getloadavg"):  # other work on the machine skews everything
        info["load"] = "load average at start: " + " / ".join(
            f"{x:.2f}" for x in os.getloadavg()) + " (1 / 5 / 15 min)"

    commit = _git_commit(os.path.dirname(os.path.dirname(os.path.abspath(portopt.__file__))))
    if commit:
        info["portopt"] += f" ({commit})"
    if device == "cuda":
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        name = props["name"]
        info["gpu"] = name.decode() if isinstance(name, bytes) else str(name)
        info["cupy"] = cupy.__version__
    return info


def _set_threads(threads: int) -> Callable[[], None]:
    """Set torch's and numba's thread counts; return what puts them back."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    undo = [lambda: torch.set_num_threads(before)]
    if importlib.util.find_spec("numba") is not None:
        try:
            import numba

            numba_before = numba.get_num_threads()
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            undo.append(lambda: numba.set_num_threads(numba_before))
        except Exception:
            pass
    return lambda: [fn() for fn in undo] and None


def run(optimizers: Sequence[str] | None = None, workloads: Sequence[str] | None = None,
        grads: Sequence[str] | None = None, *, steps: int | None = None,
        min_steps: int | None = None, warmup: int | None = None, budget: float | None = None,
        threads: int = 2, device: str = "cpu", quick: bool = False, wait_quiet: float = 0.0,
        warm_cache: bool = False,
        markdown: str | os.PathLike[str] | None = None, out: TextIO | None = None,
        command: str = "") -> Report:
    """Run the benchmark and return its :class:`Report` (``report.markdown`` is the table).

    Raises :class:`DeviceUnavailable` for ``device="cuda"`` where that cannot run, and
    ImportError without torch.
    """
    out = sys.stdout if out is None else out
    optimizers = list(dict.fromkeys(optimizers or OPTIMIZERS))
    for name in optimizers:
        if name not in OPTIMIZER_KWARGS:
            raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")
    workloads = list(dict.fromkeys(workloads or (QUICK_WORKLOADS if quick else WORKLOADS)))
    shapes = {w: parse_workload(w) for w in workloads}
    grads = list(dict.fromkeys(grads or GRAD_MODES))
    for g in grads:
        if g not in GRAD_MODES:
            raise ValueError(f"unknown gradient mode {g!r}; known: {', '.join(GRAD_MODES)}")
    defaults = Settings(5, 3, 3, 0.2, 0.001) if quick else Settings()
    settings = Settings(
        steps=defaults.steps if steps is None else steps,
        min_steps=defaults.min_steps if min_steps is None else min_steps,
        warmup=defaults.warmup if warmup is None else warmup,
        budget=defaults.budget if budget is None else budget,
        settle=defaults.settle,
        wait_quiet=wait_quiet,
        flush=not warm_cache,
    )
    if settings.steps < 1 or settings.warmup < 1 or settings.budget < 0:
        raise ValueError("steps and warmup must be at least 1 and budget not negative")
    settings.min_steps = max(1, min(settings.min_steps, settings.steps))
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu or cuda, not {device!r}")

    import torch  # noqa: F401  (ImportError here: the caller says torch is needed)

    if device == "cuda":
        reason = cuda_unavailable()
        if reason:
            raise DeviceUnavailable(reason)
    restore_threads = _set_threads(threads)
    try:
        report = _run(optimizers, workloads, shapes, grads, settings, threads, device, quick,
                      out, command)
    finally:
        restore_threads()
    if markdown is not None:
        with open(markdown, "w", encoding="utf-8") as f:
            f.write(report.markdown)
        print(f"wrote {os.fspath(markdown)}", file=out)
    return report


def _run(optimizers: list[str], workloads: list[str], shapes: dict[str, tuple[int, int]],
         grads: list[str], settings: Settings, threads: int, device: str, quick: bool,
         out: TextIO, command: str) -> Report:
    machine = machine_info(device, threads)
    print(f"portopt bench on {machine['cpu']} ({machine['cores']}), device {device}", file=out)
    watch = _CpuWatch()

    if settings.wait_quiet:
        _wait_quiet(watch, settings.wait_quiet, out)
    if device == "cuda":
        first = measure_bandwidth_cupy(64 << 20 if quick else 1 << 30)
        probe = BandwidthProbe(64 << 20 if quick else 1 << 30, device="cuda")
    else:
        first = measure_bandwidth(64 << 20 if quick else 256 << 20, threads, 2 if quick else 5)
        probe = BandwidthProbe(64 << 20 if quick else 256 << 20, threads)
    print(f"memory bandwidth at the start {first.used / 1e9:.1f} GB/s ({first.detail})",
          file=out, flush=True)
    try:
        return _run_cells(optimizers, workloads, shapes, grads, settings, device, out,
                          command, machine, watch, first, probe)
    finally:
        probe.close()


def _run_cells(optimizers: list[str], workloads: list[str],
               shapes: dict[str, tuple[int, int]], grads: list[str], settings: Settings,
               device: str, out: TextIO, command: str, machine: dict[str, str],
               watch: _CpuWatch, first: Bandwidth, probe: BandwidthProbe) -> Report:
    flusher = None
    if device == "cuda":
        torch_lib: _TorchLib = _TorchLib("cuda")
        port_lib: _Lib = _CuPyLib()
        if settings.flush:
            import cupy

            l2 = cupy.cuda.Device().attributes.get("L2CacheSize", 0)
            flusher = CacheFlusher(max(4 * l2, 256 << 20), "cuda")
    else:
        torch_lib = _TorchLib("cpu")
        port_lib = _NumPyLib()
        if settings.flush:
            flusher = CacheFlusher(max(2 * (last_level_cache_bytes() or 0), 64 << 20))

    rows: list[Row] = []
    all_bandwidths: list[float] = []
    rng = np.random.default_rng(1234)
    for workload in workloads:
        count, size = shapes[workload]
        numel = count * size
        init = [rng.standard_normal(size, dtype=np.float32) for _ in range(count)]
        src = [[rng.standard_normal(size, dtype=np.float32) for _ in range(count)]
               for _ in range(POOL_SIZE)]
        pools = {lib.name: [[lib.asarray(a) for a in grads_] for grads_ in src]
                 for lib in (torch_lib, port_lib)}
        del src
        for name in optimizers:
            skipped: dict[str, str] = {}
            contenders = _build_contenders(name, init, torch_lib, port_lib, skipped)
            for mode in grads:
                for attempt in range(2 if settings.wait_quiet else 1):
                    if settings.wait_quiet:
                        _wait_quiet(watch, settings.wait_quiet, out)
                    mode_skipped = dict(skipped)
                    watch.start()
                    live, bandwidths = _run_cell(contenders, mode, pools, settings,
                                                 mode_skipped, flusher, probe)
                    other_cpu = watch.stop()
                    if not settings.wait_quiet or other_cpu is None or other_cpu <= BUSY:
                        break
                    if attempt == 0:
                        print(f"  {name} {workload} {mode}: other processes used "
                              f"{100 * other_cpu:.0f}% of the CPU time; running the cell "
                              "again", file=out, flush=True)
                all_bandwidths += bandwidths
                cell_bw = statistics.median(bandwidths) if bandwidths else first.used
                medians = {}
                cell: list[Row] = []
                for c in live:
                    q1, med, q3 = _quartiles(c.samples)
                    medians[c.name] = med
                    cell.append(Row(name, workload, numel, mode, c.name, len(c.samples), med,
                                    (q3 - q1) / med if med > 0 else math.nan,
                                    param_bytes=numel * FLOAT32_BYTES, other_cpu=other_cpu,
                                    bandwidth=cell_bw))
                for c, row in zip(live, cell):
                    row.extra_bytes = _memory_probe(c, mode, pools)
                baseline = next((b for b in BASELINES if b in medians), None)
                for row in cell:
                    row.baseline = baseline
                    if baseline:
                        row.ratio = row.median_s / medians[baseline]
                    row.roofline = BYTES_PER_ELEMENT[name] * numel / cell_bw / row.median_s
                for cname in CONTENDERS:
                    if cname in mode_skipped:
                        cell.append(Row(name, workload, numel, mode, cname,
                                        skipped=mode_skipped[cname], baseline=baseline))
                cell.sort(key=lambda r: CONTENDERS.index(r.contender))
                for row in cell:
                    print(_progress_line(row), file=out, flush=True)
                print(f"  memory bandwidth during the cell: {cell_bw / 1e9:.1f} GB/s",
                      file=out, flush=True)
                if other_cpu is not None and other_cpu > BUSY:
                    print(f"  note: other processes used {100 * other_cpu:.0f}% of the "
                          "machine's CPU time during this cell", file=out, flush=True)
                rows.extend(cell)
            del contenders
        del pools, init
        gc.collect()
    report = Report(device, machine, first, rows, settings, command,
                    flush_bytes=flusher.nbytes if flusher else 0,
                    probe_bytes=probe.nbytes, probes=all_bandwidths)
    report.markdown = to_markdown(report)
    return report


# --------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------


def _fmt_ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def _fmt_bytes(n: int | None, param_bytes: int) -> str:
    if n is None:
        return "n/a"
    if n < 1 << 10:
        text = f"{n} B"
    elif n < 1 << 20:
        text = f"{n / (1 << 10):.1f} KiB"
    else:
        text = f"{n / (1 << 20):.1f} MiB"
    return f"{text} ({n / param_bytes:.2f}x params)" if param_bytes else text


def _progress_line(row: Row) -> str:
    head = f"{row.optimizer:<8} {row.workload:<10} {row.grads:<8} {row.contender:<22}"
    if row.skipped:
        return f"{head} skipped: {row.skipped}"
    extra = _fmt_bytes(row.extra_bytes, row.param_bytes)
    return (f"{head} {_fmt_ms(row.median_s):>7} ms  x{row.ratio:.2f} {row.baseline or '-'}"
            f"  roofline {_fmt_ratio(row.roofline)}  extra {extra}  ({row.steps} steps)")


def _target_cell(ratio: float, target: float | None, roof_target: float | None = None,
                 roofline: float = math.nan) -> str:
    if target is None or math.isnan(ratio):
        return "-"
    text = f"ratio <= {target:g}: {'met' if ratio <= target else 'missed'}"
    if roof_target is not None:
        text += (f", roofline >= {roof_target:g}: "
                 f"{'met' if roofline >= roof_target else 'missed'}")
    return text


def _summary(report: Report, cuda: bool) -> list[str]:
    """One line per optimizer and workload: portopt's default step in each setting as a
    ratio to torch's best, with issue 6's target where it sets one."""
    settings = ["portopt"] if cuda else [
        "portopt", "portopt flat", "portopt no numba", "portopt flat, no numba"]
    by_key = {(r.optimizer, r.workload, r.grads, r.contender): r for r in report.rows}
    lines = [
        "Ratios to torch's best path (fused, or foreach where torch has no fused), with "
        "gradients that are new arrays every step and, after the slash, written in "
        "place; the target applies to new gradients.",
        "",
        "| optimizer | workload | best torch, ms | " + " | ".join(
            ("CuPy" if cuda else s.removeprefix("portopt").strip(", ") or "default")
            + (", roofline" if s == "portopt" else "") + ", target" for s in settings) + " |",
        "|---|---|---|" + "---|" * len(settings),
    ]
    names = list(dict.fromkeys(r.optimizer for r in report.rows))
    workloads = list(dict.fromkeys(r.workload for r in report.rows))
    for name in names:
        for w in workloads:
            rows = {(g, s): by_key.get((name, w, g, s)) for g in GRAD_MODES for s in settings}
            ran = [r for r in rows.values() if r is not None and not r.skipped]
            if not ran:
                continue
            ref = ran[0]
            base = by_key.get((name, w, ref.grads, ref.baseline)) if ref.baseline else None
            cells = [name, w, f"{(ref.baseline or '-').replace('torch ', '')}, "
                     f"{_fmt_ms(base.median_s) if base else '-'}"]
            for setting in settings:
                new, inplace = rows[("new", setting)], rows[("in-place", setting)]
                rnew = new.ratio if new and not new.skipped else math.nan
                rin = inplace.ratio if inplace and not inplace.skipped else math.nan
                text = f"{_fmt_ratio(rnew)} / {_fmt_ratio(rin)}"
                if setting == "portopt" and new and not new.skipped:
                    text += f", {_fmt_ratio(new.roofline)}"
                target = TARGETS.get(w, {}).get("cupy" if cuda else setting)
                roof = ROOFLINE_TARGET.get(w) if setting == "portopt" and not cuda else None
                text += f", {_target_cell(rnew, target, roof, new.roofline if new else math.nan)}"
                cells.append(text)
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def to_markdown(report: Report) -> str:
    m, bw, s = report.machine, report.bandwidth, report.settings
    cuda = report.device == "cuda"
    lines = [
        "# portopt vs torch.optim: time of one optimizer step"
        + (" on CUDA" if cuda else " on CPU"),
        "",
        f"- CPU: {m['cpu']}; {m['cores']}",
    ]
    if cuda:
        lines.append(f"- GPU: {m['gpu']}; CuPy {m['cupy']}")
    lines += [
        f"- {m['os']}; Python {m['python']}; torch {m['torch']}; NumPy {m['numpy']}; "
        f"numba {m['numba']}; portopt {m['portopt']}",
        f"- date: {m['date']}" + (f"; {m['load']}" if "load" in m else ""),
    ]
    cells = sorted({r.bandwidth for r in report.rows
                    if not r.skipped and math.isfinite(r.bandwidth)})
    if report.probes and cells:
        lines.append(
            f"- memory bandwidth: **{statistics.median(report.probes) / 1e9:.1f} GB/s**, the "
            f"median of {len(report.probes)} passes of the in-place add `a += b` over "
            f"{report.probe_bytes >> 20} MiB float32 arrays ("
            + (f"{m['cores'].rsplit(', ', 1)[-1].replace(' used', '')}, " if not cuda else "")
            + "12 bytes per element) made between the steps, one before every burst; "
            f"the cells' medians ran from {cells[0] / 1e9:.1f} to {cells[-1] / 1e9:.1f} "
            "GB/s, and each row's roofline uses its own cell's (column `GB/s`)")
    lines += [
        f"- bandwidth at the start: {bw.detail}: {bw.used / 1e9:.1f} GB/s"
        + ("; for reference, "
           + ", ".join(f"`{k}` {v / 1e9:.1f} GB/s" for k, v in bw.others.items())
           + " (these write to an array they did not read and pay for it in hidden "
             "write-allocate reads)" if bw.others else ""),
        f"- steps: median of up to {s.steps} timed steps per contender and cell (at least "
        f"{s.min_steps}; fewer for slow contenders, within a budget of {s.budget:g} s per "
        f"cell), after {s.warmup} untimed warm-up step{'s' if s.warmup > 1 else ''}"
        + (f"; before each cell, waited up to {s.wait_quiet:g} s for other processes to "
           "leave the CPUs alone, and ran a cell once more if they had not"
           if s.wait_quiet else ""),
    ]
    if report.flush_bytes:
        lines.append(f"- caches: before every timed step an untimed pass over a "
                     f"{report.flush_bytes >> 20} MiB buffer evicts the step's arrays from "
                     + ("the GPU's L2" if cuda else "the CPU caches")
                     + ", as the forward and backward passes of training would")
    else:
        lines.append("- caches: kept warm (`--warm-cache`): a step may find its arrays, or "
                     "the gradients, in the cache where they fit")
    loads = [r.other_cpu for r in report.rows if r.other_cpu is not None and not r.skipped]
    if loads:
        busy = sorted({(r.optimizer, r.workload, r.grads) for r in report.rows
                       if r.other_cpu is not None and r.other_cpu > BUSY})
        lines.append(
            f"- other processes used {100 * statistics.mean(loads):.1f}% of the machine's CPU "
            f"time on average while cells ran (at most {100 * max(loads):.0f}% in one cell)"
            + (f"; **{len(busy)} cell{'s' if len(busy) > 1 else ''} ran beside other work "
               f"(over {100 * BUSY:.0f}%, see `other CPU %`): their times are suspect**"
               if busy else "")
        )
    if report.command:
        lines.append(f"- command: `{report.command}`")
    lines += [
        "",
        "Timed: `opt.step()` alone, wall clock"
        + (" between device synchronizations" if cuda else "")
        + ". Gradients `new`: before each step (untimed) every `.grad` is assigned another "
        f"array from a pool of {POOL_SIZE} gradient sets made in advance; `in-place`: the "
        "next set is copied (untimed) into the existing `.grad` arrays. Contenders of a cell "
        "run interleaved, in rounds, with an untimed pause of "
        f"{1e3 * s.settle:g} ms before each burst (and each bandwidth pass) for idle "
        "thread pools to stop spinning. "
        "`ratio`: median time over that of the contender named "
        "in `vs` (torch fused, or torch foreach where torch has no fused kernel). "
        "`roofline`: (bytes per element x elements / the cell's bandwidth) / median time; "
        "a kernel "
        "with more streams than `a += b` can draw a little more bandwidth, so a fraction a "
        "little above 1 is possible. `IQR %`: "
        "interquartile range of the step times over their median. `extra memory`: peak bytes "
        "allocated during one step beyond those allocated before it ("
        + ("torch: `torch.cuda.max_memory_allocated`; portopt on CuPy: a "
           "`cupy.cuda.MemoryHook` on the memory pool"
           if cuda else
           "portopt on NumPy: `tracemalloc`, which sees NumPy's buffers but not what "
           "compiled code allocates outside NumPy; torch: the CPU allocator's "
           "allocation and free events under `torch.profiler` with `profile_memory=True`")
        + "). `other CPU %`: the share of the machine's CPU time that other processes used "
        "while the cell ran (from /proc/stat).",
        "",
        "## Bytes each step must move per float32 element",
        "",
        "| optimizer | reads | writes | bytes/element |",
        "|---|---|---|---|",
    ]
    shown = list(dict.fromkeys(r.optimizer for r in report.rows))
    for name in shown:
        reads, writes = TRAFFIC[name]
        lines.append(f"| {name} | {', '.join(reads)} | {', '.join(writes)} | "
                     f"{BYTES_PER_ELEMENT[name]} |")
    lines += ["", "## portopt's default step against torch's best", ""]
    lines += _summary(report, cuda)
    lines += [
        "",
        "## All rows",
        "",
        "| " + " | ".join(MARKDOWN_COLUMNS) + " |",
        "|" + "---|" * len(MARKDOWN_COLUMNS),
    ]
    notes = {}
    for r in report.rows:
        if r.skipped:
            notes[(r.optimizer, r.contender)] = r.skipped
            continue
        lines.append("| " + " | ".join([
            r.optimizer, r.workload, r.grads, r.contender, str(r.steps), _fmt_ms(r.median_s),
            f"{100 * r.iqr:.0f}", _fmt_ratio(r.ratio),
            (r.baseline or "-").replace("torch ", ""), _fmt_ratio(r.roofline),
            f"{r.bandwidth / 1e9:.1f}", _fmt_bytes(r.extra_bytes, r.param_bytes),
            "n/a" if r.other_cpu is None else f"{100 * r.other_cpu:.0f}",
        ]) + " |")
    if notes:
        lines += ["", "Not run:", ""]
        lines += [f"- {c} for {o}: {why}" for (o, c), why in notes.items()]
    return "\n".join(lines) + "\n"


def _fmt_ratio(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.3g}" if x < 10 else f"{x:.1f}"


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def _optimizer_name(text: str) -> str:
    for name in OPTIMIZERS:
        if name.lower() == text.lower():
            return name
    raise argparse.ArgumentTypeError(f"unknown optimizer {text!r}; known: {', '.join(OPTIMIZERS)}")


def _workload(text: str) -> str:
    try:
        parse_workload(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Time opt.step() of portopt (its default path, and foreach=False) against "
            "torch.optim (foreach=False, foreach=True, fused=True) in one process, "
            "interleaved, and report the median step time, the ratio to torch fused (or "
            "foreach where torch has no fused kernel), the fraction of the memory roofline "
            "and the extra memory of a step."
        ),
    )
    parser.add_argument("--optimizer", "-o", action="append", type=_optimizer_name,
                        metavar="NAME", help="only this optimizer (repeatable): "
                        + ", ".join(OPTIMIZERS) + " (default: all)")
    parser.add_argument("--workload", "-w", action="append", type=_workload, metavar="CxS",
                        help="COUNT tensors of SIZE float32 elements (repeatable), K and M "
                             "suffixes allowed, e.g. 1x16M (default: " + ", ".join(WORKLOADS)
                             + "; with --quick: " + ", ".join(QUICK_WORKLOADS) + ")")
    parser.add_argument("--grads", "-g", action="append", choices=GRAD_MODES,
                        help="gradients new arrays every step, or written in place into the "
                             "existing .grad (repeatable; default: both)")
    parser.add_argument("--steps", "-n", type=int, metavar="N",
                        help="at most N timed steps per contender and cell (default: 100; "
                             "with --quick: 5)")
    parser.add_argument("--min-steps", type=int, metavar="N",
                        help="at least N timed steps per contender, whatever the budget "
                             "(default: 5; with --quick: 3)")
    parser.add_argument("--warmup", type=int, metavar="N",
                        help="untimed steps per contender before timing, the first of which "
                             "allocates the state (default: 3)")
    parser.add_argument("--budget", type=float, metavar="SECONDS",
                        help="seconds per cell (optimizer x workload x grads) after warm-up, "
                             "shared by its contenders, untimed preparation of each step "
                             "included (default: 2; with --quick: 0.2)")
    parser.add_argument("--threads", type=int, default=2, metavar="N",
                        help="torch and numba threads, and threads of the bandwidth "
                             "measurement (default: 2)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cpu: portopt on NumPy vs torch on CPU (default); cuda: portopt "
                             "on CuPy vs torch on CUDA, skipped when either is missing")
    parser.add_argument("--warm-cache", action="store_true",
                        help="do not evict the caches before each timed step (by default an "
                             "untimed pass over a buffer twice the last-level cache does)")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="before each cell, wait up to SECONDS for other processes to "
                             "leave the CPUs alone, and run a cell that still ran beside "
                             "other work once more (default: 0, no waiting)")
    parser.add_argument("--quick", action="store_true",
                        help="small workloads and few steps: a smoke run, not a measurement")
    parser.add_argument("--markdown", metavar="FILE",
                        help="write the Markdown report (machine, bandwidth, tables) to FILE")
    return parser


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    name = parser.prog
    for opt in ("steps", "warmup", "min_steps", "threads"):
        value = getattr(args, opt)
        if value is not None and value < 1:
            parser.error(f"--{opt.replace('_', '-')} must be at least 1, got {value}")
    for opt in ("budget", "wait_quiet"):
        value = getattr(args, opt)
        if value is not None and value < 0:
            parser.error(f"--{opt.replace('_', '-')} must not be negative, got {value}")
    if importlib.util.find_spec("torch") is None:
        print(f"{name}: error: the benchmark needs torch, the other side of the comparison: "
              "pip install torch", file=sys.stderr)
        return 2
    argv_text = " ".join(sys.argv[1:] if argv is None else argv)
    command = f"{'python benchmarks/bench.py' if prog is None else prog} {argv_text}".strip()
    try:
        run(args.optimizer, args.workload, args.grads, steps=args.steps,
            min_steps=args.min_steps, warmup=args.warmup, budget=args.budget,
            threads=args.threads, device=args.device, quick=args.quick,
            wait_quiet=args.wait_quiet, warm_cache=args.warm_cache, markdown=args.markdown,
            command=command)
    except DeviceUnavailable as exc:
        print(f"{name}: --device cuda skipped: {exc}", file=sys.stderr)
        return 0
    except OSError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
