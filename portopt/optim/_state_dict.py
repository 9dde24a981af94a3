"""``state_dict`` and ``load_state_dict`` in torch's layout, with torch's loading rules.

Kept apart from the shell's stepping: :class:`StateDictMixin` is a base of
:class:`~portopt.optim.Optimizer` and uses its ``param_groups``, ``state``, hook
dictionaries and ``__setstate__``.
"""

from __future__ import annotations

from collections import defaultdict
from copy import deepcopy
from itertools import chain
from typing import Any

import array_api_compat

from ..backends import get_backend
from ..parameter import SparseGrad
from ._params import data_of, is_param, is_sparse


class StateDictMixin:
    """torch's ``state_dict`` / ``load_state_dict`` for the optimizer shell."""

    param_groups: list[dict[str, Any]]
    state: Any

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state in torch's layout.

        Returns:
            ``{"state": {index: {key: value}}, "param_groups": [group, ...]}``. Indices
            number the parameters across groups in order; each group holds its
            hyper-parameters, ``"params"`` (the indices) and ``"param_names"`` when the
            optimizer was built from named parameters. As in torch, the state values
            are the optimizer's own arrays, not copies.
        """
        for pre_hook in self._optimizer_state_dict_pre_hooks.values():
            pre_hook(self)

        index: dict[int, int] = {}
        start = 0

        def pack_group(group: dict[str, Any]) -> dict[str, Any]:
            nonlocal start
            packed = {k: v for k, v in group.items() if k != "params"}
            for i, p in enumerate(group["params"], start):
                index.setdefault(id(p), i)
            packed["params"] = [index[id(p)] for p in group["params"]]
            start += len(packed["params"])
            return packed

        param_groups = [pack_group(g) for g in self.param_groups]
        packed_state = {(index[id(k)] if is_param(k) else k): v for k, v in self.state.items()}
        state_dict = {"state": packed_state, "param_groups": param_groups}

        for post_hook in self._optimizer_state_dict_post_hooks.values():
            result = post_hook(self, state_dict)
            if result is not None:
                state_dict = result
        return state_dict

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state_dict made by :meth:`state_dict` here or by torch.optim.

        Arrays of any backend are copied onto each parameter's backend and device;
        floating values take the parameter's dtype when it is real floating, and
        ``step`` keeps its own dtype, as in torch. Parameters are matched by position;
        ``param_names`` in the loaded groups replace the current ones.

        Raises:
            ValueError: with torch's messages, when the number or sizes of the groups
                differ. Nothing changes when anything raises.
        """
        state_dict = state_dict.copy()
        for pre_hook in self._optimizer_load_state_dict_pre_hooks.values():
            result = pre_hook(self, state_dict)
            if result is not None:
                state_dict = result

        groups = self.param_groups
        saved_groups = deepcopy(state_dict["param_groups"])
        if len(groups) != len(saved_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        if any(len(g["params"]) != len(s["params"]) for g, s in zip(groups, saved_groups)):
            raise ValueError(
                "loaded state dict contains a parameter group that doesn't match the size "
                "of optimizer's group"
            )

        id_map = dict(zip(chain.from_iterable(g["params"] for g in saved_groups),
                          chain.from_iterable(g["params"] for g in groups)))
        flags = {}
        for g in state_dict["param_groups"]:
            for i in g["params"]:
                flags.setdefault(i, (bool(g.get("fused")), bool(g.get("capturable"))))

        state: defaultdict[Any, Any] = defaultdict(dict)
        for key, value in state_dict["state"].items():
            if key in id_map:
                param = id_map[key]
                state[param] = self._load_value(data_of(param), value, None,
                                                flags.get(key, (False, False)))
            else:
                state[key] = value

        new_groups = []
        for group, saved in zip(groups, saved_groups):
            self._adopt_group_arrays(group, saved)
            saved["params"] = group["params"]
            if "param_names" in group and "param_names" not in saved:
                saved["param_names"] = group["param_names"]
            new_groups.append(saved)
        # __setstate__ reads what older formats lack and can raise (a state without
        # `step`); it changes only the new groups and state, so putting the old
        # attributes back undoes it
        attributes = dict(self.__dict__)
        try:
            self.__setstate__({"state": state, "param_groups": new_groups})
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(attributes)
            raise

        for post_hook in self._optimizer_load_state_dict_post_hooks.values():
            post_hook(self)

    @staticmethod
    def _adopt_group_arrays(group: dict[str, Any], saved: dict[str, Any]) -> None:
        """Array hyper-parameters of a loaded group (a torch state_dict's tensor ``lr``,
        say) become arrays of the group's own backend, with their dtype; torch keeps
        them as saved, which for a torch optimizer is the same thing."""
        if not group["params"]:
            return
        data = data_of(group["params"][0])
        be = get_backend(data)

        def adopt(value: Any) -> Any:
            if isinstance(value, tuple):
                return tuple(adopt(v) for v in value)
            if (array_api_compat.is_array_api_obj(value)
                    and type(get_backend(value)) is not type(be)):
                return be.convert(value, device=be.device(data))
            return value

        for key, value in saved.items():
            if key not in ("params", "param_names"):
                saved[key] = adopt(value)

    def _load_value(self, data: Any, value: Any, key: Any, flags: tuple[bool, bool]) -> Any:
        """Copy one loaded state value onto ``data``'s backend by torch's casting rules."""
        if isinstance(value, dict):
            return {k: self._load_value(data, v, k, flags) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self._load_value(data, v, None, flags) for v in value)
        if is_sparse(value):  # e.g. SGD's momentum buffer under sparse gradients
            return _sparse_like(data, value)
        if not array_api_compat.is_array_api_obj(value):
            return value
        be = get_backend(data)
        if key == "step":
            fused, capturable = flags
            if fused or capturable:
                return be.convert(value, device=be.device(data), dtype=be.xp.float32)
            return be.convert_step(value)
        if be.is_floating(data):
            return be.convert(value, device=be.device(data), dtype=data.dtype)
        return be.convert(value, device=be.device(data))


def _sparse_like(data: Any, value: Any) -> Any:
    """A copy of sparse ``value`` on ``data``'s backend and device, as a sparse value of
    that backend; floating values take ``data``'s dtype when it is real floating."""
    be = get_backend(data)
    device = be.device(data)
    dtype = data.dtype if be.is_floating(data) else None
    if isinstance(value, SparseGrad):
        indices, values, shape = value.indices, value.values, value.shape
    else:
        if be.name == "torch":
            return value.detach().to(device=device, dtype=dtype, copy=True)
        indices, values, shape = value._indices(), value._values(), tuple(value.shape)
    indices = be.convert(indices, device=device)
    values = be.convert(values, device=device, dtype=dtype)
    if be.name == "torch":
        return be.torch.sparse_coo_tensor(indices, values, shape, check_invariants=False)
    return SparseGrad(indices, values, shape, check_invariants=False)
