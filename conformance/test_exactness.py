"""Where portopt reproduces torch to the last bit, and a test that keeps it so.

torch fuses multiply-adds on CPUs with vector kernels; portopt emulates that exactly in
float32 and calls torch's own ops on torch tensors. What is left between the two is
torch's CPU square root (not correctly rounded), so sqrt-free algorithms are bit-exact
in float32 on every backend, and every algorithm is bit-exact on torch tensors.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from portopt.testing import OPTIM_CASES, TestBackend, run_case

fuses = torch.backends.cpu.get_cpu_capability() != "DEFAULT"
needs_fma = pytest.mark.skipif(not fuses, reason="torch runs without vector kernels (no FMA) here")

SGD_CASES = [c for c in OPTIM_CASES if c.name == "SGD" and c.scenario == "trajectory"
             and c.backends is None]
# 0-d parameters with a differently typed array hyper-parameter follow torch's 0-d type
# promotion only approximately (see Adam's "Differences from torch.optim").
ADAM_CASES = [c for c in OPTIM_CASES if c.name in ("Adam", "AdamW") and c.scenario == "trajectory"
              and c.backends is None and "array" not in c.desc]


@needs_fma
@pytest.mark.parametrize("backend", [b for b in TestBackend if b is not TestBackend.CUPY],
                         ids=lambda b: b.value)
@pytest.mark.parametrize("case", SGD_CASES, ids=[c.id for c in SGD_CASES])
def test_sgd_float32_is_bit_exact(case, backend):
    if backend.unavailable():
        pytest.skip(backend.unavailable())
    result = run_case(dataclasses.replace(case, steps=40), backend, "float32")
    assert result.passed and result.rel == 0.0, result


@pytest.mark.parametrize("dtype", ["float32", "float64", "complex128"])
@pytest.mark.parametrize("case", ADAM_CASES, ids=[c.id for c in ADAM_CASES])
def test_adam_on_torch_tensors_is_bit_exact(case, dtype):
    result = run_case(dataclasses.replace(case, steps=40), TestBackend.TORCH, dtype)
    assert result.passed and result.rel == 0.0, result


def test_lbfgs_bound_is_torchs_own_sensitivity():
    """Why LBFGS has its own tolerance entry: torch.optim.LBFGS run twice, from
    parameters one ULP apart, already moves apart by more than the float64 bound of the
    table, within the entry portopt uses for it."""
    import numpy as np

    from portopt.testing import TOLERANCES, tolerance_for
    from portopt.testing._runner import SHAPES, _objective, _rng_arrays

    rng = np.random.default_rng(0)
    values = _rng_arrays(rng, SHAPES, "float64")
    targets = _rng_arrays(rng, SHAPES, "float64", 0.5)
    noise_rng = np.random.default_rng(1)
    runs = []
    for bump in (False, True):
        params = [torch.from_numpy(np.array(v, copy=True)) for v in values]
        if bump:
            params[0].view(-1)[0] = float(np.nextafter(values[0].flat[0], np.inf))
        runs.append((params, torch.optim.LBFGS(params)))
    for _ in range(3):
        noise = _rng_arrays(noise_rng, SHAPES, "float64")
        for params, opt in runs:
            def closure(params=params, noise=noise):
                total = 0.0
                for p, target, n in zip(params, targets, noise):
                    loss, grad = _objective(p.numpy(), target, n)
                    total += loss
                    p.grad = torch.from_numpy(grad)
                return total
            opt.step(closure)
    (pa, oa), (pb, ob) = runs
    sa, sb = oa.state[pa[0]], ob.state[pb[0]]
    history = [(sa["d"], sb["d"]), *zip(sa["old_dirs"], sb["old_dirs"]),
               *zip(sa["old_stps"], sb["old_stps"])]
    gap = max(float(np.max(np.abs(x.numpy() - y.numpy()) / (np.abs(y.numpy()) + 0.1)))
              for x, y in history)
    assert TOLERANCES["float64"].rtol < gap < tolerance_for("float64", "LBFGS").rtol
