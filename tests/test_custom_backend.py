"""The recipe of docs/adding-a-backend.md, run on a third-party array type."""

from __future__ import annotations

import numpy as np
import pytest

import portopt
from portopt import backends
from portopt.backends import get_backend, register_backend


class Tagged(np.ndarray):
    """A third-party array type: a NumPy subclass, so array-api-compat knows it."""


@pytest.fixture
def tagged_backend(backend_registry):
    @register_backend
    class TaggedBackend(backends.Backend):
        name = "tagged"
        module_name = "numpy"

        @classmethod
        def owns(cls, x):
            return isinstance(x, Tagged)

        def to_numpy(self, x):
            return np.asarray(x).view(np.ndarray)

        def from_numpy(self, a, *, device=None):
            return np.array(a, copy=True).view(Tagged)

    return TaggedBackend


class TaggedCases:
    """What the conformance engine needs to build arrays of the new library."""

    value = "tagged"

    def unavailable(self):
        return None

    def array(self, a):
        return np.array(a, copy=True).view(Tagged)

    def param(self, a):
        return portopt.Parameter(self.array(a))


def test_a_registered_backend_steps_in_place(tagged_backend):
    p = portopt.Parameter(np.ones(3).view(Tagged))
    assert isinstance(get_backend(p.data), tagged_backend)
    before = p.data
    opt = portopt.optim.SGD([p], lr=0.5)
    p.grad = np.full(3, 2.0).view(Tagged)
    opt.step()
    assert p.data is before and type(p.data) is Tagged  # written in place
    np.testing.assert_array_equal(np.asarray(p.data), np.zeros(3))  # 1 - 0.5 * 2, by hand


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_conformance_engine_runs_on_it(tagged_backend, torch, dtype):
    from portopt.testing import Comparison

    cmp = Comparison(lambda groups: portopt.optim.Adam(groups, lr=1e-2, amsgrad=True),
                     lambda groups: torch.optim.Adam(groups, lr=1e-2, amsgrad=True,
                                                     foreach=False),
                     backend=TaggedCases(), dtype=dtype, resync=True, name="Adam-tagged")
    result = cmp.run(steps=8)
    assert result.passed, result.message
    assert result.backend == "tagged" and result.steps == 8
