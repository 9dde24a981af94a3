"""The pure kernels, one per algorithm: arrays and Python scalars in, new arrays out.

Each ``<algo>(param, grad, state, **hyper)`` returns ``(new_param, new_state)`` and
mutates nothing; ``<algo>_init(param)`` gives the state before the first step. The
state types are NamedTuples whose fields are torch's state keys. LBFGS works on one
flat vector and an objective instead: ``lbfgs(x, objective, state, ...)`` returns
``(new_x, first_loss, new_state)``.
"""

from .optim._adafactor import AdafactorState, adafactor, adafactor_init
from .optim._muon import MuonState, muon, muon_init
from .optim.adadelta import AdadeltaState, adadelta, adadelta_init
from .optim.adagrad import AdagradState, adagrad, adagrad_init
from .optim.adam import AdamState, adam, adam_init
from .optim.adamax import AdamaxState, adamax, adamax_init
from .optim.asgd import ASGDState, asgd, asgd_init
from .optim.lbfgs import LBFGSState, lbfgs, lbfgs_init
from .optim.nadam import NAdamState, nadam, nadam_init
from .optim.radam import RAdamState, radam, radam_init
from .optim.rmsprop import RMSpropState, rmsprop, rmsprop_init
from .optim.rprop import RpropState, rprop, rprop_init
from .optim.sgd import SGDState, sgd, sgd_init
from .optim.sparse_adam import SparseAdamState, sparse_adam, sparse_adam_init

__all__ = [
    "AdadeltaState",
    "AdafactorState",
    "AdagradState",
    "AdamaxState",
    "AdamState",
    "ASGDState",
    "LBFGSState",
    "MuonState",
    "NAdamState",
    "RAdamState",
    "RMSpropState",
    "RpropState",
    "SGDState",
    "SparseAdamState",
    "adadelta",
    "adadelta_init",
    "adafactor",
    "adafactor_init",
    "adagrad",
    "adagrad_init",
    "adam",
    "adam_init",
    "adamax",
    "adamax_init",
    "asgd",
    "asgd_init",
    "lbfgs",
    "lbfgs_init",
    "muon",
    "muon_init",
    "nadam",
    "nadam_init",
    "radam",
    "radam_init",
    "rmsprop",
    "rmsprop_init",
    "rprop",
    "rprop_init",
    "sgd",
    "sgd_init",
    "sparse_adam",
    "sparse_adam_init",
]
