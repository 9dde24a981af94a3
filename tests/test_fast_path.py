"""The NumPy fast paths: the compiled kernels (numba) and the generic kernel over flat
chunks land on the generic kernel's bits, and are taken exactly when a group may take
them, the generic kernel otherwise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import portopt
from portopt import optim
from portopt.optim import SGD, Adam, AdamW, RMSprop

numba = pytest.importorskip("numba", reason="the fused kernels need numba (the fast extra)")

from portopt.optim import _fast  # noqa: E402

CONFIGS = [
    (Adam, {}),
    (Adam, {"amsgrad": True, "weight_decay": 0.1, "maximize": True}),
    (Adam, {"betas": (0.3, 0.99), "eps": 1e-3}),  # lerp's upper form
    (Adam, {"decoupled_weight_decay": True, "weight_decay": 0.2}),
    (AdamW, {"weight_decay": 0.05, "amsgrad": True}),
    (SGD, {"momentum": 0.9}),
    (SGD, {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    (SGD, {"momentum": 0.5, "dampening": 0.3, "maximize": True}),
    (RMSprop, {}),
    (RMSprop, {"centered": True, "momentum": 0.9, "weight_decay": 0.1}),
    (RMSprop, {"alpha": 0.3, "centered": True, "maximize": True}),  # lerp's upper form
    (RMSprop, {"momentum": 0.5, "eps": 1e-3}),
    # -- Adagrad, Adadelta --
    (optim.Adagrad, {}),
    (optim.Adagrad, {"lr_decay": 0.1, "weight_decay": 0.2, "initial_accumulator_value": 0.3,
                     "maximize": True}),
    (optim.Adagrad, {"lr_decay": 0.5, "eps": 1e-3}),
    (optim.Adadelta, {}),
    (optim.Adadelta, {"rho": 0.5, "weight_decay": 0.1, "maximize": True}),
    (optim.Adadelta, {"rho": 0.99, "eps": 1e-3}),
    # -- Adamax, RAdam, Rprop --
    (optim.Adamax, {}),
    (optim.Adamax, {"weight_decay": 0.1, "maximize": True}),
    (optim.Adamax, {"betas": (0.3, 0.5), "eps": 1e-3}),  # lerp's upper form
    (optim.RAdam, {"weight_decay": 0.1, "maximize": True}),  # steps 2-5: unrectified
    (optim.RAdam, {"decoupled_weight_decay": True, "weight_decay": 0.1, "betas": (0.3, 0.8)}),
    (optim.Rprop, {}),
    (optim.Rprop, {"etas": (0.3, 1.5), "step_sizes": (1e-3, 0.05), "maximize": True}),
    (optim.Rprop, {"step_sizes": (None, 0.02)}),  # no lower bound
    (optim.Rprop, {"step_sizes": (0.011, None)}),  # no upper bound
    # -- NAdam, ASGD --
    (optim.NAdam, {}),
    (optim.NAdam, {"momentum_decay": 0.01, "weight_decay": 0.1, "maximize": True}),
    (optim.NAdam, {"decoupled_weight_decay": True, "weight_decay": 0.2}),
    (optim.NAdam, {"betas": (0.3, 0.99), "eps": 1e-3}),  # lerp's upper form
    (optim.ASGD, {}),  # mu stays 1: ax copies the parameter
    (optim.ASGD, {"t0": 1, "lambd": 0.1, "weight_decay": 0.1}),  # averaging from step 4
    (optim.ASGD, {"t0": 0, "maximize": True, "alpha": 0.5}),  # averaging from step 3
]

#: every elementwise optimizer, for the generic kernel over flat chunks
CHUNKED = CONFIGS + [
    (optim.Adagrad, {"lr_decay": 0.1, "weight_decay": 0.2, "initial_accumulator_value": 0.3}),
    (optim.Adagrad, {"maximize": True, "eps": 1e-3}),
    (optim.Adadelta, {"rho": 0.5, "weight_decay": 0.1}),
    (optim.Adadelta, {"maximize": True}),
    (optim.Adamax, {"weight_decay": 0.1, "betas": (0.3, 0.99)}),
    (optim.ASGD, {"t0": 2, "lambd": 0.1, "weight_decay": 0.1}),  # averaging starts at 3
    (optim.ASGD, {"maximize": True, "alpha": 0.5}),
    (optim.NAdam, {"momentum_decay": 0.01, "weight_decay": 0.1}),
    (optim.NAdam, {"decoupled_weight_decay": True, "weight_decay": 0.1, "maximize": True}),
    (optim.RAdam, {}),  # steps 1-5 unrectified, then rectified
    (optim.RAdam, {"decoupled_weight_decay": True, "weight_decay": 0.1, "betas": (0.5, 0.8)}),
    (optim.Rprop, {"etas": (0.3, 1.5), "step_sizes": (1e-3, 0.05)}),
    (optim.Rprop, {"maximize": True}),
    (SGD, {"momentum": 0.9, "dampening": 0.1, "weight_decay": 0.1}),
]


@pytest.fixture
def calls(monkeypatch):
    """Count the fused kernels' calls."""
    seen = []
    module = _fast.kernels()
    for path in sorted((Path(module.__file__).parent).glob("[a-z]*.py")):
        name = f"{path.stem}_step"
        kernel = getattr(module, name)
        monkeypatch.setattr(module, name,
                            lambda *a, _k=kernel, _n=name: (seen.append(_n), _k(*a))[1])
    return seen


@pytest.fixture
def chunked(monkeypatch):
    """The fast path without numba, in chunks that split parameters; counts the chunks."""
    monkeypatch.setattr(_fast, "kernels", lambda: None)
    monkeypatch.setattr(_fast, "CHUNK", 7)
    seen = []
    run = optim.Optimizer._run_plan

    def counted(self, plan, group):
        assert not plan.compiled
        seen.append(type(self).__name__)
        run(self, plan, group)

    monkeypatch.setattr(optim.Optimizer, "_run_plan", counted)
    return seen


def _pair(cls, kwargs, dtype, rng, shapes=((5, 7), (300,), (3,), (), (0,))):
    start = [rng.standard_normal(s).astype(dtype) for s in shapes]
    fast = [portopt.Parameter(a.copy()) for a in start]
    generic = [portopt.Parameter(a.copy()) for a in start]
    return (fast, cls(fast, lr=0.01, **kwargs)), (generic, cls(generic, lr=0.01, foreach=False,
                                                              **kwargs))


def _step_both(pair, rng, steps=5):
    (fp, fo), (gp, go) = pair
    for _ in range(steps):
        grads = [rng.standard_normal(p.data.shape).astype(p.data.dtype) for p in fp]
        for p, q, g in zip(fp, gp, grads):
            p.grad, q.grad = g.copy(), g.copy()
        fo.step()
        go.step()


def _same_bits(a, b):
    """Equal to the last bit (signed zeros apart), NaN where the other is NaN. A NaN's sign
    and payload are not compared: they follow the order of an operation's operands, which
    neither NumPy nor torch promises."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    nan = np.isnan(a)
    return bool((nan == np.isnan(b)).all()) and a[~nan].tobytes() == b[~nan].tobytes()


def _assert_same(pair):
    (fp, fo), (gp, go) = pair
    for p, q in zip(fp, gp):
        np.testing.assert_array_equal(p.data, q.data)
        assert _same_bits(p.data, q.data)
        assert fo.state[p].keys() == go.state[q].keys()
        for key in go.state[q]:
            assert _same_bits(fo.state[p][key], go.state[q][key]), key
            assert type(fo.state[p][key]) is type(go.state[q][key])


@pytest.mark.parametrize("threads", ["serial", "parallel"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls, kwargs", CONFIGS, ids=[f"{c.__name__}-{k}" for c, k in CONFIGS])
def test_fused_equals_generic_bit_for_bit(cls, kwargs, dtype, threads, calls, monkeypatch):
    if threads == "parallel":  # these groups are small: make them take the threaded launch
        monkeypatch.setattr(_fast, "SERIAL_BELOW", 0)
    rng = np.random.default_rng(0)
    pair = _pair(cls, kwargs, dtype, rng)
    eager = bool(pair[0][1].state)  # Adagrad makes its state in its constructor
    _step_both(pair, rng)
    _assert_same(pair)
    # the first step creates the state with the generic kernel, unless the constructor has
    # made it; every other step is fused
    assert len(calls) == (5 if eager else 4)


def test_small_groups_run_on_one_thread(monkeypatch):
    """Below SERIAL_BELOW elements the kernel runs with one numba thread (waking the pool
    costs more than the work); the thread count is restored afterwards."""
    import numba

    module = _fast.kernels()
    kernel = module.sgd_step
    seen = []
    monkeypatch.setattr(module, "sgd_step",
                        lambda *a: (seen.append(numba.get_num_threads()), kernel(*a))[1])
    before = numba.get_num_threads()
    for size, threads in ((10, 1), (_fast.SERIAL_BELOW, before)):
        p = portopt.Parameter(np.ones(size))
        opt = optim.SGD([p], lr=0.5, momentum=0.5)
        for _ in range(2):
            p.grad = np.ones(size)
            opt.step()
        assert seen.pop() == threads
        assert numba.get_num_threads() == before
        # by hand: v1 = 1, p1 = 1 - 0.5; v2 = 0.5 + 1, p2 = 0.5 - 0.75
        np.testing.assert_array_equal(p.data, np.full(size, -0.25))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls, kwargs", CHUNKED, ids=[f"{c.__name__}-{k}" for c, k in CHUNKED])
def test_flat_chunks_equal_generic_bit_for_bit(cls, kwargs, dtype, chunked):
    rng = np.random.default_rng(5)
    pair = _pair(cls, kwargs, dtype, rng)
    _step_both(pair, rng, steps=7)
    _assert_same(pair)
    # the first step makes the state with the generic kernel (Adagrad's is made with it)
    assert chunked == [cls.__name__] * (7 if cls is optim.Adagrad else 6)


def test_flat_chunks_write_back_loose_parameters(chunked):
    """Without numba, parameters that are not one buffer are copied back one by one."""
    rng = np.random.default_rng(6)
    pair = _pair(Adam, {}, np.float32, rng)
    views = [p.data for p in pair[0][0]]
    _step_both(pair, rng, steps=3)
    _assert_same(pair)
    assert [p.data for p in pair[0][0]] == views and all(
        p.data is v for p, v in zip(pair[0][0], views))
    assert chunked == ["Adam"] * 2


def test_shared_adagrad_sums_stay_on_the_generic_kernel(chunked):
    rng = np.random.default_rng(7)
    pair = _pair(optim.Adagrad, {}, np.float64, rng)
    pair[0][1].share_memory()
    shared = [pair[0][1].state[p]["sum"] for p in pair[0][0]]
    _step_both(pair, rng, steps=3)
    _assert_same(pair)
    assert chunked == []
    assert all(pair[0][1].state[p]["sum"] is s for p, s in zip(pair[0][0], shared))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kwargs", [{}, {"weight_decay": 0.1, "maximize": True},
                                    {"decoupled_weight_decay": True, "weight_decay": 0.1}])
def test_radam_rectified_steps_are_fused(kwargs, dtype, calls):
    """RAdam's rectified update starts at step 6 (rho_t > 5), past the 5 steps above."""
    rng = np.random.default_rng(8)
    pair = _pair(optim.RAdam, kwargs, dtype, rng)
    _step_both(pair, rng, steps=8)
    _assert_same(pair)
    assert calls == ["radam_step"] * 7


MAXIMIZING = sorted({cls for cls, _ in CONFIGS}, key=lambda c: c.__name__)


@pytest.mark.parametrize("cls", MAXIMIZING, ids=lambda c: c.__name__)
def test_maximize_flips_special_gradients_as_the_generic_kernel(cls, calls):
    """NaN, infinities and signed zeros in the gradient, with ``maximize``: the same bits."""
    rng = np.random.default_rng(9)
    kwargs = {"momentum": 0.9} if cls is SGD else {}
    pair = _pair(cls, {"maximize": True, **kwargs}, np.float32, rng, shapes=((6,),))
    (fp, fo), (gp, go) = pair
    for step in range(3):
        g = rng.standard_normal(6).astype(np.float32)
        if step == 2:
            g[:4] = [np.nan, np.inf, -np.inf, -0.0]
        fp[0].grad, gp[0].grad = g.copy(), g.copy()
        with np.errstate(all="ignore"):  # NaN and inf are the point here
            fo.step()
            go.step()
    _assert_same(pair)
    assert calls


def test_group_falls_back_to_the_generic_kernel(calls):
    rng = np.random.default_rng(1)
    a = portopt.Parameter(rng.standard_normal((4, 4)).astype(np.float32))
    strided = portopt.Parameter(rng.standard_normal((4, 8)).astype(np.float32)[:, ::2])
    opt = Adam([{"params": [a]}, {"params": [strided]}, {"params": [portopt.Parameter(
        np.ones(3, np.float32))], "foreach": False}], lr=np.asarray(0.01))
    for _ in range(3):
        for group in opt.param_groups:
            for p in group["params"]:
                p.grad = np.ones(p.data.shape, np.float32)
        opt.step()
    assert calls == []  # an array lr, a non-contiguous parameter, foreach=False
    opt.param_groups[0]["lr"] = 0.01
    a.grad = np.ones((4, 4), np.float32)
    opt.step()
    assert calls == ["adam_step"]


def test_a_failing_group_leaves_a_fused_group_unchanged():
    rng = np.random.default_rng(2)
    first = portopt.Parameter(rng.standard_normal(6))
    last = portopt.Parameter(rng.standard_normal(6))
    opt = SGD([{"params": [first]}, {"params": [last]}], lr=0.1, momentum=0.9)
    for p in (first, last):
        p.grad = np.ones(6)
    opt.step()
    before = first.data.copy(), opt.state[first]["momentum_buffer"].copy()
    first.grad = np.ones(6)
    last.grad = np.ones(6)
    last.data.flags.writeable = False  # found when the step validates the last group
    with pytest.raises(ValueError, match="read-only"):
        opt.step()
    np.testing.assert_array_equal(first.data, before[0])
    np.testing.assert_array_equal(opt.state[first]["momentum_buffer"], before[1])


def test_flat_parameters_are_stepped_in_their_buffer(calls, monkeypatch):
    rng = np.random.default_rng(3)
    start = [rng.standard_normal(s).astype(np.float32) for s in ((3, 4), (5,), ())]
    flat = portopt.flat_parameters(start)
    loose = [portopt.Parameter(a.copy()) for a in start]
    opts = Adam(flat, lr=0.1), Adam(loose, lr=0.1, foreach=False)
    views = [p.data for p in flat]
    for _ in range(4):
        grads = [rng.standard_normal(a.shape).astype(np.float32) for a in start]
        for params in (flat, loose):
            for p, g in zip(params, grads):
                p.grad = g.copy()
        for opt in opts:
            opt.step()
    for p, q, view in zip(flat, loose, views):
        np.testing.assert_array_equal(p.data, q.data)
        assert p.data is view  # the user's arrays stay the storage
    assert calls == ["adam_step"] * 3


def _planned(opt):
    """The fast plan of the optimizer's only group."""
    return opt._fused_plans[id(opt.param_groups[0])]


def test_new_gradients_are_read_where_they_are(monkeypatch):
    """A compiled step reads plain C-contiguous gradients of the right dtype and shape
    through their addresses; anything else is gathered (or left to the generic kernel)."""
    if _fast.kernels().array_layout() is None:
        pytest.skip("NumPy's array struct was not recognised here: gradients are gathered")
    rng = np.random.default_rng(10)
    params = [portopt.Parameter(rng.standard_normal(s)) for s in ((5, 7), (40000,), (1,))]
    opt = SGD(params, lr=0.1, momentum=0.9)
    for _ in range(2):
        for p in params:
            p.grad = rng.standard_normal(p.data.shape)
        opt.step()
    plan = _planned(opt)
    gathered = []
    concatenate = np.concatenate
    monkeypatch.setattr(_fast.np, "concatenate",
                        lambda *a, **k: (gathered.append(1), concatenate(*a, **k))[1])

    def gather(first_grad, **edit):
        gathered.clear()
        params[0].grad = first_grad
        for name, value in edit.items():  # changed in place after the setter's checks
            setattr(first_grad, name, value)
        ok = plan.gather(opt.param_groups[0], opt.state, opt._fused_numbers)
        return ok, bool(gathered)

    g = rng.standard_normal((5, 7))
    assert gather(g) == (True, False)
    assert plan.table[0, 1] == g.ctypes.data
    # portopt Parameters are read through their slots (the Parameter holds g); any
    # other parameter's gradients are held by the plan while the table points at them
    assert plan.rows is not None if _fast.kernels().parameter_slots(portopt.Parameter) \
        is not None else plan.held[0] is g
    assert plan.table[1, 1] == params[1].grad.ctypes.data  # chunks of the big gradient
    assert plan.table[2, 1] == params[1].grad.ctypes.data + 32768 * 8
    assert gather(np.asfortranarray(rng.standard_normal((5, 7)))) == (True, True)
    assert gather(rng.standard_normal(35).reshape(5, 7)[:, :]) == (True, False)  # a view
    assert gather(np.ma.masked_array(rng.standard_normal((5, 7)))) == (True, True)
    # what the generic kernel would refuse goes to it
    assert gather(rng.standard_normal((5, 7)), shape=(7, 5)) == (False, False)
    assert gather(rng.standard_normal((5, 7)), dtype=np.dtype(">f8")) == (False, True)
    assert gather(rng.standard_normal((5, 7)), dtype=np.dtype(np.int64)) == (False, True)
    assert gather(None) == (False, False)


def test_gathered_gradients_land_on_the_same_bits(calls):
    rng = np.random.default_rng(11)
    pair = _pair(Adam, {"weight_decay": 0.1}, np.float64, rng)
    (fp, fo), (gp, go) = pair
    for step in range(4):
        for p, q in zip(fp, gp):
            g = rng.standard_normal(p.data.shape)
            if step > 1 and g.ndim > 1:  # once the plan is made: (5, 7) not C-ordered
                g = np.asfortranarray(g)
            p.grad, q.grad = g, g.copy()
        fo.step()
        go.step()
    _assert_same(pair)
    assert calls == ["adam_step"] * 3


@pytest.mark.parametrize("path", ["compiled", "chunks"])
def test_flat_gradients_written_in_place_are_read_where_they_are(path, monkeypatch, request):
    if path == "chunks":
        request.getfixturevalue("chunked")
    rng = np.random.default_rng(8)
    start = [rng.standard_normal(s) for s in ((3, 4), (5,), (2, 1))]
    flat = portopt.flat_parameters(start, grads=True)
    loose = [portopt.Parameter(a.copy()) for a in start]
    assert all(np.array_equal(p.grad, np.zeros(a.shape)) for p, a in zip(flat, start))
    buffers = {id(p.grad.base) for p in flat}
    opts = SGD(flat, lr=0.1, momentum=0.9), SGD(loose, lr=0.1, momentum=0.9, foreach=False)
    gathered = []
    concatenate = np.concatenate
    monkeypatch.setattr(_fast.np, "concatenate",
                        lambda *a, **k: (gathered.append(1), concatenate(*a, **k))[1])
    for step in range(5):
        for p, q in zip(flat, loose):
            g = rng.standard_normal(p.data.shape)
            p.grad[...] = g  # in place, into the flat gradient buffer
            q.grad = g
        gathered.clear()
        for opt in opts:
            opt.step()
        # the first step makes the momentum buffers (generic kernel), the second the plan
        if step > 1:
            assert gathered == []
    for p, q in zip(flat, loose):
        np.testing.assert_array_equal(p.data, q.data)
    assert {id(p.grad.base) for p in flat} == buffers and len(buffers) == 1


def test_swapped_arrays_make_a_new_plan(calls):
    """A plan never writes arrays the group no longer holds: a replaced state buffer, a
    rebound parameter or a loaded state_dict make the step plan again from what is there."""
    rng = np.random.default_rng(4)
    params = [portopt.Parameter(rng.standard_normal(4)) for _ in range(3)]
    twins = [portopt.Parameter(p.data.copy()) for p in params]
    fast, generic = SGD(params, lr=0.1, momentum=0.9), SGD(twins, lr=0.1, momentum=0.9,
                                                            foreach=False)

    def step(edit=None):
        grads = [rng.standard_normal(4) for _ in params]
        for group in (params, twins):
            for p, g in zip(group, grads):
                p.grad = g.copy()
        if edit:
            edit()
        fast.step()
        generic.step()
        for p, q in zip(params, twins):
            np.testing.assert_array_equal(p.data, q.data)
            np.testing.assert_array_equal(fast.state[p]["momentum_buffer"],
                                          generic.state[q]["momentum_buffer"])

    def replace_state():
        for opt, p in ((fast, params[1]), (generic, twins[1])):
            opt.state[p]["momentum_buffer"] = np.full(4, 2.0)

    def rebind():
        params[0].data = params[0].data.copy()

    def reload():
        fast.load_state_dict(fast.state_dict())
        generic.load_state_dict(generic.state_dict())

    step()  # creates the buffers (generic kernel)
    for edit in (None, replace_state, None, rebind, reload, None):
        step(edit)
    assert calls == ["sgd_step"] * 6


def test_writeable_flags_are_read_in_compiled_code():
    """The layout probe finds the flags field, and the compiled check reads each array's
    writeable bit as NumPy reports it."""
    module = _fast.kernels()
    layout = module.array_layout()
    assert layout is not None and len(layout) == 7
    arrays = [np.zeros(3), np.zeros((2, 2), np.float32), np.zeros(())]
    ids = np.array([id(a) for a in arrays], np.int64)
    assert module.all_writeable(ids, layout)
    for a in arrays:
        a.flags.writeable = False
        assert not module.all_writeable(ids, layout)
        a.flags.writeable = True
    assert module.all_writeable(ids, layout)


def test_parameter_slots_are_read_in_compiled_code():
    """The probe finds Parameter's data and _grad slots; a planned group whose array is
    swapped or made read-only, or whose gradient is missing, leaves the plan for the
    generic step (which refuses the read-only array and skips the missing gradient)."""
    module = _fast.kernels()
    if module.array_layout() is None or module.parameter_slots(portopt.Parameter) is None:
        pytest.skip("the object layouts were not recognised here: the slots are not read")
    slots = module.parameter_slots(portopt.Parameter)
    p = portopt.Parameter(np.zeros(3))
    p.grad = np.ones(3)
    import ctypes

    assert ctypes.c_int64.from_address(id(p) + int(slots[0])).value == id(p.data)
    assert ctypes.c_int64.from_address(id(p) + int(slots[1])).value == id(p.grad)

    params = [portopt.Parameter(np.ones(4)) for _ in range(3)]
    opt = SGD(params, lr=0.5, momentum=0.5)
    for _ in range(2):
        for q in params:
            q.grad = np.ones(4)
        opt.step()
    plan = _planned(opt)
    assert plan.rows is not None
    group = opt.param_groups[0]
    for q in params:
        q.grad = np.ones(4)
    assert plan.gather(group, opt.state, opt._fused_numbers)
    old = params[2].data
    params[2].data = np.ones(4)  # swapped: the plan no longer holds
    assert not plan.gather(group, opt.state, opt._fused_numbers)
    params[2].data = old
    assert plan.gather(group, opt.state, opt._fused_numbers)
    old.flags.writeable = False  # read-only: the checked step must refuse it
    assert not plan.gather(group, opt.state, opt._fused_numbers)
    old.flags.writeable = True
    params[1].grad = None  # not an array: the gradients cannot be read in place
    assert not plan.gather(group, opt.state, opt._fused_numbers)
