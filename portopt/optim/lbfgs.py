"""L-BFGS with an optional strong-Wolfe line search: torch's ``LBFGS``.

Unlike the other algorithms, L-BFGS works on all parameters at once, as one flat vector,
and needs the objective itself (a closure) rather than one gradient per step. The
kernel :func:`lbfgs` is pure apart from calling that objective; the class gathers the
parameters and gradients into flat vectors (complex ones as real pairs) and writes the
result back.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import array_api_compat
from array_api_compat import array_namespace

from ..backends import get_backend
from ..parameter import Parameter, SparseGrad, _check_grad
from ._checks import check_one_element, is_array, to_scalar
from ._math import add_scaled, rdiv, view_as_complex, view_as_real
from ._params import data_of, is_sparse
from ._sparse import add_rows, sparse_rows
from .optimizer import Optimizer, _grad_enabled

__all__ = ["LBFGS", "LBFGSState", "lbfgs", "lbfgs_init"]


class LBFGSState(NamedTuple):
    """The optimizer's only state (torch keeps it under the first parameter).

    Scalars are Python numbers or 0-d arrays exactly where torch has numbers or 0-d
    tensors; ``None`` means the entry does not exist yet. The fields are in the order
    torch usually creates the keys.
    """

    func_evals: int = 0  # objective evaluations, over all steps
    n_iter: int = 0  # iterations, over all steps
    al: list | None = None  # two-loop coefficients, ``history_size`` slots
    d: Any = None  # last search direction (flat)
    t: Any = None  # last step length
    old_dirs: list | None = None  # gradient differences y of the history
    old_stps: list | None = None  # steps s of the history
    ro: list | None = None  # 1 / (y . s) of each pair
    H_diag: Any = None  # scale of the initial inverse Hessian, (y . s) / (y . y)
    prev_flat_grad: Any = None  # gradient at the start of the last iteration
    prev_loss: float | None = None  # loss at the start of the last iteration


def lbfgs_init() -> LBFGSState:
    """The state before the first step: both counters at zero, no history."""
    return LBFGSState()


def _dot(a: Any, b: Any) -> Any:
    """``a . b`` as a 0-d array; torch tensors use torch's own dot, which sums as torch's
    LBFGS does (other libraries sum in their own order, an ULP or so apart)."""
    if array_api_compat.is_torch_array(a):
        return a.dot(b)
    return array_namespace(a, b).vecdot(a, b)


def _max_abs(v: Any) -> Any:
    xp = array_namespace(v)
    return xp.max(xp.abs(v))


def _mul(v: Any, s: Any) -> Any:
    """``v * s`` for a host number or 0-d array ``s``, in ``v``'s dtype: torch never lets
    a 0-d tensor widen a vector (NumPy and the standard would promote to float64)."""
    if array_api_compat.is_array_api_obj(s) and not array_api_compat.is_torch_array(v):
        s = array_namespace(v).astype(s, v.dtype)
    return v * s


def _cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None):
    """Minimizer of the cubic through ``(x1, f1)`` and ``(x2, f2)`` with slopes ``g1``,
    ``g2``, clamped to ``bounds`` (default: the interval); the midpoint of the bounds
    when the cubic has no minimum. Numbers and 0-d arrays mix as in torch."""
    if bounds is not None:
        xmin_bound, xmax_bound = bounds
    else:
        xmin_bound, xmax_bound = (x1, x2) if x1 <= x2 else (x2, x1)
    d1 = g1 + g2 - rdiv(3 * (f1 - f2), x1 - x2)
    d2_square = d1 * d1 - g1 * g2  # torch squares with d1 ** 2, i.e. d1 * d1
    if d2_square >= 0:
        d2 = array_namespace(d2_square).sqrt(d2_square)  # slopes are 0-d arrays
        if x1 <= x2:
            min_pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
        else:
            min_pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
        return min(max(min_pos, xmin_bound), xmax_bound)
    return (xmin_bound + xmax_bound) / 2.0


def _strong_wolfe(obj_func, x, t, d, f, g, gtd, c1=1e-4, c2=0.9, tolerance_change=1e-9,
                  max_ls=25):
    """Line search along ``d`` from ``x`` for a step ``t`` meeting the strong Wolfe
    conditions (sufficient decrease ``c1``, curvature ``c2``): first bracket such a step,
    then zoom into the bracket by cubic interpolation. At most ``max_ls`` evaluations of
    ``obj_func(x, t, d) -> (loss, grad)``.

    Returns:
        ``(loss, grad, t, evaluations)`` at the step chosen.
    """
    d_norm = _max_abs(d)
    f_new, g_new = obj_func(x, t, d)
    ls_func_evals = 1
    gtd_new = _dot(g_new, d)

    # bracketing: grow t until an interval is known to hold an acceptable step
    t_prev, f_prev, g_prev, gtd_prev = 0, f, g, gtd
    done = False
    ls_iter = 0
    while ls_iter < max_ls:
        if f_new > (f + c1 * t * gtd) or (ls_iter > 1 and f_new >= f_prev):
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new], [gtd_prev, gtd_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bracket_f, bracket_g = [t], [f_new], [g_new]
            done = True
            break
        if gtd_new >= 0:
            bracket, bracket_f = [t_prev, t], [f_prev, f_new]
            bracket_g, bracket_gtd = [g_prev, g_new], [gtd_prev, gtd_new]
            break
        # extrapolate, at least 1% beyond t and at most 10 t
        min_step = t + 0.01 * (t - t_prev)
        max_step = t * 10
        tmp = t
        t = _cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new,
                               bounds=(min_step, max_step))
        t_prev, f_prev, g_prev, gtd_prev = tmp, f_new, g_new, gtd_new
        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = _dot(g_new, d)
        ls_iter += 1

    if ls_iter == max_ls:  # out of evaluations: the bracket is [0, last t]
        bracket, bracket_f, bracket_g = [0, t], [f, f_new], [g, g_new]

    # zoom: shrink the bracket until its best point meets the conditions. (As in torch,
    # a negative max_ls leaves the bracket unbound here and raises UnboundLocalError.)
    insuf_progress = False
    low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = _cubic_interpolate(bracket[0], bracket_f[0], bracket_gtd[0],
                               bracket[1], bracket_f[1], bracket_gtd[1])
        # a trial point within 10% of an end of the bracket makes little progress: the
        # second time in a row (or when outside the bracket) move it 10% inside instead
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            if insuf_progress or t >= max(bracket) or t <= min(bracket):
                if abs(t - max(bracket)) < abs(t - min(bracket)):
                    t = max(bracket) - eps
                else:
                    t = min(bracket) + eps
                insuf_progress = False
            else:
                insuf_progress = True
        else:
            insuf_progress = False

        f_new, g_new = obj_func(x, t, d)
        ls_func_evals += 1
        gtd_new = _dot(g_new, d)
        ls_iter += 1

        if f_new > (f + c1 * t * gtd) or f_new >= bracket_f[low_pos]:
            # no sufficient decrease, or not below the low end: t becomes the high end
            bracket[high_pos], bracket_f[high_pos] = t, f_new
            bracket_g[high_pos], bracket_gtd[high_pos] = g_new, gtd_new
            low_pos, high_pos = (0, 1) if bracket_f[0] <= bracket_f[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high_pos] - bracket[low_pos]) >= 0:
                # the slope points away from the high end: the low end becomes the high
                bracket[high_pos], bracket_f[high_pos] = bracket[low_pos], bracket_f[low_pos]
                bracket_g[high_pos] = bracket_g[low_pos]
                bracket_gtd[high_pos] = bracket_gtd[low_pos]
            bracket[low_pos], bracket_f[low_pos] = t, f_new
            bracket_g[low_pos], bracket_gtd[low_pos] = g_new, gtd_new

    return bracket_f[low_pos], bracket_g[low_pos], bracket[low_pos], ls_func_evals


def _two_loop(flat_grad: Any, old_dirs: list, old_stps: list, ro: list, H_diag: Any,
              al: list) -> Any:
    """The L-BFGS direction ``-H g`` by the two-loop recursion; fills ``al``."""
    q = -flat_grad
    for i in range(len(old_dirs) - 1, -1, -1):
        al[i] = _dot(old_stps[i], q) * ro[i]
        q = add_scaled(q, old_dirs[i], float(-al[i]))  # q.add_(y_i, alpha=-al_i)
    r = _mul(q, H_diag)
    for i in range(len(old_dirs)):
        be_i = _dot(old_dirs[i], r) * ro[i]
        r = add_scaled(r, old_stps[i], float(al[i] - be_i))
    return r


def lbfgs(x: Any, objective: Callable[[Any], tuple[Any, Any]], state: LBFGSState, *,
          lr: Any = 1, max_iter: int = 20, max_eval: int | None = None,
          tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9,
          history_size: int = 100, line_search_fn: str | None = None,
          ) -> tuple[Any, Any, LBFGSState]:
    r"""One L-BFGS step (up to ``max_iter`` iterations) from the flat vector ``x``.

    Pure apart from calling ``objective``: returns ``(new_x, loss, new_state)`` and
    mutates neither ``x`` nor ``state``.

    .. math::
        \begin{align*}
        s_k &= t_k d_k, \quad y_k = g_{k+1} - g_k, \quad \rho_k = 1 / y_k^\top s_k
            \qquad (\text{a pair is kept only if } y_k^\top s_k > 10^{-10}) \\
        H &\leftarrow (I - \rho_k s_k y_k^\top)\, H\, (I - \rho_k y_k s_k^\top)
            + \rho_k s_k s_k^\top \quad \text{over the last pairs, from }
            H = \tfrac{y^\top s}{y^\top y} I \\
        d &= -H g \quad (\text{two-loop recursion}), \qquad x \leftarrow x + t\, d
        \end{align*}

    with ``history_size`` pairs at most. The first iteration ever steps along
    :math:`-g` with :math:`t = \min(1, 1/\lVert g\rVert_1)\,\gamma`; later ones take
    :math:`t = \gamma` (the learning rate), or the strong-Wolfe step found from there.
    A step ends after ``max_iter`` iterations or ``max_eval`` evaluations, or when
    :math:`\max|g| \le` ``tolerance_grad``, :math:`g^\top d > -` ``tolerance_change``,
    :math:`\max|t d| \le` ``tolerance_change`` or the loss changes by less than
    ``tolerance_change``. As in torch, the line search does not see ``tolerance_change``
    (it keeps its own 1e-9) and may use ``max_eval`` minus the evaluations made so far.

    Args:
        x: the parameters as one real 1-d array.
        objective: ``objective(x) -> (loss, grad)``: the loss (a number or 0-d array)
            and a new 1-d gradient array like ``x``, at the point given. It is called
            at ``x`` first.
        state: an :class:`LBFGSState`.
        lr, max_iter, max_eval, tolerance_grad, tolerance_change, history_size,
            line_search_fn: as in ``torch.optim.LBFGS`` (``max_eval=None`` means
            ``max_iter * 5 // 4``).

    Returns:
        ``(new_x, loss, new_state)``, with ``loss`` as ``objective`` returned it at the
        starting point.

    Raises:
        RuntimeError: ``line_search_fn`` is neither ``None`` nor ``"strong_wolfe"``
            (when the first line search would start, as in torch).
    """
    xp = array_namespace(x)
    if max_eval is None:
        max_eval = max_iter * 5 // 4
    func_evals, n_iter_total = state.func_evals, state.n_iter

    orig_loss, flat_grad = objective(x)
    loss = float(orig_loss)
    current_evals = 1
    func_evals += 1
    opt_cond = _max_abs(flat_grad) <= tolerance_grad
    if opt_cond:
        return x, orig_loss, state._replace(func_evals=func_evals, n_iter=n_iter_total)

    d, t, H_diag, al = state.d, state.t, state.H_diag, state.al
    prev_flat_grad, prev_loss = state.prev_flat_grad, state.prev_loss
    # copies: the caller's lists stay as they were
    old_dirs, old_stps, ro = (None if h is None else list(h)
                              for h in (state.old_dirs, state.old_stps, state.ro))

    def directional(x_: Any, t_: Any, d_: Any) -> tuple[float, Any]:
        raw, grad = objective(add_scaled(x_, d_, float(t_)))
        return float(raw), grad

    n_iter = 0
    while n_iter < max_iter:
        n_iter += 1
        n_iter_total += 1
        if n_iter_total == 1:  # the very first iteration: steepest descent
            d = -flat_grad
            old_dirs, old_stps, ro = [], [], []
            H_diag = 1
        else:
            y = flat_grad - prev_flat_grad
            s = _mul(d, t)
            ys = _dot(y, s)
            if ys > 1e-10:  # keep only pairs of positive curvature
                if len(old_dirs) == history_size:
                    old_dirs.pop(0)
                    old_stps.pop(0)
                    ro.pop(0)
                old_dirs.append(y)
                old_stps.append(s)
                ro.append(rdiv(1.0, ys))
                H_diag = ys / _dot(y, y)
            al = [None] * history_size if al is None else list(al)
            d = _two_loop(flat_grad, old_dirs, old_stps, ro, H_diag, al)
        prev_flat_grad, prev_loss = flat_grad, loss

        if n_iter_total == 1:
            t = min(1.0, rdiv(1.0, xp.sum(xp.abs(flat_grad)))) * lr
        else:
            t = lr
        gtd = _dot(flat_grad, d)
        if gtd > -tolerance_change:  # not a descent direction any more
            break

        ls_func_evals = 0
        if line_search_fn is not None:
            if line_search_fn != "strong_wolfe":
                raise RuntimeError("only 'strong_wolfe' is supported")

            # torch passes only max_ls: the search keeps its own tolerance_change of 1e-9
            loss, flat_grad, t, ls_func_evals = _strong_wolfe(
                directional, x, t, d, loss, flat_grad, gtd, max_ls=max_eval - current_evals)
            x = add_scaled(x, d, float(t))
            opt_cond = _max_abs(flat_grad) <= tolerance_grad
        else:
            x = add_scaled(x, d, float(t))
            if n_iter != max_iter:  # the last iteration does not evaluate its end point
                raw, flat_grad = objective(x)
                loss = float(raw)
                opt_cond = _max_abs(flat_grad) <= tolerance_grad
                ls_func_evals = 1
        current_evals += ls_func_evals
        func_evals += ls_func_evals

        if n_iter == max_iter or current_evals >= max_eval or opt_cond:
            break
        if _max_abs(_mul(d, t)) <= tolerance_change:  # the step no longer moves x
            break
        if abs(loss - prev_loss) < tolerance_change:
            break

    return x, orig_loss, LBFGSState(
        func_evals=func_evals, n_iter=n_iter_total, al=al, d=d, t=t, old_dirs=old_dirs,
        old_stps=old_stps, ro=ro, H_diag=H_diag, prev_flat_grad=prev_flat_grad,
        prev_loss=prev_loss)


class LBFGS(Optimizer):
    """L-BFGS, as ``torch.optim.LBFGS`` (after minFunc); needs ``step(closure)``.

    See :func:`portopt.functional.lbfgs` for the algorithm. All parameters form one
    group and are stepped as one flat vector (complex parameters as real pairs); each
    step evaluates the closure up to ``max_eval`` times.

    Args:
        params: parameters to optimize, in one group (per-group options are refused).
        lr: learning rate, a number or a 1-element array (default: 1).
        max_iter: iterations per step (default: 20).
        max_eval: objective evaluations per step (default: ``max_iter * 5 // 4``).
        tolerance_grad: stop when the largest gradient component is this small
            (default: 1e-7).
        tolerance_change: stop when the step or the change of the loss is this small
            (default: 1e-9).
        history_size: number of curvature pairs kept (default: 100).
        line_search_fn: ``None`` (fixed step ``lr``) or ``"strong_wolfe"``; anything
            else is refused at the first line search, as in torch.

    Differences from torch.optim:
        * A failing step (the closure raises, or a bad ``line_search_fn``) leaves the
          parameters and the state as they were; torch has already moved the
          parameters and counted ``func_evals``/``n_iter``.
        * The state's arrays and lists are replaced at each step, not changed in
          place (torch updates ``prev_flat_grad``, ``al`` and the history lists in
          place), so a ``state_dict()`` taken earlier keeps its values.
        * A deep copy (or pickle) of the optimizer can step; torch's copy loses its
          cached ``_params`` and raises AttributeError.
        * With ``max_iter <= 0`` on a fresh optimizer torch stores ``d``, ``t``,
          ``old_dirs``, ... as ``None``; portopt leaves those keys out until they
          have values.
        * Between evaluations portopt steps its own flat copy of the parameters: a
          closure that changes the parameters itself does not move the next iterate
          (torch's fixed-step path would keep the change). Parameters of several
          dtypes are stepped in their promoted dtype and rounded when written.
        * NumPy, CuPy and array-api-strict sum dot products in their own order, an ULP
          or so from torch's BLAS.
    """

    _state_type = LBFGSState
    _tensor_step = False
    _supports_sparse_grad = True
    _supports_param_groups = False

    def __init__(self, params: Any, lr: Any = 1, max_iter: int = 20,
                 max_eval: int | None = None, tolerance_grad: float = 1e-7,
                 tolerance_change: float = 1e-9, history_size: int = 100,
                 line_search_fn: str | None = None) -> None:
        check_one_element(lr)
        if not 0.0 <= to_scalar(lr):
            raise ValueError(f"Invalid learning rate: {lr}")
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        defaults = {"lr": lr, "max_iter": max_iter, "max_eval": max_eval,
                    "tolerance_grad": tolerance_grad, "tolerance_change": tolerance_change,
                    "history_size": history_size, "line_search_fn": line_search_fn}
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")

    def step(self, closure: Callable[[], Any]) -> Any:  # type: ignore[override]
        """Run up to ``max_iter`` L-BFGS iterations and return the closure's first loss.

        Args:
            closure: re-evaluates the model, sets the gradients and returns the loss;
                it runs with torch's autograd enabled when torch is loaded.
        """
        if len(self.param_groups) != 1:
            raise AssertionError(
                f"Expected exactly one param_group, but got {len(self.param_groups)}")
        group = self.param_groups[0]
        params = group["params"]
        # a parameter's array may have been swapped since the group was added
        self._check_group_backends(group)
        for p in params:
            data = data_of(p)
            be = get_backend(data)
            if be.mutable and not be.is_writable(data):
                raise ValueError(
                    f"a parameter of {type(self).__name__} is a read-only {be.name} array; "
                    "portopt updates parameters in place, so they must be writable")

        with _grad_enabled(False):
            x0 = self._gather_flat_params(params)
            written = [x0]  # the flat vector the parameters hold now

            def objective(x: Any) -> tuple[Any, Any]:
                if x is not written[0]:
                    self._set_flat_params(params, x)
                    written[0] = x
                with _grad_enabled(True):
                    loss = closure()
                return loss, self._gather_flat_grad(params)

            saved = self.state.get(params[0], {})
            state = LBFGSState(**{k: saved[k] for k in LBFGSState._fields if k in saved})
            try:
                x, loss, new_state = lbfgs(
                    x0, objective, state, lr=self._lr_like(group["lr"], x0),
                    max_iter=group["max_iter"], max_eval=group["max_eval"],
                    tolerance_grad=group["tolerance_grad"],
                    tolerance_change=group["tolerance_change"],
                    history_size=group["history_size"],
                    line_search_fn=group["line_search_fn"])
            except BaseException:
                if written[0] is not x0:
                    self._set_flat_params(params, x0)
                raise
            if x is not written[0]:
                self._set_flat_params(params, x)
        self.state[params[0]].update(
            {k: v for k, v in new_state._asdict().items() if v is not None or k in saved})
        return loss

    @staticmethod
    def _lr_like(lr: Any, x: Any) -> Any:
        """``lr`` as torch reads it (a 1-element array becomes 0-d); an array of another
        library (a torch tensor loaded from torch's state_dict) moves to ``x``'s."""
        lr = to_scalar(lr)
        if is_array(lr) and type(get_backend(lr)) is not type(get_backend(x)):
            lr = get_backend(x).convert(lr, device=get_backend(x).device(x))
        return lr

    # -- flat vectors (torch's _gather_flat_grad / _add_grad) ------------------------------

    @staticmethod
    def _flat(x: Any) -> Any:
        """``x`` as a 1-d real array (complex as interleaved real pairs)."""
        return array_namespace(x).reshape(view_as_real(x), (-1,))

    def _gather_flat_params(self, params: list[Any]) -> Any:
        views = [self._flat(data_of(p)) for p in params]
        return array_namespace(*views).concat(views)

    def _gather_flat_grad(self, params: list[Any]) -> Any:
        """All gradients as one flat vector: ``None`` as zeros, sparse ones densified."""
        views = []
        for p in params:
            data, grad = data_of(p), p.grad
            xp = array_namespace(data)
            if grad is None:
                grad = xp.zeros_like(data)
            elif isinstance(grad, SparseGrad):
                rows = sparse_rows(grad, coalesce=False)
                zeros = xp.zeros(grad.shape, dtype=grad.dtype, device=grad.device)
                grad = add_rows(zeros, rows, rows.values)
            elif is_sparse(grad):  # a torch sparse tensor
                grad = grad.to_dense()
            elif isinstance(p, Parameter):  # torch checks a tensor's grad on assignment
                _check_grad(data, grad)
            views.append(self._flat(grad))
        return array_namespace(*views).concat(views)

    def _set_flat_params(self, params: list[Any], x: Any) -> None:
        """Write consecutive slices of ``x`` into the parameters."""
        xp = array_namespace(x)
        offset = 0
        for p in params:
            data = data_of(p)
            be = get_backend(data)
            complex_ = be.is_complex(data)
            shape = (*data.shape, 2) if complex_ else tuple(data.shape)
            n = math.prod(shape)
            value = xp.reshape(x[offset:offset + n], shape)
            offset += n
            value = view_as_complex(value) if complex_ else value
            if value.dtype != data.dtype:  # parameters of several dtypes share x
                value = xp.astype(value, data.dtype)
            if be.mutable:
                be.assign(data, value)
            else:
                p.data = value
