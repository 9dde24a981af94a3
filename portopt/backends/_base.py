"""The :class:`Backend` base class: what portopt needs from an array library beyond the standard."""

from __future__ import annotations

from typing import Any, ClassVar

import array_api_compat
import numpy as np


class Backend:
    """One array library as portopt sees it.

    Kernels only ever see ``xp``, the library's Array API namespace. A backend adds
    what the standard cannot say: writing results back into the user's arrays in
    place, moving values between libraries and devices (for ``load_state_dict`` and
    the tests), zero-copy complex views where the library has them, the host scalar
    torch uses for ``state["step"]``, and optional fast paths.

    Subclasses set :attr:`name` and :attr:`module_name` and implement :meth:`owns`.
    One instance exists per array type (see :func:`portopt.backends.get_backend`).
    """

    #: Short name used in messages, test ids and the ``portopt conformance`` table.
    name: ClassVar[str] = ""
    #: The ``sys.modules`` key of the library. The registry only asks :meth:`owns`
    #: once this module has been imported by someone else, so portopt never imports
    #: a framework to find out what an array is.
    module_name: ClassVar[str] = ""
    #: Whether arrays of this library can be written in place. Parameters of an
    #: immutable library get their ``.data`` rebound instead.
    mutable: ClassVar[bool] = True

    def __init__(self, example: Any) -> None:
        self.xp = array_api_compat.array_namespace(example)

    @classmethod
    def owns(cls, x: Any) -> bool:
        """Whether ``x`` is an array of this library (called only once it is imported)."""
        raise NotImplementedError(f"{cls.__name__} must define owns()")

    def __repr__(self) -> str:
        return f"<portopt backend {self.name!r}>"

    # -- description -------------------------------------------------------------------

    def device(self, x: Any) -> Any:
        """The device ``x`` lives on, as the library names it."""
        return array_api_compat.device(x)

    def dtype_name(self, dtype: Any) -> str:
        """A short dtype name (``float32``) for messages and reports."""
        return str(dtype).rsplit(".", 1)[-1]

    def is_floating(self, x: Any) -> bool:
        """Whether ``x`` has a real floating dtype (torch's ``is_floating_point``)."""
        return bool(self.xp.isdtype(x.dtype, "real floating"))

    def is_complex(self, x: Any) -> bool:
        """Whether ``x`` has a complex dtype."""
        return bool(self.xp.isdtype(x.dtype, "complex floating"))

    # -- writing -----------------------------------------------------------------------

    def is_writable(self, x: Any) -> bool:
        """Whether ``assign`` can write into ``x`` (checked before a step changes anything)."""
        return self.mutable

    def assign(self, dst: Any, src: Any) -> Any:
        """Write ``src`` into ``dst`` in place and return ``dst``."""
        dst[...] = src
        return dst

    # -- moving values -----------------------------------------------------------------

    def to_numpy(self, x: Any) -> np.ndarray:
        """A NumPy copy (or view) of ``x``, on the host."""
        return np.asarray(x)

    def from_numpy(self, a: np.ndarray, *, device: Any = None) -> Any:
        """An array of this library holding a copy of ``a``, on ``device``."""
        return self.xp.asarray(np.array(a, copy=True), device=device)

    def convert(self, value: Any, *, device: Any = None, dtype: Any = None) -> Any:
        """A new array of this library with ``value``'s contents.

        ``value`` may belong to any backend; it is always copied, so the result never
        aliases the caller's array. ``dtype`` (of this library) casts; ``None`` keeps the
        value's own dtype.
        """
        from . import get_backend

        source = get_backend(value)
        if type(source) is type(self):
            out = self.xp.asarray(value, copy=True)
            if device is not None and self.device(out) != device:
                out = array_api_compat.to_device(out, device)
        else:
            out = self.from_numpy(source.to_numpy(value), device=device)
        if dtype is not None and out.dtype != dtype:
            out = self.xp.astype(out, dtype)
        return out

    def step_scalar(self, value: float) -> Any:
        """The 0-d host scalar torch keeps in ``state["step"]`` (float32), for this library."""
        return self.xp.asarray(value, dtype=self.xp.float32)

    def convert_step(self, value: Any) -> Any:
        """A copy of a saved ``step`` in this library's host form, keeping its dtype."""
        from . import get_backend

        host = np.asarray(get_backend(value).to_numpy(value))
        return self.xp.asarray(host.copy(), dtype=self._dtype_like_numpy(host.dtype))

    def _dtype_like_numpy(self, np_dtype: np.dtype) -> Any:
        return getattr(self.xp, np.dtype(np_dtype).name)

    # -- complex views -----------------------------------------------------------------

    def view_as_real(self, x: Any) -> Any:
        """``x`` (complex) as a real array with a trailing axis of 2 (real, imaginary).

        The generic version copies; libraries with strided views override it.
        """
        xp = self.xp
        return xp.stack([xp.real(x), xp.imag(x)], axis=-1)

    def view_as_complex(self, x: Any) -> Any:
        """Inverse of :meth:`view_as_real`."""
        xp = self.xp
        cdtype = xp.complex64 if x.dtype == xp.float32 else xp.complex128
        re = xp.astype(x[..., 0], cdtype)
        im = xp.astype(x[..., 1], cdtype)
        # (b + 0j) * 1j is exactly (0, b) for finite b; libraries with complex views
        # override this and stay exact for infinities too.
        return re + im * 1j

    # -- sparse updates ----------------------------------------------------------------

    def put_rows(self, x: Any, rows: Any, values: Any) -> Any:
        """A copy of ``x`` with row ``rows[k]`` replaced by ``values[k]``; rows are unique.

        The standard has no scatter: the generic version finds, for every row of ``x``,
        its slot in the sorted ``rows`` and selects with ``where``.
        """
        xp = self.xp
        n, k = x.shape[0], rows.shape[0]
        if k == 0:
            return xp.asarray(x, copy=True)
        order = xp.argsort(rows)
        ranked = xp.take(rows, order)
        every_row = xp.arange(n, dtype=rows.dtype, device=self.device(x))
        slot = xp.clip(xp.searchsorted(ranked, every_row), 0, k - 1)
        hit = xp.reshape(xp.take(ranked, slot) == every_row, (n,) + (1,) * (len(x.shape) - 1))
        return xp.where(hit, xp.take(values, xp.take(order, slot), axis=0), x)

    def index_add(self, x: Any, rows: Any, values: Any) -> Any:
        """A copy of ``x`` with ``values[k]`` added to row ``rows[k]``, in order of ``k``.

        ``x`` has shape ``(n, *dense)``, ``rows`` ``(k,)`` and ``values`` ``(k, *dense)``;
        repeated rows accumulate one entry at a time, in stored order (as torch's
        ``index_add`` and ``coalesce`` on the CPU). The generic version adds in passes
        whose rows are unique (:func:`row_passes`).
        """
        xp = self.xp
        out = xp.asarray(x, copy=True)
        for pick in row_passes(xp, rows):
            at = xp.take(rows, pick)
            out = self.put_rows(out, at, xp.take(out, at, axis=0) + xp.take(values, pick, axis=0))
        return out

    # -- fast paths --------------------------------------------------------------------

    def fused(self, algorithm: str) -> Any:
        """A fused implementation of ``algorithm`` for this library, or ``None``."""
        return None


def row_passes(xp: Any, rows: Any) -> list[Any]:
    """Entry positions grouped so that each group holds every row at most once: group
    ``j`` has the ``j``-th occurrence of each row, so applying the groups in order
    applies the entries of each row in stored order."""
    if rows.shape[0] == 0:
        return []
    order = xp.argsort(rows, stable=True)
    ranked = xp.take(rows, order)
    first = xp.searchsorted(ranked, ranked, side="left")
    rank = xp.arange(rows.shape[0], dtype=first.dtype, device=array_api_compat.device(rows))
    occurrence = xp.take(rank - first, xp.argsort(order))
    return [xp.nonzero(occurrence == j)[0] for j in range(int(xp.max(occurrence)) + 1)]
