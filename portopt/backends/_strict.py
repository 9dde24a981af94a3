"""array-api-strict: the standard and nothing more, portopt's lint backend."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from ._base import Backend


class StrictBackend(Backend):
    name = "array_api_strict"
    module_name = "array_api_strict"

    @classmethod
    def owns(cls, x: Any) -> bool:
        module = sys.modules.get("array_api_strict._array_object")
        return module is not None and isinstance(x, module.Array)

    def to_numpy(self, x: Any) -> np.ndarray:
        # The strict Array has no public NumPy view; DLPack is the standard bridge and
        # needs the CPU device.
        cpu = self.xp.Device("CPU_DEVICE")
        if x.device != cpu:
            x = x.to_device(cpu)
        return np.from_dlpack(x)
