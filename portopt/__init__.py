"""portopt: torch.optim written once against the Array API, for NumPy, CuPy and torch.

Importing portopt imports neither torch nor CuPy.
"""

from . import backends, functional, optim
from .parameter import Parameter, SparseGrad, flat_parameters

__version__ = "0.1.0"

__all__ = ["Parameter", "SparseGrad", "backends", "flat_parameters", "functional", "optim",
           "__version__"]
