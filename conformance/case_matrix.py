"""The pytest parameters of a case table: every case x backend x dtype, the backends
this machine lacks marked as skips with their reason."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from portopt.testing import TestBackend


def case_params(cases: Iterable[Any]) -> Iterator[Any]:
    for case in cases:
        only = getattr(case, "backends", None)
        for backend in TestBackend:
            if only is not None and backend.value not in only:
                continue  # the case is defined for other backends only (torch-only modes)
            reason = backend.unavailable()
            marks = [pytest.mark.skip(reason=reason)] if reason else []
            for dtype in case.run_dtypes():
                yield pytest.param(case, backend, dtype, marks=marks,
                                   id=f"{backend.value}-{dtype}-{case.id}")
