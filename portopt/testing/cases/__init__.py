"""The conformance case tables, one module per optimizer file of portopt.optim."""

from __future__ import annotations

from .. import _cases
from . import adam, sgd

#: Every case, in table order.
OPTIM_CASES: list[_cases.OptimCase] = [*sgd.CASES, *adam.CASES]
