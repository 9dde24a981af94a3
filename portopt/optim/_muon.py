"""Muon: momentum orthogonalized by a Newton–Schulz iteration in bfloat16: torch's ``Muon``."""

from __future__ import annotations

import math
import struct
import sys
from typing import Any, NamedTuple

import array_api_compat
from array_api_compat import array_namespace

from ._checks import check_one_element, to_scalar
from ._math import add_scaled, as_arrays, host, lerp, round_to_float32
from ._params import data_of, is_torch_tensor
from .optimizer import Optimizer

__all__ = ["Muon", "MuonState", "muon", "muon_init"]

#: The quintic Newton–Schulz coefficients (a, b, c) torch uses by default.
NS_COEFFICIENTS = (3.4445, -4.775, 2.0315)


class MuonState(NamedTuple):
    """State of one parameter; torch keeps no ``step`` for Muon."""

    momentum_buffer: Any


def muon_init(param: Any) -> MuonState:
    """The state before the first step: a zero momentum buffer."""
    return MuonState(array_namespace(param).zeros_like(param))


def muon(param: Any, grad: Any, state: MuonState, *, lr: Any, weight_decay: Any = 0.1,
         momentum: float = 0.95, nesterov: bool = True,
         ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS, eps: float = 1e-7,
         ns_steps: int = 5, adjust_lr_fn: str | None = None) -> tuple[Any, MuonState]:
    r"""One Muon step for a matrix. Pure: returns ``(new_param, new_state)``.

    .. math::
        \begin{align*}
        m &\leftarrow m + (1-\mu)(g - m) \\
        u &\leftarrow g + \mu\,(m - g) \text{ (nesterov)} \quad\text{or}\quad u \leftarrow m \\
        X_0 &\leftarrow \operatorname{bf16}(u)\,/\max(\lVert \operatorname{bf16}(u)\rVert_F,
            \epsilon) \text{, transposed when } u \text{ has more rows than columns} \\
        X_{i+1} &\leftarrow a X_i + (b\, G_i + c\, G_i^2)\, X_i, \qquad
            G_i = X_i X_i^\top \qquad (i < k) \\
        \theta &\leftarrow \theta\,(1 - \gamma\lambda) - \gamma\, s\, X_k, \qquad
            s = \sqrt{\max(1, A/B)} \text{ or } 0.2\sqrt{\max(A, B)}
        \end{align*}

    for an ``A x B`` parameter, momentum buffer :math:`m`, learning rate :math:`\gamma`,
    momentum :math:`\mu`, weight decay :math:`\lambda`, ``ns_coefficients``
    :math:`= (a, b, c)` and ``ns_steps`` :math:`= k`. Every matrix
    :math:`X_i`, :math:`G_i` lives in bfloat16, as in torch: torch tensors use torch's
    own bfloat16 operations; other arrays get a float32 emulation that rounds where
    torch's CPU kernels round (see :func:`_newton_schulz`). The momentum and the
    parameter stay in the parameter's dtype.

    Args:
        param: the parameter, a 2-D array.
        grad: its gradient, same shape and dtype.
        state: a :class:`MuonState`.
        lr: learning rate, a number or a 0-d array.
        weight_decay: decoupled weight decay, applied with the unadjusted ``lr``.
        momentum: momentum factor.
        nesterov: orthogonalize ``g + momentum * (buf - g)`` instead of ``buf``.
        ns_coefficients: the Newton–Schulz polynomial's coefficients ``(a, b, c)``.
        eps: lower bound of the Frobenius norm the update is divided by.
        ns_steps: number of Newton–Schulz iterations (less than 100).
        adjust_lr_fn: ``None``/``"original"`` (scale ``lr`` by ``sqrt(max(1, A/B))``)
            or ``"match_rms_adamw"`` (by ``0.2 * sqrt(max(A, B))``).

    Returns:
        ``(new_param, new_state)``.

    Raises:
        ValueError: with torch's messages, for a gradient that is not 2-D,
            ``ns_steps >= 100`` or coefficients that are not three numbers.
        RuntimeError: for an ``eps`` beyond bfloat16's range (torch's message).
    """
    xp = array_namespace(param, grad)
    _check_step(grad, ns_steps, ns_coefficients, eps)
    buf = lerp(state.momentum_buffer, grad, 1 - momentum)
    update = lerp(grad, buf, momentum) if nesterov else buf
    ortho = _newton_schulz(update, ns_coefficients, ns_steps, eps)
    adjusted_lr = _adjust_lr(lr, adjust_lr_fn, tuple(param.shape))
    # param.mul_(1 - lr * weight_decay); param.add_(ortho, alpha=-adjusted_lr)
    param = param * host(1 - lr * weight_decay)
    if not is_torch_tensor(ortho):
        ortho = xp.astype(ortho, param.dtype)  # bfloat16 values are exact in float32/64
    param, buf = as_arrays(xp, add_scaled(param, ortho, host(-adjusted_lr)), buf)
    return param, MuonState(buf)


def _check_step(grad: Any, ns_steps: int, ns_coefficients: Any, eps: float) -> None:
    """torch's step-time errors for one parameter, in torch's order."""
    if len(grad.shape) != 2:
        raise ValueError("Param gradient must be a 2D matrix")
    if ns_steps >= 100:
        raise ValueError("Number of steps must be less than 100 for computational efficiency")
    if len(ns_coefficients) != 3:
        raise ValueError("Coefficients must be a tuple of exactly 3 values")
    _bf16_scalar(eps)  # torch's clamp converts eps to bfloat16 and refuses an overflow


def _adjust_lr(lr: Any, adjust_lr_fn: str | None, shape: tuple[int, ...]) -> Any:
    """``lr`` scaled for the matrix shape, as torch's ``_adjust_lr`` (a 0-d array lr stays
    an array, so the product rounds in its dtype as torch's tensor lr does)."""
    rows, cols = shape[:2]
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        ratio = math.sqrt(max(1, rows / cols))  # like torch: ZeroDivisionError for 0 columns
    elif adjust_lr_fn == "match_rms_adamw":
        ratio = 0.2 * math.sqrt(max(rows, cols))
    else:
        ratio = 1.0
    return lr * ratio


# -- Newton–Schulz in bfloat16 ------------------------------------------------------------
#
# torch computes the orthogonalization in bfloat16. NumPy and the Array API have no
# bfloat16, so other arrays hold bfloat16 *values* in float32 and every operation rounds
# where torch 2.13's CPU kernels round (each rule below was measured against torch):
#   * float -> bfloat16 rounds to nearest, ties to even; float64 goes through float32
#     first (two roundings), as torch's conversion does;
#   * the Frobenius norm accumulates squares in float32 over 8 lanes, 16 elements per
#     chunk in memory order, then adds the lanes and the tail one by one; the float32
#     square root is rounded to bfloat16;
#   * a matrix product with m*n*k <= 4096 (torch's own gemm) sums the k products in four
#     interleaved float32 partial sums (l mod 4; the tail into the first), adds them in
#     order, and forms ``beta * c + alpha * dot`` with one fused multiply-add before one
#     rounding to bfloat16. Larger products go to oneDNN, whose blocked summation order
#     is not reproduced: a float32 matmul there differs from it in the last bfloat16
#     bit of a few elements, which the following iterations spread.
# torch tensors simply use torch's bfloat16 operations.

_BF16_MAX = 3.3895313892515355e38
_TORCH_GEMM_MAX = 16 * 16 * 16  # beyond this m*n*k torch hands bfloat16 gemm to oneDNN


def _newton_schulz(update: Any, coefficients: Any, steps: int, eps: float) -> Any:
    """torch's ``_zeropower_via_newtonschulz``: the orthogonalized update, in bfloat16
    (a bfloat16 tensor for torch, a float32 array of bfloat16 values otherwise)."""
    a, b, c = coefficients
    x = _to_bf16(update)
    # torch reduces in memory order, i.e. over the untransposed copy
    scale = _clamp_min(_bf16_norm(x), eps)
    tall = update.shape[0] > update.shape[1]
    if tall:
        x = x.T
    x = _bf16_div(x, scale)
    for _ in range(steps):
        gram = _bf16_addmm(None, x, x.T)  # x @ x.T
        gram_update = _bf16_addmm(gram, gram, gram, beta=b, alpha=c)
        x = _bf16_addmm(x, gram_update, x, beta=a)
    return x.T if tall else x


def _bf16_scalar(value: float) -> float:
    """A Python number as torch's ``Scalar.to<BFloat16>()``: through float32, with
    torch's error for a finite value beyond bfloat16's range."""
    if math.isfinite(value) and abs(value) > _BF16_MAX:
        raise RuntimeError("value cannot be converted to type c10::BFloat16 without overflow")
    single = round_to_float32(value)
    if not math.isfinite(single):
        return single
    bits = struct.unpack("<I", struct.pack("<f", single))[0]
    bits = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    return struct.unpack("<f", struct.pack("<I", bits))[0]


def _to_bf16(x: Any) -> Any:
    """``x.bfloat16()``: a bfloat16 tensor, or bfloat16 values as a float32 array."""
    if is_torch_tensor(x):
        return x.to(sys.modules["torch"].bfloat16)
    xp = array_namespace(x)
    return round_to_bf16(xp.astype(x, xp.float32))


def round_to_bf16(x: Any) -> Any:
    """Round a float32 array to the nearest bfloat16 values (ties to even), keeping float32.

    Matches torch's ``x.to(torch.bfloat16)`` element for element (subnormals, infinities
    and overflow included; NaN stays NaN). NumPy and CuPy round exactly with integer
    operations on the bits; other namespaces with an exact arithmetic rounding.
    """
    xp = array_namespace(x)
    if array_api_compat.is_numpy_array(x) or array_api_compat.is_cupy_array(x):
        bits = x.view(xp.uint32)
        # adding 0x7FFF plus the lowest kept bit rounds half to even; only NaN can wrap
        bits = (bits + (((bits >> 16) & 1) + 0x7FFF)) & 0xFFFF0000
        return xp.where(xp.isnan(x), x, bits.view(xp.float32))
    return _round_to_bf16_arithmetic(x)


def _round_to_bf16_arithmetic(x: Any) -> Any:
    """:func:`round_to_bf16` with arithmetic only: scale by a power of two so that the
    kept bits are the integer part, round half to even, scale back (in float64, where
    every step is exact)."""
    xp = array_namespace(x)
    wide = xp.astype(x, xp.float64)
    mag = xp.abs(wide)
    regular = xp.isfinite(wide) & (mag > 0)
    safe = xp.where(regular, mag, xp.ones_like(mag))
    exp = xp.floor(xp.log2(safe))
    # log2 may be off by one next to a power of two: fix the exponent exactly
    exp = xp.where(2.0 ** exp > safe, exp - 1, exp)
    exp = xp.where(2.0 ** (exp + 1) <= safe, exp + 1, exp)
    # 8 significant bits; below float32's smallest normal the spacing stays 2**-133
    ulp = 2.0 ** (xp.maximum(exp, xp.full_like(exp, -126.0)) - 7)
    rounded = xp.round(wide / ulp) * ulp
    huge = xp.copysign(xp.full_like(rounded, math.inf), rounded)
    rounded = xp.where(xp.abs(rounded) >= 2.0 ** 128, huge, rounded)  # overflow
    return xp.astype(xp.where(regular, rounded, wide), xp.float32)


def _bf16_norm(x: Any) -> Any:
    """``x.norm()`` of a bfloat16 matrix, rounded to bfloat16 (a 0-d array)."""
    if is_torch_tensor(x):
        return x.norm()
    xp = array_namespace(x)
    sq = xp.reshape(x, (-1,))
    sq = sq * sq  # exact: a bfloat16 square fits in float32
    n = sq.shape[0]
    full = n - n % 16
    lanes = xp.zeros((8,), dtype=xp.float32, device=array_api_compat.device(x))
    if full:
        # each lane adds its elements in order: a cumulative sum down the rows
        lanes = xp.cumulative_sum(xp.reshape(sq[:full], (-1, 8)), axis=0)[-1, :]
    total = lanes[0]
    for j in range(1, 8):
        total = total + lanes[j]
    for i in range(full, n):
        total = total + sq[i]
    return round_to_bf16(xp.reshape(xp.sqrt(total), (1,)))[0]


def _clamp_min(norm: Any, eps: float) -> Any:
    """``norm.clamp(min=eps)`` in bfloat16 (eps is rounded to bfloat16 first; NaN wins)."""
    if is_torch_tensor(norm):
        return norm.clamp(min=eps)
    xp = array_namespace(norm)
    return xp.maximum(norm, xp.full_like(norm, _bf16_scalar(eps)))


def _bf16_div(x: Any, scale: Any) -> Any:
    """``x.div_(scale)``: a float32 quotient rounded to bfloat16."""
    if is_torch_tensor(x):
        return x / scale
    return round_to_bf16(x / scale)


def _bf16_addmm(c: Any, a: Any, b: Any, *, beta: float = 0.0, alpha: float = 1.0) -> Any:
    """``torch.addmm(c, a, b, beta=beta, alpha=alpha)`` in bfloat16 (``a @ b`` when c is None)."""
    if is_torch_tensor(a):
        if c is None:
            return a @ b
        return sys.modules["torch"].addmm(c, a, b, beta=beta, alpha=alpha)
    out = _float32_dot(a, b) * alpha
    if c is not None and round_to_float32(beta) != 0:
        out = add_scaled(out, c, beta)  # fma(beta, c, alpha * dot), rounded once
    return round_to_bf16(out)


def _float32_dot(a: Any, b: Any) -> Any:
    """``a @ b`` for float32 matrices of bfloat16 values, summed as torch's CPU gemm sums."""
    xp = array_namespace(a, b)
    (m, k), n = a.shape, b.shape[1]
    if m * n * k > _TORCH_GEMM_MAX:
        return xp.matmul(a, b)
    products = xp.expand_dims(a, axis=1) * xp.expand_dims(b.T, axis=0)  # (m, n, k), exact
    full = k - k % 4
    partial = xp.zeros((m, n, 4), dtype=xp.float32, device=array_api_compat.device(a))
    for start in range(0, full, 4):
        partial = partial + products[:, :, start:start + 4]
    total = partial[:, :, 0]
    for i in range(full, k):
        total = total + products[:, :, i]
    for lane in range(1, 4):
        total = total + partial[:, :, lane]
    return total


# -- the optimizer --------------------------------------------------------------------------


def _size_text(p: Any) -> str:
    """The size torch prints (``torch.Size([3])``); a shape tuple for other arrays."""
    return str(p.size()) if is_torch_tensor(p) else str(tuple(data_of(p).shape))


class Muon(Optimizer):
    """Muon, as ``torch.optim.Muon``: momentum orthogonalized by Newton–Schulz.

    For 2-D parameters (hidden-layer weight matrices); optimize biases, embeddings and
    other parameters with another optimizer such as AdamW.
    See :func:`portopt.functional.muon` for the update rule.

    Args:
        params: parameters or param groups to optimize; every parameter given here
            must be 2-D.
        lr: learning rate, a number or a 1-element array (default: 1e-3).
        weight_decay: decoupled weight decay (default: 0.1).
        momentum: momentum factor (default: 0.95).
        nesterov: Nesterov momentum (default: True).
        ns_coefficients: coefficients ``(a, b, c)`` of the Newton–Schulz polynomial
            (default: (3.4445, -4.775, 2.0315)).
        eps: lower bound of the norm the update is divided by (default: 1e-7).
        ns_steps: number of Newton–Schulz iterations, less than 100 (default: 5).
        adjust_lr_fn: ``None`` or ``"original"`` (scale lr by ``sqrt(max(1, A/B))``),
            or ``"match_rms_adamw"`` (by ``0.2 * sqrt(max(A, B))``) (default: None).

    Differences from torch.optim:
        * The Newton–Schulz iteration runs in real bfloat16 on torch tensors. Other
          backends have no bfloat16: they emulate it in float32, rounding where torch
          2.13's x86-64 CPU kernels round, which reproduces torch bit for bit when each
          matrix product has m*n*k <= 4096. Larger products follow oneDNN's summation
          order in torch; there a few elements differ in their last bfloat16 bit and
          the iteration spreads that to a few bfloat16 ulps of the update. (torch on
          other CPUs or on a GPU differs from its own x86-64 results the same way.)
        * A non-2-D grad (a parameter added through ``add_param_group``, which torch
          does not check) raises before anything changes; torch has by then updated
          the earlier parameters and created state.
    """

    _state_type = MuonState
    _tensor_step = False
    _supports_complex = False

    def __init__(self, params: Any, lr: Any = 1e-3, weight_decay: float = 0.1,
                 momentum: float = 0.95, nesterov: bool = True,
                 ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
                 eps: float = 1e-7, ns_steps: int = 5, adjust_lr_fn: str | None = None) -> None:
        check_one_element(lr, "lr")
        if not 0.0 <= to_scalar(lr):
            raise ValueError(f"Learning rate should be >= 0 but is: {lr}")
        if not 0.0 <= momentum:
            raise ValueError(f"momentum should be >= 0 but is: {momentum}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"weight decay should be >= 0 but is: {weight_decay}")
        if adjust_lr_fn is not None and adjust_lr_fn not in ["original", "match_rms_adamw"]:
            raise ValueError(f"Adjust learning rate function {adjust_lr_fn} is not supported")
        defaults = {"lr": lr, "weight_decay": weight_decay, "momentum": momentum,
                    "nesterov": nesterov, "ns_coefficients": ns_coefficients, "eps": eps,
                    "ns_steps": ns_steps, "adjust_lr_fn": adjust_lr_fn}
        super().__init__(params, defaults)
        # torch checks the parameters given here only, not those of add_param_group
        for group in self.param_groups:
            for p in group["params"]:
                if len(data_of(p).shape) != 2:
                    raise ValueError(
                        "Muon only supports 2D parameters whereas we found a parameter "
                        f"with size: {_size_text(p)}"
                    )

    def _check_group(self, group: dict[str, Any], work: list[Any]) -> None:
        for item in work:
            _check_step(item.grad, group["ns_steps"], group["ns_coefficients"], group["eps"])

    def _init_state(self, data: Any, group: dict[str, Any]) -> MuonState:
        return muon_init(data)

    def _update(self, data: Any, grad: Any, state: MuonState,
                group: dict[str, Any]) -> tuple[Any, MuonState]:
        return muon(data, grad, state, lr=to_scalar(group["lr"]),
                    weight_decay=group["weight_decay"], momentum=group["momentum"],
                    nesterov=group["nesterov"], ns_coefficients=group["ns_coefficients"],
                    eps=group["eps"], ns_steps=group["ns_steps"],
                    adjust_lr_fn=group["adjust_lr_fn"])
