"""Every public name of torch.optim is implemented, or listed here with the reason why not;
every portopt optimizer has conformance cases, in every scenario."""

from __future__ import annotations

import inspect

import torch

import portopt.optim
from portopt.testing import OPTIM_CASES, SCENARIOS

# Names of torch.optim not (yet) in portopt.optim, with the reason.
EXCLUDED = {
    "swap_in_optimizer_params_and_state": "a torch.compile-oriented context manager over torch "
                                          "Parameters; no counterpart for other backends yet",
}


def test_every_public_torch_optim_name_is_implemented_or_excluded():
    missing = [name for name in torch.optim.__all__
               if not hasattr(portopt.optim, name) and name not in EXCLUDED]
    assert missing == []
    stale = [name for name in EXCLUDED if hasattr(portopt.optim, name)]
    assert stale == [], "implemented now: remove from EXCLUDED"
    assert all(EXCLUDED.values())


def test_portopt_optimizers_carry_torchs_names_and_signatures():
    for name in portopt.optim.__all__:
        ours, theirs = getattr(portopt.optim, name), getattr(torch.optim, name)
        if name == "Optimizer":
            continue
        assert inspect.signature(ours.__init__) .parameters.keys() == \
            inspect.signature(theirs.__init__).parameters.keys()
        for arg, p in inspect.signature(theirs.__init__).parameters.items():
            q = inspect.signature(ours.__init__).parameters[arg]
            assert q.kind == p.kind, (name, arg)
            assert q.default == p.default, (name, arg)


def test_every_optimizer_has_cases_in_every_scenario():
    for name in portopt.optim.__all__:
        if name == "Optimizer":
            continue
        expected = set(SCENARIOS)
        if not getattr(portopt.optim, name)._supports_param_groups:
            expected.discard("add-group")  # one param group only, as torch's LBFGS
        scenarios = {c.scenario for c in OPTIM_CASES if c.name == name}
        assert scenarios == expected, (name, expected ^ scenarios)


def test_all_names_torch_optims_optimizers():
    theirs = {name for name in torch.optim.__all__
              if inspect.isclass(getattr(torch.optim, name))
              and issubclass(getattr(torch.optim, name), torch.optim.Optimizer)}
    assert set(portopt.optim.__all__) == theirs
    assert all(issubclass(getattr(portopt.optim, name), portopt.optim.Optimizer)
               for name in portopt.optim.__all__)
