"""The conformance suite: portopt against torch.optim, case by case.

The cases, the runner and the one tolerance table live in :mod:`portopt.testing`, so
that ``portopt conformance`` and this suite run exactly the same checks. torch is the
oracle: without it the whole suite skips.
"""

import pytest

pytest.importorskip("torch", reason="the conformance suite needs torch, its oracle")
