"""The pure kernels, one per algorithm: arrays and Python scalars in, new arrays out.

Each ``<algo>(param, grad, state, **hyper)`` returns ``(new_param, new_state)`` and
mutates nothing; ``<algo>_init(param)`` gives the state before the first step. The
state types are NamedTuples whose fields are torch's state keys.
"""

from .optim.adam import AdamState, adam, adam_init
from .optim.sgd import SGDState, sgd, sgd_init

__all__ = ["AdamState", "SGDState", "adam", "adam_init", "sgd", "sgd_init"]
