"""AdamW: Adam with decoupled weight decay, torch's ``AdamW``."""

from __future__ import annotations

from typing import Any

from .adam import Adam

__all__ = ["AdamW"]


class AdamW(Adam):
    """AdamW, as ``torch.optim.AdamW``: Adam whose weight decay shrinks the weights.

    The same algorithm as :class:`Adam` with ``decoupled_weight_decay=True`` (forced,
    also when a state_dict is loaded) and ``weight_decay=1e-2`` by default. See
    :func:`portopt.functional.adam` for the update rule.

    Args:
        params: parameters or param groups to optimize.
        lr: learning rate, a number or a 1-element array (default: 1e-3).
        betas: running-average coefficients (default: (0.9, 0.999)).
        eps: added to the denominator (default: 1e-8).
        weight_decay: decoupled weight decay coefficient (default: 1e-2).
        amsgrad: use the AMSGrad variant (default: False).
        maximize: maximize the objective instead of minimizing it.
        foreach: accepted for compatibility; portopt chooses its own paths.
        capturable: torch's CUDA-graph-safe form (torch tensors on a capture device).
        differentiable: let torch autograd see through the step (torch tensors only).
        fused: ask for a fused kernel; an error where the backend has none.

    Differences from torch.optim:
        The same as :class:`Adam`.
    """

    def __init__(self, params: Any, lr: Any = 1e-3, betas: tuple[Any, Any] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False, foreach: bool | None = None,
                 capturable: bool = False, differentiable: bool = False,
                 fused: bool | None = None) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach,
                         maximize=maximize, capturable=capturable,
                         differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True)

    def _setstate_group(self, group: dict[str, Any]) -> None:
        group["decoupled_weight_decay"] = True
