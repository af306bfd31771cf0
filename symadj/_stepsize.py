"""Step-size control: the error norm, the PI controller and the initial step (Hairer, Sec. II.4)."""

from __future__ import annotations

from typing import Any

from ._options import SolverOptions


def error_norm(xp: Any, scaled: Any, norm: Any) -> Any:
    """Norm of an error already divided by its tolerance: RMS by default."""
    if norm == "rms":
        return xp.sqrt(xp.mean(scaled * scaled))
    if norm == "max":
        return xp.max(xp.abs(scaled))
    return norm(scaled)


def error_scale(xp: Any, y: Any, y_new: Any, rtol: Any, atol: Any) -> Any:
    return atol + rtol * xp.maximum(xp.abs(y), xp.abs(y_new))


def next_step(xp: Any, h: Any, ratio: Any, previous_ratio: Any, order: int, options: SolverOptions) -> Any:
    """The next step size after a step of size ``h`` with error ratio ``ratio``.

    With ``pcoeff = 0`` this is torchdiffeq's controller: factor
    safety · ratio^(−1/order), limited to [dfactor, ifactor], never shrinking after an
    accepted step; a non-finite ratio shrinks by ``dfactor``.
    """
    ratio = xp.astype(ratio, h.dtype)
    previous_ratio = xp.astype(previous_ratio, h.dtype)
    tiny = xp.finfo(h.dtype).smallest_normal
    safe_ratio = xp.maximum(ratio, xp.asarray(tiny, dtype=h.dtype))
    exponent = 1.0 / order
    factor = options.safety * safe_ratio ** (-(1.0 - options.pcoeff) * exponent)
    if options.pcoeff:
        factor = factor * (previous_ratio / safe_ratio) ** (options.pcoeff * exponent)
    lower = xp.where(ratio < 1, xp.ones_like(h), xp.full_like(h, options.dfactor))
    factor = xp.minimum(xp.maximum(factor, lower), xp.full_like(h, options.ifactor))
    factor = xp.where(ratio == 0, xp.full_like(h, options.ifactor), factor)
    factor = xp.where(xp.isfinite(ratio), factor, xp.full_like(h, options.dfactor))
    return h * factor


def initial_step(xp: Any, f: Any, t0: Any, y0: Any, f0: Any, direction: Any, order: int,
                 rtol: Any, atol: Any, norm: Any) -> Any:
    """Hairer's initial-step heuristic, as torchdiffeq uses it; costs one evaluation of ``f``.

    Returns a positive magnitude in the dtype of ``t0``.
    """
    scale = atol + xp.abs(y0) * rtol
    d0 = error_norm(xp, y0 / scale, norm)
    d1 = error_norm(xp, f0 / scale, norm)
    small = (d0 < 1e-5) | (d1 < 1e-5)
    h0 = xp.where(small, xp.full_like(d0, 1e-6), 0.01 * d0 / xp.where(small, xp.ones_like(d1), d1))
    y1 = y0 + (h0 * xp.astype(direction, h0.dtype)) * f0
    f1 = f(t0 + xp.astype(h0, t0.dtype) * direction, y1)
    d2 = error_norm(xp, (f1 - f0) / scale, norm) / h0
    flat = (d1 <= 1e-15) & (d2 <= 1e-15)
    largest = xp.maximum(xp.maximum(d1, d2), xp.full_like(d1, 1e-300 if d1.dtype == xp.float64 else 1e-30))
    h1 = xp.where(flat, xp.maximum(xp.full_like(h0, 1e-6), h0 * 1e-3), (0.01 / largest) ** (1.0 / (order + 1)))
    return xp.astype(xp.minimum(100 * h0, h1), t0.dtype)
