"""portopt.Parameter and portopt.SparseGrad: a wrapper and a validated container."""

from __future__ import annotations

import numpy as np
import pytest

import portopt
from portopt import Parameter, SparseGrad


def test_parameter_exposes_the_live_array():
    a = np.zeros((2, 3), dtype=np.float32)
    p = Parameter(a)
    assert p.data is a
    assert p.shape == (2, 3) and p.dtype == np.float32 and p.ndim == 2 and p.size == 6
    assert str(p.device) == "cpu"
    assert p.grad is None
    assert "Parameter containing" in repr(p)


def test_parameter_rejects_non_arrays():
    with pytest.raises(TypeError, match="portopt has no backend for arrays of type builtins.list"):
        Parameter([1.0, 2.0])
    with pytest.raises(TypeError, match="Parameter expects an array"):
        Parameter(Parameter(np.zeros(1)))


def test_grad_accepts_matching_arrays_and_none(lib):
    p = lib.param(np.zeros(3))
    if not isinstance(p, Parameter):
        pytest.skip("torch tensors carry their own .grad")
    g = lib.asarray(np.ones(3))
    p.grad = g
    assert p.grad is g
    p.grad = None
    assert p.grad is None
    p.grad = g
    del p.grad
    assert p.grad is None


# The first message is torch's own (tensor.grad = ... of the wrong size); the others are
# portopt's, since torch has no other backends and names dtypes differently.
@pytest.mark.parametrize("grad, exc, message", [
    (np.zeros(3), RuntimeError,
     "attempting to assign a gradient of size '[3]' to a tensor of size '[2]'. Please ensure "
     "that the gradient and the tensor are the same size"),
    (np.zeros((2, 1)), RuntimeError,
     "attempting to assign a gradient of size '[2, 1]' to a tensor of size '[2]'."),
    (np.zeros(2, dtype=np.float32), RuntimeError,
     "attempting to assign a gradient with dtype 'float32' to a parameter with dtype 'float64'"),
    ([0.0, 0.0], TypeError,
     "assigned grad expected to be an array or None but got grad of type list"),
])
def test_grad_rejects_what_cannot_belong_to_the_parameter(grad, exc, message):
    p = Parameter(np.zeros(2))
    with pytest.raises(exc) as info:
        p.grad = grad
    assert str(info.value).startswith(message)
    assert p.grad is None


def test_torch_uses_the_same_size_message(torch):
    t = torch.zeros(2)
    with pytest.raises(RuntimeError) as info:
        t.grad = torch.zeros(3)
    p = Parameter(np.zeros(2))
    with pytest.raises(RuntimeError) as ours:
        p.grad = np.zeros(3)
    assert str(ours.value) == str(info.value)


def test_grad_of_another_backend_is_rejected(torch):
    p = Parameter(np.zeros(2))
    with pytest.raises(TypeError, match="assigned grad is a torch array but the parameter is a "
                                        "numpy array"):
        p.grad = torch.zeros(2, dtype=torch.float64)


def test_grad_on_another_device_is_rejected():
    xs = pytest.importorskip("array_api_strict")
    p = Parameter(xs.zeros(2))
    with pytest.raises(RuntimeError, match="gradient on device .*device1.* to a parameter on device"):
        p.grad = xs.zeros(2, device=xs.Device("device1"))


# -- SparseGrad ---------------------------------------------------------------------------

def test_sparse_grad_holds_coo_parts():
    idx = np.array([[0, 2, 2]])
    vals = np.ones((3, 4))
    g = SparseGrad(idx, vals, (5, 4))
    assert g.shape == (5, 4) and g.nnz == 3 and g.sparse_dim == 1 and g.dense_dim == 1
    assert g.dtype == np.float64 and str(g.device) == "cpu"
    p = Parameter(np.zeros((5, 4)))
    p.grad = g  # a sparse grad of the parameter's shape and dtype is accepted
    assert p.grad is g


# (indices, values, shape) -> torch's message for torch.sparse_coo_tensor(..., check_invariants=True)
BAD_SPARSE = [
    ([[0, 1, 5]], [1.0, 1.0, 1.0], (2,), "size is inconsistent with indices: for dim 0, size is 2 but found index 5"),
    ([[0, 1, -1]], [1.0, 1.0, 1.0], (2,), "found negative index -1 for dim 0"),
    ([0, 1, 1], [1.0, 1.0, 1.0], (2,), "indices must be sparse_dim x nnz, but got: [3]"),
    ([[0, 1]], [1.0, 1.0, 1.0], (2,), "indices and values must have same nnz, but got nnz from indices: 2, nnz from values: 3"),
    ([[0, 1, 1]], np.ones((3, 2)).tolist(), (2, 3), "values has incorrect size, expected [3, 3], got [3, 2]"),
    ([[0, 1, 1]], np.ones((3, 2)).tolist(), (2,), "'len(size) == sparse_dim + dense_dim' is not satisfied: len(size) = 1, sparse_dim = 1, dense_dim = 1"),
]


@pytest.mark.parametrize("indices, values, shape, message", BAD_SPARSE)
def test_sparse_grad_validation_uses_torch_messages(indices, values, shape, message):
    with pytest.raises(RuntimeError) as info:
        SparseGrad(np.array(indices), np.array(values), shape)
    assert str(info.value) == message


@pytest.mark.parametrize("indices, values, shape, message", BAD_SPARSE)
def test_sparse_grad_messages_match_torch(torch, indices, values, shape, message):
    with pytest.raises(RuntimeError) as info:
        torch.sparse_coo_tensor(torch.tensor(indices), torch.tensor(values), shape,
                                check_invariants=True)
    assert str(info.value) == message


def test_sparse_grad_type_errors():
    with pytest.raises(TypeError, match="indices must be an integer array, got float64"):
        SparseGrad(np.array([[0.0]]), np.ones(1), (1,))
    xs = pytest.importorskip("array_api_strict")
    with pytest.raises(TypeError, match="indices are a numpy array but values are a "
                                        "array_api_strict array"):
        SparseGrad(np.array([[0]]), xs.ones(1), (1,))


def test_sparse_grad_of_the_wrong_shape_is_rejected_as_a_grad():
    p = Parameter(np.zeros((3, 4)))
    with pytest.raises(RuntimeError, match="gradient of size '\\[5, 4\\]' to a tensor of size"):
        p.grad = SparseGrad(np.array([[0]]), np.ones((1, 4)), (5, 4))


def test_portopt_exports():
    assert portopt.Parameter is Parameter and portopt.SparseGrad is SparseGrad
