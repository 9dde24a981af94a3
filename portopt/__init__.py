"""portopt: torch.optim written once against the Array API, for NumPy, CuPy and torch.

Importing portopt imports neither torch nor CuPy.
"""

from . import backends, functional, optim, utils
from .checkpoint import CheckpointError, load, save, to_torch
from .parameter import Parameter, SparseGrad, flat_parameters

__version__ = "0.1.0"

__all__ = ["CheckpointError", "Parameter", "SparseGrad", "backends", "flat_parameters",
           "functional", "load", "optim", "save", "to_torch", "utils", "__version__"]
