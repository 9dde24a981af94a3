"""Stochastic Weight Averaging utilities, as ``torch.optim.swa_utils``.

The averaging rules are pure kernels (:func:`swa_avg`, :func:`ema_avg` and their list
forms) that the ``get_*_avg_fn`` factories hand out. :class:`AveragedModel` keeps a
running average of a model's parameters (and buffers), :func:`update_bn` recomputes
batch-norm statistics for it, and :class:`SWALR` anneals the lr to a constant for the
averaging phase.

Models are duck-typed as torch uses them. A torch ``nn.Module`` works unchanged, and
``AveragedModel`` of one *is* an ``nn.Module`` (its ``state_dict``, ``to``, hooks, ...).
Any other model needs ``parameters()`` (``portopt.Parameter``s), optional ``buffers()``
(arrays updated in place), ``modules()`` (itself included), ``training``,
``train(mode=True)`` and ``__call__``; a batch-norm layer is a module with
``running_mean``, ``running_var``, ``momentum`` and ``reset_running_stats()``. Nothing
here imports torch unless the model is a torch module.
"""

from __future__ import annotations

import copy
import itertools
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import nullcontext
from typing import Any, Literal, NamedTuple

import array_api_compat
import numpy as np

from ..backends import get_backend
from . import _schedules
from ._lr_base import LRScheduler, format_param, unchanged_on_error
from ._math import lerp
from ._params import data_of, write_into

__all__ = ["AveragedModel", "update_bn", "SWALR", "get_ema_multi_avg_fn",
           "get_swa_multi_avg_fn", "get_ema_avg_fn", "get_swa_avg_fn"]


class _IncompatibleKeys(NamedTuple):
    """What ``AveragedModel.load_state_dict`` returns, as torch's ``Module`` does."""

    missing_keys: list[str]
    unexpected_keys: list[str]


# -- the averaging rules -------------------------------------------------------------------


def _count(num_averaged: Any) -> int:
    """The number of models averaged so far, as a Python int (torch keeps a long tensor)."""
    return int(num_averaged)


def _is_inexact(x: Any) -> bool:
    be = get_backend(x)
    return be.is_floating(x) or be.is_complex(x)


def _promoted(x: Any) -> Any:
    """An integer array in the dtype torch computes its averages in (its default float
    dtype, float32); torch tensors and inexact arrays as they are."""
    if array_api_compat.is_torch_array(x) or _is_inexact(x):
        return x
    xp = get_backend(x).xp
    return xp.astype(x, xp.float32)


def swa_avg(averaged: Any, current: Any, num_averaged: Any) -> Any:
    """The running mean after one more model: ``avg + (cur - avg) / (n + 1)``."""
    step = _promoted(current - averaged) / (_count(num_averaged) + 1)
    return _promoted(averaged) + step


def ema_avg(ema: Any, current: Any, decay: float) -> Any:
    """The exponential moving average after one more model: ``decay*ema + (1-decay)*cur``."""
    return decay * _promoted(ema) + (1 - decay) * _promoted(current)


def swa_multi_avg(averaged: list[Any], current: list[Any], num_averaged: Any) -> list[Any]:
    """:func:`swa_avg` over lists of arrays of one dtype, as torch's foreach form computes
    it: a ``lerp`` with weight ``1/(n+1)``, which torch rounds to float32 when ``n`` is a
    tensor (its default dtype) and which portopt rounds the same way for any array ``n``.
    Integer arrays raise torch's errors."""
    if not averaged:
        return []
    n = _count(num_averaged)
    if _is_inexact(averaged[0]):
        if array_api_compat.is_array_api_obj(num_averaged):
            weight = float(np.float32(1) / np.float32(n + 1))
        else:
            weight = 1 / (n + 1)
        return [lerp(a, c, weight) for a, c in zip(averaged, current, strict=True)]
    if array_api_compat.is_array_api_obj(num_averaged):
        raise RuntimeError(
            "Integer division with addcdiv is no longer supported, and in a future  release "
            "addcdiv will perform a true division of tensor1 and tensor2. The historic "
            "addcdiv behavior can be implemented as (input + value * torch.trunc(tensor1 / "
            "tensor2)).to(input.dtype) for integer inputs and as (input + value * tensor1 / "
            "tensor2) for float inputs. The future addcdiv behavior is just the latter "
            "implementation: (input + value * tensor1 / tensor2), for all dtypes."
        )
    raise RuntimeError("For integral input tensors, argument alpha must not be a floating "
                       "point number.")


def ema_multi_avg(ema: list[Any], current: list[Any], decay: float) -> list[Any]:
    """:func:`ema_avg` over lists of arrays of one dtype, as torch's foreach form: a
    ``lerp`` with weight ``1 - decay`` for floating arrays, ``ema*decay + cur*(1-decay)``
    otherwise."""
    if ema and _is_inexact(ema[0]):
        return [lerp(e, c, 1 - decay) for e, c in zip(ema, current, strict=True)]
    return [_promoted(e) * decay + _promoted(c) * (1 - decay)
            for e, c in zip(ema, current, strict=True)]


def _check_decay(decay: float) -> None:
    if decay < 0.0 or decay > 1.0:
        raise ValueError(f"Invalid decay value {decay} provided. Please provide a value in "
                         "[0,1] range.")


def get_ema_multi_avg_fn(decay: float = 0.999) -> Callable[[list[Any], list[Any], Any], None]:
    """An EMA update for ``AveragedModel(multi_avg_fn=...)``: it updates a list of averaged
    arrays in place from a list of current ones."""
    _check_decay(decay)

    def ema_update(ema_param_list: list[Any], current_param_list: list[Any], _: Any) -> None:
        with _no_grad(ema_param_list):
            for dst, new in zip(ema_param_list, ema_multi_avg(
                    [_detached(e) for e in ema_param_list],
                    [_detached(c) for c in current_param_list], decay)):
                write_into(dst, new)

    return ema_update


def get_swa_multi_avg_fn() -> Callable[[list[Any], list[Any], Any], None]:
    """The SWA update for ``AveragedModel(multi_avg_fn=...)``, in place over lists."""

    def swa_update(averaged_param_list: list[Any], current_param_list: list[Any],
                   num_averaged: Any) -> None:
        with _no_grad(averaged_param_list):
            for dst, new in zip(averaged_param_list, swa_multi_avg(
                    [_detached(a) for a in averaged_param_list],
                    [_detached(c) for c in current_param_list], num_averaged)):
                write_into(dst, new)

    return swa_update


def get_ema_avg_fn(decay: float = 0.999) -> Callable[[Any, Any, Any], Any]:
    """An EMA rule for ``AveragedModel(avg_fn=...)``: ``(ema, current, n) -> new ema``."""
    _check_decay(decay)

    def ema_update(ema_param: Any, current_param: Any, num_averaged: Any) -> Any:
        with _no_grad([ema_param]):
            return ema_avg(ema_param, current_param, decay)

    return ema_update


def get_swa_avg_fn() -> Callable[[Any, Any, Any], Any]:
    """The SWA rule for ``AveragedModel(avg_fn=...)``: ``(avg, current, n) -> new avg``."""

    def swa_update(averaged_param: Any, current_param: Any, num_averaged: Any) -> Any:
        with _no_grad([averaged_param]):
            return swa_avg(averaged_param, current_param, num_averaged)

    return swa_update


def _detached(x: Any) -> Any:
    return x.detach() if array_api_compat.is_torch_array(x) else x


def _no_grad(arrays: list[Any]) -> Any:
    """torch's ``no_grad`` around work on torch tensors; nothing for other arrays."""
    if arrays and array_api_compat.is_torch_array(arrays[0]):
        return sys.modules["torch"].no_grad()
    return nullcontext()


# -- models ---------------------------------------------------------------------------------


def _is_torch_module(model: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


def _model_buffers(model: Any) -> Iterator[Any]:
    buffers = getattr(model, "buffers", None)
    return iter(buffers()) if buffers is not None else iter(())


def _device_groups(pairs: list[tuple[Any, Any]]) -> list[list[tuple[Any, Any]]]:
    """The (averaged, current) pairs grouped by the averaged array's device and dtype,
    groups in order of first appearance (torch's grouping for its foreach kernels)."""
    groups: dict[tuple[Any, ...], list[tuple[Any, Any]]] = {}
    for avg, cur in pairs:
        be = get_backend(avg)
        key = (type(be), str(be.device(avg)), str(avg.dtype))
        groups.setdefault(key, []).append((avg, cur))
    return list(groups.values())


def _on_accelerator(x: Any) -> bool:
    """Whether torch would take its foreach path here: a CUDA-like device (CuPy's GPU
    counts as one)."""
    if array_api_compat.is_torch_array(x):
        return x.device.type != "cpu"
    return array_api_compat.is_cupy_array(x)


class AveragedModel:
    """A running average (SWA by default, or EMA) of a model's parameters.

    ``AveragedModel(model)`` deep-copies ``model`` into :attr:`module`; each
    :meth:`update_parameters` call folds the current weights of ``model`` into the copy,
    and :attr:`n_averaged` counts the calls. Calling the averaged model runs the copy.
    Buffers (batch-norm statistics) are averaged along with the parameters when
    ``use_buffers`` is set, and otherwise copied from ``model`` at each update; after
    averaging without them, :func:`update_bn` recomputes the statistics.

    For a torch ``nn.Module`` the result is a torch ``nn.Module`` as well, behaving as
    ``torch.optim.swa_utils.AveragedModel``. For any other model (see the module
    docstring) it follows the same protocol: ``parameters()``, ``buffers()``
    (``n_averaged``, then the copy's), ``modules()``, ``train()``, ``eval()``, ``training``.

    Args:
        model: the model to average.
        device: put the copy there (the model's ``to(device)``; without one, every array
            must already be there).
        avg_fn: ``(averaged, current, n_averaged) -> new averaged``, one array at a time.
        multi_avg_fn: ``(averaged_list, current_list, n_averaged)``, updating a list of
            arrays of one device and dtype in place. Give at most one of the two; with
            neither, the equal-weight SWA average is used.
        use_buffers: average the buffers too (otherwise they are copied from ``model``).
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> AveragedModel:
        model = args[0] if args else kwargs.get("model")
        if cls is AveragedModel and _is_torch_module(model):
            return object.__new__(_torch_averaged_model())
        return object.__new__(cls)

    def __init__(self, model: Any, device: Any = None,
                 avg_fn: Callable[[Any, Any, Any], Any] | None = None,
                 multi_avg_fn: Callable[[list[Any], list[Any], Any], None] | None = None,
                 use_buffers: bool = False) -> None:
        if avg_fn is not None and multi_avg_fn is not None:
            raise AssertionError("Only one of avg_fn and multi_avg_fn should be provided")
        module = copy.deepcopy(model)
        if device is not None:
            module = _to_device(module, device)
        self.module = module
        self.training = True  # a new module, as torch's AveragedModel is
        like = next(iter(data_of(p) for p in module.parameters()), None)
        be = get_backend(like) if like is not None else get_backend(np.zeros(()))
        self.n_averaged = be.convert(np.zeros((), dtype=np.int64), device=device)
        self.avg_fn = avg_fn
        self.multi_avg_fn = multi_avg_fn
        self.use_buffers = use_buffers

    # -- the protocol a model follows -------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)

    def parameters(self) -> Iterator[Any]:
        """The averaged copy's parameters."""
        return iter(self.module.parameters())

    def buffers(self) -> Iterator[Any]:
        """:attr:`n_averaged`, then the copy's buffers (torch's order)."""
        return itertools.chain((self.n_averaged,), _model_buffers(self.module))

    def modules(self) -> Iterator[Any]:
        """This model, then every module of the copy."""
        return itertools.chain((self,), self.module.modules())

    def train(self, mode: bool = True) -> AveragedModel:
        """Set training mode here and on the copy."""
        self.training = mode
        self.module.train(mode)
        return self

    def eval(self) -> AveragedModel:
        """Evaluation mode (``train(False)``)."""
        return self.train(False)

    # -- state ----------------------------------------------------------------------------

    def _named_arrays(self) -> dict[str, Any]:
        """``n_averaged`` and the copy's named arrays, the keys torch's AveragedModel
        saves under (``module.<name>``)."""
        named = getattr(self.module, "state_dict", None)
        if named is None:
            raise TypeError(
                f"AveragedModel.state_dict needs the model to name its arrays: "
                f"{type(self.module).__name__} has no state_dict() (a mapping of names to "
                "its parameters and buffers, as torch's Module.state_dict)")
        out = {"n_averaged": self.n_averaged}
        out.update((f"module.{k}", data_of(v)) for k, v in named().items())
        return out

    def state_dict(self) -> dict[str, Any]:
        """``{"n_averaged": ..., "module.<name>": ...}``, torch's layout: the live arrays
        (as torch's ``Module.state_dict`` returns its tensors), named by the copy's own
        ``state_dict()``, which a non-torch model must offer for this."""
        return dict(self._named_arrays())

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> Any:
        """Copy ``state_dict``'s arrays (of any backend: a torch AveragedModel's
        state_dict loads as it is) into :attr:`n_averaged` and the copy's arrays, cast
        to their dtypes. Every key and shape is checked first, with torch's messages;
        nothing is written unless all match. Returns ``(missing_keys,
        unexpected_keys)`` as a named tuple, as torch does."""
        ours = self._named_arrays()
        missing = [k for k in ours if k not in state_dict]
        unexpected = [k for k in state_dict if k not in ours]
        errors = []
        pairs = []
        for key, dst in ours.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            if not array_api_compat.is_array_api_obj(value):
                errors.append(f'While copying the parameter named "{key}", expected an '
                              f"array from checkpoint but received {type(value)}")
                continue
            if tuple(value.shape) != tuple(dst.shape):
                errors.append(f"size mismatch for {key}: copying a param with shape "
                              f"{tuple(value.shape)} from checkpoint, the shape in current "
                              f"model is {tuple(dst.shape)}.")
                continue
            pairs.append((dst, value))
        if strict:
            if unexpected:
                errors.insert(0, "Unexpected key(s) in state_dict: "
                              + ", ".join(f'"{k}"' for k in unexpected) + ". ")
            if missing:
                errors.insert(0, "Missing key(s) in state_dict: "
                              + ", ".join(f'"{k}"' for k in missing) + ". ")
        if errors:
            raise RuntimeError("Error(s) in loading state_dict for AveragedModel:\n\t"
                               + "\n\t".join(errors))
        for dst, value in pairs:
            write_into(dst, _detached(value))
        return _IncompatibleKeys(missing, unexpected)

    # -- averaging ------------------------------------------------------------------------

    def update_parameters(self, model: Any) -> None:
        """Fold ``model``'s current parameters (and buffers) into the average."""
        if self.use_buffers:
            ours = itertools.chain(self.module.parameters(), _model_buffers(self.module))
            theirs = itertools.chain(model.parameters(), _model_buffers(model))
        else:
            ours, theirs = self.parameters(), model.parameters()
        pairs = []
        first = _count(self.n_averaged) == 0
        with _no_grad([self.n_averaged]):
            for p_avg, p_model in zip(ours, theirs):
                avg = _detached(data_of(p_avg))
                be = get_backend(avg)
                cur = _detached(data_of(p_model))
                if (type(get_backend(cur)) is not type(be)
                        or str(get_backend(cur).device(cur)) != str(be.device(avg))):
                    cur = be.convert(cur, device=be.device(avg))
                pairs.append((avg, cur))
                if first:
                    write_into(avg, cur)
            if not first:
                self._average(pairs)
            if not self.use_buffers:
                # the statistics of the model itself, not averaged
                for b_avg, b_model in zip(_model_buffers(self.module), _model_buffers(model),
                                          strict=True):
                    write_into(_detached(b_avg), _detached(b_model))
            self.n_averaged += 1

    def _average(self, pairs: list[tuple[Any, Any]]) -> None:
        if self.avg_fn is not None and self.multi_avg_fn is None:
            for avg, cur in pairs:
                n = self._count_on(avg)
                write_into(avg, self.avg_fn(avg, cur, n))
            return
        for group in _device_groups(pairs):
            avgs, curs = [a for a, _ in group], [c for _, c in group]
            n = self._count_on(avgs[0])
            if self.multi_avg_fn is not None:
                self.multi_avg_fn(avgs, curs, n)
            elif _on_accelerator(avgs[0]):
                get_swa_multi_avg_fn()(avgs, curs, n)
            else:
                for avg, cur in group:
                    write_into(avg, swa_avg(avg, cur, n))

    def _count_on(self, like: Any) -> Any:
        """:attr:`n_averaged` on ``like``'s backend and device (torch's ``.to(device)``)."""
        be = get_backend(like)
        n = self.n_averaged
        if type(get_backend(n)) is be.__class__ and str(be.device(n)) == str(be.device(like)):
            return n
        return be.convert(n, device=be.device(like))


def _to_device(module: Any, device: Any) -> Any:
    to = getattr(module, "to", None)
    if to is not None:
        return to(device)
    for x in itertools.chain(module.parameters(), _model_buffers(module)):
        arr = data_of(x)
        if str(get_backend(arr).device(arr)) != str(device):
            raise ValueError(f"AveragedModel(device={device!r}): the model has no to(device) "
                             f"method and holds an array on {get_backend(arr).device(arr)}")
    return module


_TORCH_CLASS: list[type] = []


def _torch_averaged_model() -> type:
    """``AveragedModel`` for torch modules: an ``nn.Module`` sharing the averaging code
    (built on first use, so that importing portopt never imports torch)."""
    if _TORCH_CLASS:
        return _TORCH_CLASS[0]
    import torch

    class TorchAveragedModel(torch.nn.Module, AveragedModel):
        __doc__ = AveragedModel.__doc__
        n_averaged: Any

        def __init__(self, model: Any, device: Any = None, avg_fn: Any = None,
                     multi_avg_fn: Any = None, use_buffers: bool = False) -> None:
            torch.nn.Module.__init__(self)
            if avg_fn is not None and multi_avg_fn is not None:
                raise AssertionError("Only one of avg_fn and multi_avg_fn should be provided")
            self.module = copy.deepcopy(model)
            if device is not None:
                self.module = self.module.to(device)
            self.register_buffer("n_averaged",
                                 torch.tensor(0, dtype=torch.long, device=device))
            self.avg_fn = avg_fn
            self.multi_avg_fn = multi_avg_fn
            self.use_buffers = use_buffers

        def forward(self, *args: Any, **kwargs: Any) -> Any:
            return self.module(*args, **kwargs)

    TorchAveragedModel.__name__ = TorchAveragedModel.__qualname__ = "_TorchAveragedModel"
    TorchAveragedModel.__module__ = __name__
    _TORCH_CLASS.append(TorchAveragedModel)
    return TorchAveragedModel


def __getattr__(name: str) -> Any:
    # lets pickle find the torch flavour of AveragedModel in a new process
    if name == "_TorchAveragedModel":
        return _torch_averaged_model()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _is_batch_norm(module: Any) -> bool:
    if _is_torch_module(module):
        return isinstance(module, sys.modules["torch"].nn.modules.batchnorm._BatchNorm)
    return all(hasattr(module, a) for a in ("running_mean", "running_var", "momentum",
                                            "reset_running_stats"))


def update_bn(loader: Iterable[Any], model: Any, device: Any = None) -> None:
    """Recompute the batch-norm running statistics of ``model`` with one pass over
    ``loader``.

    Every batch-norm layer's statistics are reset and its ``momentum`` set to ``None``
    (a cumulative average over the pass); the model runs in training mode on each batch
    (an array, or a list/tuple whose first item is the input), then the momenta and the
    model's training mode are restored. Use it on an :class:`AveragedModel` whose buffers
    were not averaged.

    Args:
        loader: an iterable of batches.
        model: the model (a torch module, or one following the protocol).
        device: move each input there first (torch's ``.to(device)``; other arrays are
            converted by their backend).
    """
    momenta: list[tuple[Any, Any]] = []  # pairs, not a dict: a layer need not be hashable
    seen: set[int] = set()
    for module in model.modules():
        if _is_batch_norm(module) and id(module) not in seen:
            seen.add(id(module))
            module.reset_running_stats()
            momenta.append((module, module.momentum))
    if not momenta:
        return
    no_grad = sys.modules["torch"].no_grad() if _is_torch_module(model) else nullcontext()
    with no_grad:
        was_training = model.training
        model.train()
        for module, _ in momenta:
            module.momentum = None
        for batch in loader:
            if isinstance(batch, (list, tuple)):
                batch = batch[0]
            if device is not None:
                if array_api_compat.is_torch_array(batch):
                    batch = batch.to(device)
                else:
                    batch = get_backend(batch).convert(batch, device=device)
            model(batch)
        for module, momentum in momenta:
            module.momentum = momentum
        model.train(was_training)


class SWALR(LRScheduler):
    """Anneals each param group's lr to ``swa_lr`` over ``anneal_epochs`` epochs, then
    keeps it there; used for the averaging phase of SWA.

    Like torch it is recursive: each step starts from the lr the group holds, so it takes
    over smoothly from whatever schedule ran before. It counts steps with ``_step_count``.

    Args:
        optimizer: the optimizer whose lrs are scheduled.
        swa_lr: the lr to anneal to, one for all groups or one per group (kept as the
            group key ``swa_lr``).
        anneal_epochs: epochs of the annealing (an int >= 0, default 10).
        anneal_strategy: ``"cos"`` (default) or ``"linear"``.
        last_epoch: the last epoch done (``-1`` to start).
    """

    def __init__(self, optimizer: Any, swa_lr: float, anneal_epochs: int = 10,
                 anneal_strategy: Literal["cos", "linear"] = "cos",
                 last_epoch: int = -1) -> None:
        swa_lrs = format_param("swa_lr", optimizer, swa_lr)
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError("anneal_strategy must be one of 'cos' or 'linear', instead got "
                             f"{anneal_strategy}")
        if not isinstance(anneal_epochs, int) or anneal_epochs < 0:
            raise ValueError(f"anneal_epochs must be equal or greater than 0, got {anneal_epochs}")
        self.optimizer = optimizer
        with unchanged_on_error(self, optimizer):
            for value, group in zip(swa_lrs, optimizer.param_groups):
                group["swa_lr"] = value
            self._set_anneal_func(anneal_strategy)
            self.anneal_epochs = anneal_epochs
            super().__init__(optimizer, last_epoch)

    def _set_anneal_func(self, anneal_strategy: str) -> None:
        self._anneal_strategy = anneal_strategy
        self.anneal_func = (_schedules.swa_cos_factor if anneal_strategy == "cos"
                            else _schedules.swa_linear_factor)

    def get_lr(self) -> list[Any]:
        self._warn_outside_step()
        step = self._step_count - 1
        if self.anneal_epochs == 0:
            step = max(1, step)
        span = max(1, self.anneal_epochs)
        # the lr the annealing started from, recovered from the one the group holds
        prev_alpha = self.anneal_func(max(0, min(1, (step - 1) / span)))
        alpha = self.anneal_func(max(0, min(1, step / span)))
        groups = self.optimizer.param_groups
        starts = [group["swa_lr"] if prev_alpha == 1
                  else (group["lr"] - prev_alpha * group["swa_lr"]) / (1 - prev_alpha)
                  for group in groups]
        return [group["swa_lr"] * alpha + start * (1 - alpha)
                for group, start in zip(groups, starts, strict=True)]

    def state_dict(self) -> dict[str, Any]:
        """The attributes, all but the optimizer and the annealing function."""
        return {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "anneal_func")}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the attributes and the annealing function named by the state."""
        self.__dict__.update(state_dict)
        self._set_anneal_func(self._anneal_strategy)
