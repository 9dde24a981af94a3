"""SparseAdam: the kernel on every backend, and the class against torch.optim.SparseAdam.

Hand-derived steps use ``beta1 = 0.5``, ``beta2 = 0.75`` and gradients of magnitude 2,
so that every intermediate (moments, square roots, bias corrections) is exact.
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest
from helpers import check_result, outcome

import portopt
from portopt import SparseGrad
from portopt.optim.sparse_adam import SparseAdam, SparseAdamState, sparse_adam, sparse_adam_init

DTYPES = ["float32", "float64"]
HAND = {"lr": 0.25, "beta1": 0.5, "beta2": 0.75, "eps": 1.0}
DENSE_GRAD = "SparseAdam does not support dense gradients, please consider Adam instead"

# rows 0 and 2 are stored; row 2 twice, so its values are summed: both become [2, -2]
INDICES = [[2, 0, 2]]
VALUES = [[0.5, -3.0], [2.0, -2.0], [1.5, 1.0]]
PARAM = [[1.0, 1.0], [5.0, 5.0], [-1.0, 3.0]]


def _grad(lib, indices, values, shape, dtype):
    """A sparse COO gradient in the backend's own form."""
    indices, values = lib.asarray(indices, "int64"), lib.asarray(values, dtype)
    if lib.name.startswith("torch"):
        return lib.mod.sparse_coo_tensor(indices, values, shape, check_invariants=True)
    return SparseGrad(indices, values, shape)


# -- the kernel -----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_first_step_by_hand(lib, dtype):
    p = lib.asarray(PARAM, dtype)
    grad = _grad(lib, INDICES, VALUES, (3, 2), dtype)
    state = sparse_adam_init(p)
    new, st = sparse_adam(p, grad, state, **HAND)
    for out in (new, st.exp_avg, st.exp_avg_sq):
        check_result(out, p)
    # g = ±2 on rows 0 and 2: m = g/2, v = g^2/4 = 1, denom = 1 + eps = 2,
    # step size = 0.25 * sqrt(1 - 0.75) / (1 - 0.5) = 0.25, update = -0.25 * (±1 / 2)
    np.testing.assert_array_equal(lib.numpy(new), [[0.875, 1.125], [5, 5], [-1.125, 3.125]])
    np.testing.assert_array_equal(lib.numpy(st.exp_avg), [[1, -1], [0, 0], [1, -1]])
    np.testing.assert_array_equal(lib.numpy(st.exp_avg_sq), [[1, 1], [0, 0], [1, 1]])
    assert st.step == 1 and type(st.step) is int
    # nothing was mutated
    np.testing.assert_array_equal(lib.numpy(p), PARAM)
    assert not lib.numpy(state.exp_avg).any() and not lib.numpy(state.exp_avg_sq).any()
    assert state.step == 0


def test_maximize_by_hand(lib):
    p = lib.asarray(PARAM, "float64")
    new, st = sparse_adam(p, _grad(lib, INDICES, VALUES, (3, 2), "float64"),
                          sparse_adam_init(p), maximize=True, **HAND)
    np.testing.assert_array_equal(lib.numpy(new), [[1.125, 0.875], [5, 5], [-0.875, 2.875]])
    np.testing.assert_array_equal(lib.numpy(st.exp_avg), [[-1, 1], [0, 0], [-1, 1]])


@pytest.mark.parametrize("dtype", DTYPES)
def test_later_steps_move_only_the_stored_rows(lib, dtype):
    p = lib.asarray(PARAM, dtype)
    p1, s1 = sparse_adam(p, _grad(lib, INDICES, VALUES, (3, 2), dtype), sparse_adam_init(p),
                         **HAND)
    p2, s2 = sparse_adam(p1, _grad(lib, [[1]], [[4.0, -4.0]], (3, 2), dtype), s1, **HAND)
    # row 1 at t = 2: m = 4/2 = 2, v = 16/4 = 4, denom = 2 + 1, eps outside the correction
    step_size = 0.25 * np.sqrt(1 - 0.75**2) / (1 - 0.5**2)
    expected = np.array([[0.875, 1.125], [5 - step_size * 2 / 3, 5 + step_size * 2 / 3],
                         [-1.125, 3.125]])
    np.testing.assert_allclose(lib.numpy(p2), expected, rtol=1e-6)
    np.testing.assert_array_equal(lib.numpy(s2.exp_avg), [[1, -1], [2, -2], [1, -1]])
    np.testing.assert_array_equal(lib.numpy(s2.exp_avg_sq), [[1, 1], [4, 4], [1, 1]])
    assert s2.step == 2
    np.testing.assert_array_equal(lib.numpy(s1.exp_avg), [[1, -1], [0, 0], [1, -1]])


def test_an_empty_gradient_counts_a_step_and_changes_nothing(lib):
    p = lib.asarray(PARAM, "float64")
    _, s1 = sparse_adam(p, _grad(lib, INDICES, VALUES, (3, 2), "float64"),
                        sparse_adam_init(p), **HAND)
    empty = _grad(lib, np.zeros((1, 0)), np.zeros((0, 2)), (3, 2), "float64")
    new, s2 = sparse_adam(p, empty, s1, **HAND)
    assert s2.step == 2
    np.testing.assert_array_equal(lib.numpy(new), PARAM)
    np.testing.assert_array_equal(lib.numpy(s2.exp_avg), lib.numpy(s1.exp_avg))
    np.testing.assert_array_equal(lib.numpy(s2.exp_avg_sq), lib.numpy(s1.exp_avg_sq))


@pytest.mark.parametrize("shape", [(1, 0, 2), (3, 0)])
def test_empty_parameters(lib, shape):
    p = lib.asarray(np.zeros(shape), "float32")
    # (3, 0): a stored row holds no values; (1, 0, 2): nothing can be stored
    nnz = 1 if shape == (3, 0) else 0
    grad = _grad(lib, np.ones((1, nnz)), np.zeros((nnz, *shape[1:])), shape, "float32")
    new, st = sparse_adam(p, grad, sparse_adam_init(p), **HAND)
    check_result(new, p)
    check_result(st.exp_avg, p)
    assert st.step == 1


def test_a_0d_parameter_takes_a_gradient_without_sparse_dimensions(lib):
    p = lib.asarray(1.0, "float64")
    # values 2 and -0.5 sum to g = 1.5: m = 0.75, v = 0.5625, sqrt(v) = 0.75,
    # denom = 0.75 + 0.75, step size 0.25, update -0.25 * 0.5
    grad = _grad(lib, np.zeros((0, 2)), [2.0, -0.5], (), "float64")
    new, st = sparse_adam(p, grad, sparse_adam_init(p), lr=0.25, beta1=0.5, beta2=0.75,
                          eps=0.75)
    check_result(new, p)
    assert float(lib.numpy(new)) == 0.875
    assert float(lib.numpy(st.exp_avg)) == 0.75 and float(lib.numpy(st.exp_avg_sq)) == 0.5625


def test_the_kernel_refuses_a_dense_gradient(lib):
    p = lib.asarray(PARAM, "float64")
    with pytest.raises(TypeError, match="sparse_adam needs a sparse gradient"):
        sparse_adam(p, lib.asarray(PARAM, "float64"), sparse_adam_init(p), **HAND)


# -- against torch.optim.SparseAdam ---------------------------------------------------------

def _torch_grad(torch, indices, values, shape):
    return torch.sparse_coo_tensor(torch.from_numpy(np.asarray(indices, np.int64)),
                                   torch.from_numpy(np.asarray(values)), shape)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sparse_dim", [0, 1, 2])
def test_trajectories_match_torch(lib, torch, dtype, sparse_dim):
    rng = np.random.default_rng(sparse_dim)
    shape = (5, 4, 3)
    start = rng.standard_normal(shape).astype(dtype)
    kw = {"lr": 0.05, "betas": (0.7, 0.95), "eps": 1e-6, "maximize": sparse_dim == 1}
    ref = torch.from_numpy(start.copy()).requires_grad_()
    ref_opt = torch.optim.SparseAdam([ref], **kw)
    ours = lib.param(start)
    opt = SparseAdam([ours], **kw)
    for _ in range(6):
        nnz = 0 if sparse_dim == 0 and _ == 3 else 4  # one empty gradient on the way
        indices = np.array([rng.integers(0, n, nnz) for n in shape[:sparse_dim]],
                           dtype=np.int64).reshape(sparse_dim, nnz)
        indices[:, -1:] = indices[:, :1]  # a repeated entry, summed by coalescing
        values = rng.standard_normal((nnz, *shape[sparse_dim:])).astype(dtype)
        ref.grad = _torch_grad(torch, indices, values, shape)
        ours.grad = _grad(lib, indices, values, shape, dtype)
        ref_opt.step()
        opt.step()
    rtol = 1e-5 if dtype == "float32" else 1e-13
    np.testing.assert_allclose(lib.numpy(ours), ref.detach().numpy(), rtol=rtol, atol=1e-7)
    for key in ("exp_avg", "exp_avg_sq"):
        np.testing.assert_allclose(lib.numpy(opt.state[ours][key]),
                                   ref_opt.state[ref][key].numpy(), rtol=rtol, atol=1e-7)
    assert opt.state[ours]["step"] == ref_opt.state[ref]["step"] == 6


def test_array_hyper_parameters_match_torch(lib, torch):
    start = np.linspace(-1, 1, 12).reshape(4, 3).astype("float32")
    ref = torch.from_numpy(start.copy()).requires_grad_()
    ref_opt = torch.optim.SparseAdam([ref], lr=torch.tensor([0.1]),
                                     betas=(torch.tensor(0.8), torch.tensor(0.9, dtype=torch.float64)))
    ours = lib.param(start)
    opt = SparseAdam([ours], lr=lib.asarray([0.1], "float32"),
                     betas=(lib.asarray(0.8, "float32"), lib.asarray(0.9, "float64")))
    for t in range(4):
        indices, values = [[t % 4, 1, 1]], np.full((3, 3), 0.5 + t, dtype="float32")
        ref.grad = _torch_grad(torch, indices, values, (4, 3))
        ours.grad = _grad(lib, indices, values, (4, 3), "float32")
        ref_opt.step()
        opt.step()
    np.testing.assert_allclose(lib.numpy(ours), ref.detach().numpy(), rtol=1e-6)


def test_signature_and_defaults_are_torchs(torch):
    def shape(cls):  # names, kinds and defaults; the annotations are each library's own
        return [(a.name, a.kind, a.default) for a in inspect.signature(cls).parameters.values()]

    assert shape(SparseAdam) == shape(torch.optim.SparseAdam)
    p = portopt.Parameter(np.zeros(2))
    assert SparseAdam([p]).defaults == torch.optim.SparseAdam(
        [torch.zeros(2, requires_grad=True)]).defaults


def test_sparse_and_complex_params_are_refused_as_in_torch(torch):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sparse = torch.sparse_coo_tensor(torch.tensor([[0]]), torch.tensor([1.0]), (3,))
    dense = torch.zeros(2, requires_grad=True)
    cplx = torch.zeros(2, dtype=torch.complex64, requires_grad=True)
    for params in ([dense, sparse], [{"params": [dense]}, {"params": [cplx, sparse]}],
                   [{"params": [dense]}, {"params": [torch.zeros(1), cplx]}]):
        expected = outcome(torch.optim.SparseAdam, params)
        assert expected is not None and expected[0] is ValueError
        assert outcome(SparseAdam, params) == expected
    numpy_params = [portopt.Parameter(np.zeros(2)), portopt.Parameter(np.zeros(2, complex))]
    assert outcome(SparseAdam, numpy_params) == (
        ValueError, "Complex params at indices [[0, 1]]: SparseAdam does not support complex "
                    "parameters")


class _Kind:
    """Parameters, arrays and sparse gradients of NumPy or torch (what ``_grad`` needs)."""

    def __init__(self, name):
        self.name = name
        self.mod = pytest.importorskip(name)

    def asarray(self, a, dtype=None):
        a = np.array(a, dtype=dtype)
        return self.mod.from_numpy(a) if self.name == "torch" else a

    def param(self, a):
        arr = self.asarray(a, "float64")
        return arr if self.name == "torch" else portopt.Parameter(arr)

    def numpy(self, x):
        x = x.data if isinstance(x, portopt.Parameter) else x
        return x.detach().numpy() if self.name == "torch" else x


@pytest.fixture(params=["torch.optim", "portopt[torch]", "portopt[numpy]"])
def impl(request):
    """SparseAdam and its kind of arrays: torch's, and portopt's on torch and NumPy; the
    same assertions hold for all three."""
    kind = _Kind("numpy" if request.param == "portopt[numpy]" else "torch")
    if request.param == "torch.optim":
        return kind.mod.optim.SparseAdam, kind
    return SparseAdam, kind


def test_dense_gradient_raises_before_anything_changes(impl):
    cls, lib = impl
    p, q = lib.param(PARAM), lib.param([1.0, 2.0])
    opt = cls([p, q], lr=0.1)
    p.grad = _grad(lib, INDICES, VALUES, (3, 2), "float64")
    q.grad = lib.asarray([1.0, 1.0])
    with pytest.raises(RuntimeError) as info:
        opt.step()
    assert str(info.value) == DENSE_GRAD
    if cls is SparseAdam:  # torch has already counted the first parameter's step
        assert not opt.state
        np.testing.assert_array_equal(lib.numpy(p), PARAM)


def test_state_is_lazy_and_step_is_a_python_int(impl):
    cls, lib = impl
    p, idle = lib.param(PARAM), lib.param([1.0])
    opt = cls([p, idle], lr=0.1)
    assert not opt.state
    p.grad = _grad(lib, INDICES, VALUES, (3, 2), "float64")
    opt.step()
    assert set(opt.state[p]) == {"step", "exp_avg", "exp_avg_sq"}
    assert idle not in opt.state
    p.grad = _grad(lib, np.zeros((1, 0)), np.zeros((0, 2)), (3, 2), "float64")
    opt.step()  # an empty gradient: the step still counts
    step = opt.state_dict()["state"][0]["step"]
    assert step == 2 and type(step) is int


def test_step_with_a_closure_returns_its_loss(impl):
    cls, lib = impl
    p = lib.param(PARAM)
    opt = cls([p], lr=0.1)

    def closure():
        p.grad = _grad(lib, INDICES, VALUES, (3, 2), "float64")
        return 3.5

    assert opt.step(closure) == 3.5
    assert opt.state[p]["step"] == 1


def test_state_dict_round_trips_with_torch(torch):
    from portopt.checkpoint import to_torch

    grads = [([[0, 2, 0]], np.array([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]])),
             ([[1]], np.array([[-2.0, 4.0]])), ([[2, 1]], np.array([[1.0, 1.0], [2.0, 0.0]]))]

    def run(opt, param, make_grad, part):
        for indices, values in part:
            param.grad = make_grad(indices, values)
            opt.step()

    np_grad = lambda i, v: SparseGrad(np.asarray(i), v, (3, 2))  # noqa: E731
    t_grad = lambda i, v: _torch_grad(torch, i, v, (3, 2))  # noqa: E731
    whole = portopt.Parameter(np.array(PARAM))
    whole_opt = SparseAdam([whole], lr=0.1, betas=(0.6, 0.9))
    run(whole_opt, whole, np_grad, grads)

    half = portopt.Parameter(np.array(PARAM))
    half_opt = SparseAdam([half], lr=0.1, betas=(0.6, 0.9))
    run(half_opt, half, np_grad, grads[:1])
    # portopt -> portopt, portopt -> torch and torch -> portopt, then finish the run
    again = portopt.Parameter(half.data.copy())
    again_opt = SparseAdam([again], lr=1.0)
    again_opt.load_state_dict(half_opt.state_dict())
    ref = torch.from_numpy(half.data.copy()).requires_grad_()
    ref_opt = torch.optim.SparseAdam([ref], lr=1.0)
    ref_opt.load_state_dict(to_torch(half_opt.state_dict()))
    assert ref_opt.param_groups[0]["betas"] == (0.6, 0.9) and ref_opt.state[ref]["step"] == 1
    run(again_opt, again, np_grad, grads[1:2])
    run(ref_opt, ref, t_grad, grads[1:2])
    back = portopt.Parameter(ref.detach().numpy().copy())
    back_opt = SparseAdam([back], lr=1.0)
    back_opt.load_state_dict(ref_opt.state_dict())
    assert back_opt.state[back]["step"] == 2 and type(back_opt.state[back]["step"]) is int
    run(again_opt, again, np_grad, grads[2:])
    run(back_opt, back, np_grad, grads[2:])
    for p, opt in ((again, again_opt), (back, back_opt)):
        np.testing.assert_allclose(p.data, whole.data, rtol=1e-13)
        for key in ("exp_avg", "exp_avg_sq"):
            np.testing.assert_allclose(opt.state[p][key], whole_opt.state[whole][key], rtol=1e-13)
        assert opt.state[p]["step"] == 3


def test_a_complex_parameter_added_later_raises_at_step():
    # portopt only: torch checks the constructor's groups and would step it in complex
    p = portopt.Parameter(np.array(PARAM))
    opt = SparseAdam([p], lr=0.1)
    c = portopt.Parameter(np.zeros(3, complex))
    opt.add_param_group({"params": [c]})
    p.grad = SparseGrad(np.array(INDICES), np.array(VALUES), (3, 2))
    c.grad = SparseGrad(np.array([[0]]), np.array([1 + 1j]), (3,))
    with pytest.raises(RuntimeError, match="^SparseAdam does not support complex parameters$"):
        opt.step()
    np.testing.assert_array_equal(p.data, PARAM)
    assert not opt.state


def test_state_type_fields_are_torchs_keys():
    assert SparseAdamState._fields == ("step", "exp_avg", "exp_avg_sq")
