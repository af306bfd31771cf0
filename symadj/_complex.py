"""Complex states: their real dtype, magnitudes, and real pairings of cotangents with tangents.

A complex state is treated as the real vector of its real and imaginary parts: times,
step sizes, tolerances and error norms stay real, and every gradient is the one that
library's own autodiff gives. Those differ by a conjugate: for a real loss L of z = x + iy,
torch's ``.grad`` is ∂L/∂x + i ∂L/∂y, JAX's cotangent its conjugate (see
``Backend.conjugate_cotangents``). The derivative of L along a tangent v is then
Re(conj(z̄) v) in torch's convention and Re(z̄ v) in JAX's; :func:`real_product` is that
pairing, element by element, and the plain product for real states.
"""

from __future__ import annotations

import math
from typing import Any

from ._array_api import is_array


def is_complex(xp: Any, dtype: Any) -> bool:
    """Whether ``dtype`` is complex64 or complex128 (in ``xp``'s terms)."""
    return xp.isdtype(dtype, "complex floating")


def real_dtype(xp: Any, dtype: Any) -> Any:
    """The real floating dtype of ``dtype``'s parts (``dtype`` itself when it is real)."""
    if dtype == xp.complex64:
        return xp.float32
    if dtype == xp.complex128:
        return xp.float64
    return dtype


def real_part(xp: Any, x: Any) -> Any:
    """Re(x); ``x`` itself when it is real."""
    return xp.real(x) if is_complex(xp, x.dtype) else x


def magnitude(xp: Any, x: Any) -> Any:
    """|x| for a complex array ``x``; ``x`` itself (sign kept) otherwise."""
    return xp.abs(x) if is_array(x) and is_complex(xp, x.dtype) else x


def cast(xp: Any, x: Any, dtype: Any) -> Any:
    """``x`` in ``dtype``; a complex ``x`` going to a real dtype keeps its real part (an
    explicit Re(), where a plain cast would warn that the imaginary part is dropped)."""
    if x.dtype == dtype:
        return x
    if is_complex(xp, x.dtype) and not is_complex(xp, dtype):
        x = xp.real(x)
    return xp.astype(x, dtype)


def real_product(backend: Any, xp: Any, cotangent: Any, tangent: Any) -> Any:
    """The real pairing of a cotangent with a tangent, element by element: summed, it is the
    derivative of the loss along the tangent. ``cotangent * tangent`` for real arrays."""
    if not is_complex(xp, cotangent.dtype) and not is_complex(xp, tangent.dtype):
        return cotangent * tangent
    if backend.conjugate_cotangents:
        cotangent = xp.conj(cotangent)
    return xp.real(cotangent * tangent)


def itemsize(xp: Any, dtype: Any) -> int:
    """Bytes per element of ``dtype`` (a complex number holds two of its real parts)."""
    parts = 2 if is_complex(xp, dtype) else 1
    return parts * xp.finfo(dtype).bits // 8


def bytes_of(xp: Any, x: Any) -> int:
    """Bytes the array ``x`` holds."""
    return math.prod(x.shape) * itemsize(xp, x.dtype)
