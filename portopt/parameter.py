"""Parameters and sparse gradients for arrays that are not torch tensors.

A torch tensor already carries ``.grad``; any other array is wrapped in a
:class:`Parameter`, which holds the live array in ``.data`` and the gradient in
``.grad``. Optimizers write new values into ``.data`` in place, so a model that holds
the array sees the new weights.
"""

from __future__ import annotations

import math
from typing import Any

from .backends import get_backend

__all__ = ["Parameter", "SparseGrad"]


class Parameter:
    """A trainable array with a gradient slot, like ``torch.nn.Parameter``.

    Args:
        data: the array to optimize, of any supported backend (NumPy, CuPy,
            array-api-strict, torch, or one added with ``register_backend``). It is
            kept as is, not copied: optimizers update it in place on mutable backends
            and rebind ``.data`` only for immutable ones.

    Attributes:
        data: the live array.
        grad: ``None``, an array of the same backend, device, shape and dtype as
            ``data``, or a :class:`SparseGrad`. Assigning anything else raises, as
            torch's ``.grad`` setter does.

    Example:
        >>> import numpy as np, portopt
        >>> w = portopt.Parameter(np.zeros(3))
        >>> w.grad = np.ones(3)
        >>> w.shape, w.dtype
        ((3,), dtype('float64'))
    """

    __slots__ = ("data", "_grad", "__weakref__")

    def __init__(self, data: Any) -> None:
        if isinstance(data, (Parameter, SparseGrad)):
            raise TypeError(f"Parameter expects an array, got a {type(data).__name__}")
        get_backend(data)  # raises TypeError naming an unsupported array type
        self.data = data
        self._grad = None

    @property
    def grad(self) -> Any:
        return self._grad

    @grad.setter
    def grad(self, value: Any) -> None:
        if value is not None:
            _check_grad(self.data, value)
        self._grad = value

    @grad.deleter
    def grad(self) -> None:
        self._grad = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> Any:
        return self.data.dtype

    @property
    def device(self) -> Any:
        return get_backend(self.data).device(self.data)

    @property
    def ndim(self) -> int:
        return len(self.data.shape)

    @property
    def size(self) -> int:
        return math.prod(self.data.shape)

    def __repr__(self) -> str:
        return f"Parameter containing:\n{self.data!r}"


def _check_grad(param: Any, grad: Any) -> None:
    """Raise as torch's ``.grad`` setter does when ``grad`` cannot belong to ``param``."""
    if isinstance(grad, SparseGrad):
        shape, dtype, grad_data = grad.shape, grad.dtype, grad.values
    else:
        try:
            get_backend(grad)
        except TypeError:
            raise TypeError(
                "assigned grad expected to be an array or None but got grad of type "
                f"{type(grad).__name__}"
            ) from None
        shape, dtype, grad_data = tuple(grad.shape), grad.dtype, grad
    pbe, gbe = get_backend(param), get_backend(grad_data)
    if type(pbe) is not type(gbe):
        raise TypeError(
            f"assigned grad is a {gbe.name} array but the parameter is a {pbe.name} "
            "array; the gradient must come from the parameter's backend"
        )
    if shape != tuple(param.shape):
        raise RuntimeError(
            f"attempting to assign a gradient of size '{list(shape)}' to a tensor of size "
            f"'{list(param.shape)}'. Please ensure that the gradient and the tensor are "
            "the same size"
        )
    if dtype != param.dtype:
        raise RuntimeError(
            f"attempting to assign a gradient with dtype '{pbe.dtype_name(dtype)}' to a "
            f"parameter with dtype '{pbe.dtype_name(param.dtype)}'. The gradient must "
            "match the parameter's dtype"
        )
    gdev, pdev = gbe.device(grad_data), pbe.device(param)
    if gdev != pdev:
        raise RuntimeError(
            f"attempting to assign a gradient on device '{gdev}' to a parameter on device "
            f"'{pdev}'. Please ensure that the gradient and the tensor are on the same device"
        )


class SparseGrad:
    """A sparse COO gradient, laid out as torch's ``sparse_coo_tensor``.

    Args:
        indices: integer array of shape ``(sparse_dims, nnz)``; column ``k`` holds the
            coordinates of the ``k``-th stored value. Duplicates are allowed and mean
            the sum of their values, as in torch.
        values: array of shape ``(nnz, *dense_dims)``, of the parameter's backend.
        shape: the full shape, ``sparse_dims + dense_dims`` entries long.
        check_invariants: check that every index lies inside ``shape`` (reads the
            indices; on a GPU this waits for them). Default ``True``.

    Raises:
        RuntimeError: with torch's messages, when the three do not fit together.
        TypeError: when ``indices`` is not an integer array, or the two arrays come
            from different backends.
    """

    __slots__ = ("indices", "values", "shape")

    def __init__(self, indices: Any, values: Any, shape: Any, *,
                 check_invariants: bool = True) -> None:
        ibe, vbe = get_backend(indices), get_backend(values)
        if type(ibe) is not type(vbe):
            raise TypeError(
                f"SparseGrad indices are a {ibe.name} array but values are a {vbe.name} "
                "array; both must come from the same backend"
            )
        if not ibe.xp.isdtype(indices.dtype, "integral"):
            raise TypeError(
                f"SparseGrad indices must be an integer array, got {ibe.dtype_name(indices.dtype)}"
            )
        if ibe.device(indices) != vbe.device(values):
            raise RuntimeError(
                f"SparseGrad indices are on device '{ibe.device(indices)}' but values are on "
                f"device '{vbe.device(values)}'"
            )
        shape = tuple(int(n) for n in shape)
        if len(indices.shape) != 2:
            raise RuntimeError(
                f"indices must be sparse_dim x nnz, but got: {list(indices.shape)}"
            )
        sparse_dim, nnz = indices.shape
        if len(values.shape) < 1:
            raise RuntimeError("values must have at least one dimension (nnz)")
        dense_dim = len(values.shape) - 1
        if values.shape[0] != nnz:
            raise RuntimeError(
                "indices and values must have same nnz, but got nnz from indices: "
                f"{nnz}, nnz from values: {values.shape[0]}"
            )
        if len(shape) != sparse_dim + dense_dim:
            raise RuntimeError(
                "'len(size) == sparse_dim + dense_dim' is not satisfied: len(size) = "
                f"{len(shape)}, sparse_dim = {sparse_dim}, dense_dim = {dense_dim}"
            )
        if tuple(values.shape[1:]) != shape[sparse_dim:]:
            raise RuntimeError(
                f"values has incorrect size, expected {[nnz, *shape[sparse_dim:]]}, "
                f"got {list(values.shape)}"
            )
        if any(n < 0 for n in shape):
            raise RuntimeError(f"SparseGrad shape must be non-negative, got {list(shape)}")
        if check_invariants and nnz:
            xp = ibe.xp
            for d in range(sparse_dim):
                row = indices[d, :]
                low, high = int(xp.min(row)), int(xp.max(row))
                if low < 0:
                    raise RuntimeError(f"found negative index {low} for dim {d}")
                if high >= shape[d]:
                    raise RuntimeError(
                        f"size is inconsistent with indices: for dim {d}, size is "
                        f"{shape[d]} but found index {high}"
                    )
        self.indices = indices
        self.values = values
        self.shape = shape

    @property
    def dtype(self) -> Any:
        return self.values.dtype

    @property
    def device(self) -> Any:
        return get_backend(self.values).device(self.values)

    @property
    def nnz(self) -> int:
        return int(self.indices.shape[1])

    @property
    def sparse_dim(self) -> int:
        return int(self.indices.shape[0])

    @property
    def dense_dim(self) -> int:
        return len(self.values.shape) - 1

    def __repr__(self) -> str:
        return (f"SparseGrad(indices={self.indices!r}, values={self.values!r}, "
                f"shape={self.shape})")


def flat_parameters(arrays: Any, *, grads: bool = False) -> list[Parameter]:
    """Parameters holding copies of ``arrays``, laid back to back in one new flat buffer.

    Each parameter's ``.data`` is a view of the buffer with its array's shape, so a model
    holding the parameters' arrays sees every update, and the NumPy fast path steps the
    whole buffer as one flat array: in chunks that may span parameters (compiled
    kernels), or without gathering and writing back the parameters (without numba).
    All arrays must share one backend and dtype.

    With ``grads=True`` each parameter also gets a zero ``.grad``, a view of a second
    flat buffer laid out alike: code that writes its gradients into those arrays in place
    (``p.grad[...] = g``) hands the fast path one flat gradient array, which it then
    reads where it is instead of gathering the gradients into one.

    Args:
        arrays: the initial values, arrays of one mutable backend (NumPy, CuPy, torch).
        grads: also lay out zero gradients in a flat buffer of their own.

    Returns:
        One :class:`Parameter` per array, in order.
    """
    from .backends import get_backend

    arrays = list(arrays)
    if not arrays:
        return []
    be = get_backend(arrays[0])
    xp, dtype = be.xp, arrays[0].dtype
    for a in arrays:
        if type(get_backend(a)) is not type(be) or a.dtype != dtype:
            raise TypeError("flat_parameters needs arrays of one backend and dtype, got "
                            f"{be.name} {dtype} and {get_backend(a).name} {a.dtype}")
    sizes = [math.prod(a.shape) for a in arrays]
    device = be.device(arrays[0])
    flat = xp.empty(sum(sizes), dtype=dtype, device=device)
    flat_grads = xp.zeros(sum(sizes), dtype=dtype, device=device) if grads else None
    params, start = [], 0
    for a, n in zip(arrays, sizes):
        view = xp.reshape(flat[start:start + n], a.shape)
        view[...] = a
        params.append(Parameter(view))
        if flat_grads is not None:
            params[-1].grad = xp.reshape(flat_grads[start:start + n], a.shape)
        start += n
    return params
