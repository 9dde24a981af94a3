"""Gradient clipping as ``torch.nn.utils`` does it, for parameters of every backend.

:func:`clip_grad_norm_` rescales all gradients together so that their joint norm is at
most ``max_norm``; :func:`clip_grad_value_` clamps each gradient element into
``[-clip_value, clip_value]``. The two halves of :func:`clip_grad_norm_` are public as in
torch 2.13: :func:`get_total_norm` and :func:`clip_grads_with_norm_`.

Parameters are ``portopt.Parameter`` objects (NumPy, CuPy, array-api-strict, ...) or
torch tensors. Gradients change in place on mutable backends, so a model holding a gradient
array sees the clipped values; a gradient that cannot be written (an immutable library,
a read-only array) is replaced by a new array, as ``zero_grad`` does. Nothing imports
torch; a torch tensor is worked on under ``torch.no_grad()``, as torch does.

Differences from torch.nn.utils:
    * Every check runs before any gradient changes. torch's ``clip_grad_value_`` can
      clamp the first gradients of a list before failing on a later complex or sparse
      one; here nothing is clamped.
    * ``foreach`` is accepted and only picks the wording of one error, as in torch (an
      empty gradient under the infinity norm). One path runs on every backend: the
      operations of torch's single-tensor path, which its foreach path on the CPU
      matches. torch's error for ``foreach=True`` on a device without foreach kernels
      is never raised.
    * The per-gradient norms enter the total in the order of the gradients; torch
      groups them by device and dtype first (in an order of its own), so a list that
      mixes dtypes or devices can differ from torch's total in the last bits.
    * With no gradients at all and no parameters to say which backend, the total norm
      is a NumPy float32 0-d array (torch: ``torch.tensor(0.0)``).
    * Sparse gradients raise ``NotImplementedError`` in the norm and the clamp with a
      message of our own; torch raises the same class from ``linalg_vector_norm`` or
      ``clamp`` with its dispatcher's message. :func:`clip_grads_with_norm_` scales
      their values, as torch does.
    * An integer array in a norm raises torch's ``RuntimeError``, naming the dtype as
      the backend does (``int64`` where torch says ``Long``).
"""

from __future__ import annotations

import math
import sys
import types
import warnings
from contextlib import nullcontext
from typing import Any

import array_api_compat
import numpy as np

from .backends import Backend, get_backend
from .optim._params import data_of, is_param, is_sparse, is_torch_tensor, write_into
from .parameter import SparseGrad

__all__ = ["clip_grad_norm", "clip_grad_norm_", "clip_grad_value_", "clip_grads_with_norm_",
           "get_total_norm"]


# -- the math ------------------------------------------------------------------------------


def _norms_total(be: Backend, arrays: list[Any], norm_type: float, foreach: Any) -> Any:
    """The ``norm_type``-norm of the per-array ``norm_type``-norms: the norm of all the
    arrays' elements laid end to end (for ``0 < p``), computed as torch computes it."""
    xp = be.xp
    for a in arrays:
        _check_normable(be, a, norm_type, foreach)
    norms = [xp.asarray(xp.linalg.vector_norm(a, ord=norm_type)) for a in arrays]
    # torch gathers the per-array norms on the first array's device and stacks them,
    # promoting mixed dtypes (a float32 norm next to a float64 one becomes float64).
    first = be.device(arrays[0])
    norms = [n if be.device(n) == first else array_api_compat.to_device(n, first)
             for n in norms]
    dtype = xp.result_type(*norms)
    norms = [n if n.dtype == dtype else xp.astype(n, dtype) for n in norms]
    return xp.asarray(xp.linalg.vector_norm(xp.stack(norms), ord=norm_type))


def _clip_coef(xp: Any, total_norm: Any, max_norm: float) -> Any:
    """``min(max_norm / (total_norm + 1e-6), 1)`` in the total norm's dtype.

    torch evaluates ``max_norm / t`` on a tensor as ``t.reciprocal() * max_norm``, and
    its Python scalars round to the tensor's dtype as the Array API's do; the clamp
    leaves a NaN coefficient NaN. A negative ``max_norm`` flips the gradients, as in
    torch.
    """
    coef = xp.asarray((1.0 / (total_norm + 1e-6)) * max_norm)
    one = xp.asarray(1.0, dtype=coef.dtype, device=array_api_compat.device(coef))
    return xp.minimum(coef, one)


def _scaled(xp: Any, g: Any, coef: Any) -> Any:
    """``g * coef`` with torch's precision for an in-place multiply by a 0-d tensor.

    Against a gradient with dimensions the coefficient does not promote: torch rounds it
    to the gradient's compute type (float64 for float64 and complex128, float32 for the
    rest, half types included) and multiplies there. Two 0-d operands promote as usual.
    """
    if g.ndim > 0:
        want = xp.float64 if g.dtype in (xp.float64, xp.complex128) else xp.float32
        if coef.dtype != want:
            coef = xp.astype(coef, want)
    return g * coef


def _clamped(xp: Any, g: Any, clip_value: float) -> Any:
    """``g`` clamped into ``[-clip_value, clip_value]``, as torch's ``clamp``: NaN stays
    NaN, a negative ``clip_value`` (the bounds crossed) gives ``clip_value`` everywhere,
    and the zeros keep the sign torch gives them (``clip`` does; ``maximum`` need not)."""
    dev = array_api_compat.device(g)
    # the standard leaves clip with crossed bounds unspecified: meet them at the upper one
    low = xp.asarray(min(-clip_value, clip_value), dtype=g.dtype, device=dev)
    high = xp.asarray(clip_value, dtype=g.dtype, device=dev)
    return xp.clip(g, low, high)


# -- checks --------------------------------------------------------------------------------


def _check_normable(be: Backend, a: Any, norm_type: float, foreach: Any) -> None:
    """Raise torch's error for what ``linalg.vector_norm`` refuses."""
    if not (be.is_floating(a) or be.is_complex(a)):
        raise RuntimeError(
            "linalg.vector_norm: Expected a floating point or complex tensor as input. "
            f"Got {be.dtype_name(a.dtype)}"
        )
    if math.prod(a.shape) == 0 and (norm_type < 0 or norm_type == math.inf):
        # max and min have no identity; torch's default (foreach) path words the
        # infinity norm's case its own way
        if norm_type == math.inf and foreach is not False:
            raise RuntimeError(
                "_foreach_norm cannot compute the infinity norm on an empty tensor because "
                "the operation does not have an identity"
            )
        raise RuntimeError(
            f"linalg.vector_norm cannot compute the {norm_type:g} norm on an empty tensor "
            "because the operation does not have an identity"
        )


def _no_sparse(grads: list[Any], what: str) -> None:
    for g in grads:
        if is_sparse(g):
            raise NotImplementedError(
                f"{what} does not support sparse gradients: torch has no sparse kernel for "
                "it either (densify the gradient first)"
            )


def _one_backend(arrays: list[Any], fn: str) -> Backend:
    """The backend all ``arrays`` share; a ``TypeError`` naming two of them otherwise."""
    be = get_backend(arrays[0])
    for a in arrays[1:]:
        other = get_backend(a)
        if type(other) is not type(be):
            raise TypeError(
                f"{fn} needs arrays of one backend, but got {be.name} and {other.name} "
                "arrays in one call"
            )
    return be


def _dense(g: Any) -> Any:
    """The array holding a gradient's values (a ``SparseGrad``'s ``values``)."""
    return g.values if isinstance(g, SparseGrad) else g


# -- gathering parameters ------------------------------------------------------------------


def _listed(parameters: Any, single: Any) -> list[Any]:
    """``parameters`` as a list; one parameter (``single(parameters)``) is a list of one,
    not an iterable of its rows."""
    return [parameters] if single(parameters) else list(parameters)


def _grad_of(p: Any) -> Any:
    try:
        return p.grad
    except AttributeError:
        if array_api_compat.is_array_api_obj(p) and not is_torch_tensor(p):
            raise AttributeError(
                f"'{type(p).__name__}' object has no attribute 'grad': give an array a "
                "gradient by wrapping it in portopt.Parameter"
            ) from None
        raise


def _with_grads(params: list[Any]) -> list[tuple[Any, Any]]:
    """``(parameter, gradient)`` for the parameters that have a gradient, read once."""
    pairs = []
    for p in params:
        g = _grad_of(p)
        if g is not None:
            pairs.append((p, g))
    return pairs


def _zero(params: list[Any]) -> Any:
    """The total norm of no gradients: torch's ``torch.tensor(0.0)``, a host scalar of the
    default float dtype, here in the first parameter's backend (NumPy without one)."""
    try:
        be = get_backend(data_of(params[0]))
    except (IndexError, TypeError):  # no parameters, or duck-typed ones
        return np.asarray(0.0, dtype=np.float32)
    # step_scalar is the backend's host float of torch's default dtype
    return be.xp.asarray(0.0, dtype=be.step_scalar(0.0).dtype)


def _autograd_off(example: Any) -> Any:
    """torch runs these utilities under ``no_grad``; nothing to switch off elsewhere."""
    return sys.modules["torch"].no_grad() if is_torch_tensor(example) else nullcontext()


def _write(be: Backend, p: Any, g: Any, new: Any) -> None:
    """Store a gradient's new values in place, or rebind them where they cannot be
    written (the same rule as ``Optimizer.zero_grad``)."""
    target = _dense(g)
    if be.mutable and be.is_writable(target):
        write_into(target, new)
        return
    if new.dtype != target.dtype:
        new = be.xp.astype(new, target.dtype)
    if isinstance(g, SparseGrad):
        g.values = new
    else:
        p.grad = new


# -- the public functions ------------------------------------------------------------------


def get_total_norm(tensors: Any, norm_type: float = 2.0, error_if_nonfinite: bool = False,
                   foreach: bool | None = None) -> Any:
    """The norm of several arrays taken together, as ``torch.nn.utils.get_total_norm``.

    The ``norm_type``-norm of each array, then the ``norm_type``-norm of those norms:
    for ``p > 0`` the norm of all elements laid end to end.

    Args:
        tensors: an array or an iterable of arrays of one backend (a ``Parameter``
            counts as its ``.data``); usually the gradients.
        norm_type: the order ``p`` of the norm: any float, ``inf`` (largest magnitude),
            ``-inf`` (smallest), ``0`` (count of nonzeros). Strings such as ``"inf"``
            are read with ``float()`` as torch reads them. Default 2.
        error_if_nonfinite: raise when the total is NaN or infinite. Default ``False``.
        foreach: accepted for torch compatibility; the computation is the same either
            way.

    Returns:
        A 0-d array of the arrays' backend and device (of the first array's device),
        in their promoted dtype (real for complex arrays). No arrays: a 0-d float32
        zero (NumPy's).

    Raises:
        RuntimeError: ``error_if_nonfinite`` and a non-finite total; an empty array
            under ``inf``, ``-inf`` or a negative order; an integer array (torch's
            messages).
        NotImplementedError: a sparse array.
        TypeError: arrays of different backends.
    """
    arrays = [data_of(t) for t in _listed(
        tensors, lambda x: is_param(x) or isinstance(x, SparseGrad)
        or array_api_compat.is_array_api_obj(x))]
    norm_type = float(norm_type)
    if not arrays:
        return _zero([])
    _no_sparse(arrays, "get_total_norm")
    be = _one_backend(arrays, "get_total_norm")
    with _autograd_off(arrays[0]):
        total = _norms_total(be, arrays, norm_type, foreach)
        if error_if_nonfinite and not bool(be.xp.isfinite(total)):
            raise RuntimeError(
                f"The total norm of order {norm_type} for gradients from `parameters` is "
                "non-finite, so it cannot be clipped. To disable this error and scale the "
                "gradients by the non-finite norm anyway, set `error_if_nonfinite=False`"
            )
    return total


def clip_grads_with_norm_(parameters: Any, max_norm: float, total_norm: Any,
                          foreach: bool | None = None) -> None:
    """Scale gradients in place by ``min(max_norm / (total_norm + 1e-6), 1)``, as
    ``torch.nn.utils.clip_grads_with_norm_``.

    The second half of :func:`clip_grad_norm_`, for a total norm computed beforehand
    (by :func:`get_total_norm`, possibly over more gradients than these). The
    coefficient is computed in ``total_norm``'s dtype and is never above 1, so
    gradients only ever shrink.

    Args:
        parameters: a parameter or an iterable of parameters (``portopt.Parameter`` or
            torch tensors); those without a gradient are skipped.
        max_norm: the largest total norm left after clipping.
        total_norm: a 0-d array of the gradients' backend.
        foreach: accepted for torch compatibility; the computation is the same either
            way.

    Sparse gradients (``portopt.SparseGrad``, sparse torch tensors) have their values
    scaled, as torch scales them.

    Raises:
        TypeError: ``total_norm`` is not an array, or is one of another backend than the
            gradients; gradients of different backends.
    """
    params = _listed(parameters, is_param)
    pairs = _with_grads(params)
    max_norm = float(max_norm)
    if not pairs:
        return
    if not array_api_compat.is_array_api_obj(total_norm):
        raise TypeError(
            "clip_grads_with_norm_ expects total_norm to be a 0-d array of the gradients' "
            f"backend (as get_total_norm returns it), got {type(total_norm).__name__}"
        )
    be = _one_backend([_dense(g) for _, g in pairs] + [total_norm], "clip_grads_with_norm_")
    with _autograd_off(total_norm):
        _scale_all(be, pairs, _clip_coef(be.xp, total_norm, max_norm))


def _scale_all(be: Backend, pairs: list[tuple[Any, Any]], coef: Any) -> None:
    xp = be.xp
    for p, g in pairs:
        values = _dense(g)
        dev = be.device(values)
        c = coef if array_api_compat.device(coef) == dev else array_api_compat.to_device(coef, dev)
        _write(be, p, g, _scaled(xp, values, c))


def clip_grad_norm_(parameters: Any, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False, foreach: bool | None = None) -> Any:
    r"""Rescale gradients together so that their total norm is at most ``max_norm``, as
    ``torch.nn.utils.clip_grad_norm_``.

    .. math::
        \begin{align*}
        n &= \Big\| \big(\|g_1\|_p, \dots, \|g_k\|_p\big) \Big\|_p \\
        g_i &\leftarrow g_i \cdot \min\!\Big(\frac{\text{max\_norm}}{n + 10^{-6}},\ 1\Big)
        \end{align*}

    :func:`get_total_norm` of the gradients followed by :func:`clip_grads_with_norm_`.

    Args:
        parameters: a parameter or an iterable of parameters (``portopt.Parameter`` or
            torch tensors); those without a gradient are skipped.
        max_norm: the largest total norm left after clipping.
        norm_type: the order ``p``; see :func:`get_total_norm`. Default 2.
        error_if_nonfinite: raise, before changing anything, when the total norm is NaN
            or infinite. Default ``False`` (the gradients are then scaled by the
            non-finite norm, as in torch).
        foreach: accepted for torch compatibility; the computation is the same either
            way.

    Returns:
        The total norm before clipping: a 0-d array of the gradients' backend (a torch
        tensor for torch parameters). Without gradients, torch's float32 zero in the
        first parameter's backend.

    Raises:
        RuntimeError, NotImplementedError, TypeError: as :func:`get_total_norm`, and
        nothing has changed when they are raised.

    Warns:
        UserWarning: ``parameters`` is an empty generator (torch's warning).

    Example:
        >>> import numpy as np, portopt
        >>> w = portopt.Parameter(np.zeros(2))
        >>> w.grad = np.array([3.0, 4.0])
        >>> float(portopt.utils.clip_grad_norm_([w], max_norm=1.0))
        5.0
        >>> w.grad.round(6).tolist()
        [0.6, 0.8]
    """
    if is_param(parameters):
        params = [parameters]
    else:
        is_generator = isinstance(parameters, types.GeneratorType)
        params = list(parameters)  # read once: a generator is needed twice
        if is_generator and not params:
            warnings.warn("`parameters` is an empty generator, no gradient clipping will occur.",
                          stacklevel=2)
    pairs = _with_grads(params)
    grads = [g for _, g in pairs]
    norm_type = float(norm_type)
    if not grads:
        float(max_norm)  # torch still reads it
        return _zero(params)
    _no_sparse(grads, "clip_grad_norm_")
    be = _one_backend(grads, "clip_grad_norm_")
    total = get_total_norm(grads, norm_type, error_if_nonfinite, foreach)
    max_norm = float(max_norm)
    with _autograd_off(total):
        _scale_all(be, pairs, _clip_coef(be.xp, total, max_norm))
    return total


def clip_grad_norm(parameters: Any, max_norm: float, norm_type: float = 2.0,
                   error_if_nonfinite: bool = False, foreach: bool | None = None) -> Any:
    """Deprecated alias of :func:`clip_grad_norm_`, kept because torch keeps it.

    Warns:
        FutureWarning: on every call, as torch's does.
    """
    warnings.warn("`portopt.utils.clip_grad_norm` is now deprecated in favor of "
                  "`portopt.utils.clip_grad_norm_`.", FutureWarning, stacklevel=2)
    return clip_grad_norm_(parameters, max_norm, norm_type, error_if_nonfinite, foreach)


def clip_grad_value_(parameters: Any, clip_value: float, foreach: bool | None = None) -> None:
    """Clamp every gradient element into ``[-clip_value, clip_value]`` in place, as
    ``torch.nn.utils.clip_grad_value_``.

    Args:
        parameters: a parameter or an iterable of parameters (``portopt.Parameter`` or
            torch tensors); those without a gradient are skipped.
        clip_value: the bound, read with ``float()``. NaN elements stay NaN.
        foreach: accepted for torch compatibility; the computation is the same either
            way.

    Raises:
        NotImplementedError: a complex or sparse gradient (torch's clamp has neither).
        TypeError: gradients of different backends.
        Nothing has changed when these are raised.
    """
    clip_value = float(clip_value)
    params = _listed(parameters, is_param)
    pairs = _with_grads(params)
    if not pairs:
        return
    grads = [g for _, g in pairs]
    _no_sparse(grads, "clip_grad_value_")
    be = _one_backend(grads, "clip_grad_value_")
    if any(be.is_complex(g) for g in grads):
        raise NotImplementedError("clamp is not supported for complex types")
    with _autograd_off(grads[0]):
        for p, g in pairs:
            _write(be, p, g, _clamped(be.xp, g, clip_value))
