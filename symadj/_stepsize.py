"""Step-size control: the error norm, the PI controller, the initial step (Hairer, Sec. II.4), and
the controller objects the integration loop asks."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ._array_api import device_of
from ._complex import magnitude
from ._options import SolverOptions
from ._rk_step import combine
from ._solution import Status
from ._tableau import Tableau


def error_norm(xp: Any, scaled: Any, norm: Any) -> Any:
    """Norm of an error already divided by its tolerance: RMS by default.

    A complex error is measured by its magnitudes |z| (as torchdiffeq does); a custom
    ``norm`` gets it as it is, and a complex value it returns counts by its magnitude.
    """
    if norm == "rms":
        size = magnitude(xp, scaled)
        return xp.sqrt(xp.mean(size * size))
    if norm == "max":
        return xp.max(xp.abs(scaled))
    return magnitude(xp, norm(scaled))


def widened(xp: Any, x: Any) -> Any:
    """``x`` in float32 if it is in a half-precision dtype: error norms of float16 and bfloat16
    states are taken in float32, where a scaled error neither overflows nor underflows to 0
    (float16's atol=1e-9 is 0, its largest value 65504)."""
    if xp.isdtype(x.dtype, "real floating") and xp.finfo(x.dtype).bits < 32:
        return xp.astype(x, xp.float32)
    return x


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


def bounded_step(xp: Any, h: Any, options: SolverOptions) -> Any:
    """``h`` with its magnitude held within ``[step_floor, max_step]``, its sign kept."""
    if not options.step_floor and options.max_step is None:
        return h
    size = xp.abs(h)
    if options.step_floor:
        size = xp.maximum(size, xp.full_like(size, options.step_floor))
    if options.max_step is not None:
        size = xp.minimum(size, xp.full_like(size, options.max_step))
    return xp.where(h < 0, -size, size)


def initial_step(xp: Any, f: Any, t0: Any, y0: Any, f0: Any, direction: Any, order: int,
                 rtol: Any, atol: Any, norm: Any) -> Any:
    """Hairer's initial-step heuristic, as torchdiffeq uses it; costs one evaluation of ``f``.

    Returns a positive magnitude in the dtype of ``t0``.
    """
    scale = atol + xp.abs(widened(xp, y0)) * rtol
    d0 = error_norm(xp, widened(xp, y0) / scale, norm)
    d1 = error_norm(xp, widened(xp, f0) / scale, norm)
    small = (d0 < 1e-5) | (d1 < 1e-5)
    h0 = xp.where(small, xp.full_like(d0, 1e-6), 0.01 * d0 / xp.where(small, xp.ones_like(d1), d1))
    y1 = y0 + xp.astype(h0 * xp.astype(direction, h0.dtype), y0.dtype) * f0
    f1 = f(t0 + xp.astype(h0, t0.dtype) * direction, y1)
    d2 = error_norm(xp, widened(xp, f1 - f0) / scale, norm) / h0
    flat = (d1 <= 1e-15) & (d2 <= 1e-15)
    largest = xp.maximum(xp.maximum(d1, d2), xp.full_like(d1, 1e-300 if d1.dtype == xp.float64 else 1e-30))
    h1 = xp.where(flat, xp.maximum(xp.full_like(h0, 1e-6), h0 * 1e-3), (0.01 / largest) ** (1.0 / (order + 1)))
    return xp.astype(xp.minimum(100 * h0, h1), t0.dtype)


def error_ratio(xp: Any, tab: Tableau, h: Any, y: Any, y_new: Any, derivatives: Sequence[Any],
                rtol: Any, atol: Any, norm: Any) -> Any:
    """The embedded error estimate divided by its tolerance, as one norm (accept if <= 1).

    With a secondary estimate (DOP853) the two are combined as Hairer's dop853 does:
    r5² / sqrt(r5² + 0.01 r3²).
    """
    coeffs = tab.floats
    h_state = xp.astype(h, y.dtype)
    scale = error_scale(xp, widened(xp, y), widened(xp, y_new), rtol, atol)

    def ratio_of(weights: Sequence[float]) -> Any:
        terms = [(e, derivatives[i]) for i, e in enumerate(weights) if e != 0.0]
        estimate = combine(xp.zeros_like(y), h_state, terms)
        return error_norm(xp, widened(xp, estimate) / scale, norm)

    primary = ratio_of(coeffs.error)
    if coeffs.secondary_error is None:
        return primary
    secondary = ratio_of(coeffs.secondary_error)
    denominator = primary * primary + 0.01 * secondary * secondary
    safe = xp.where(denominator > 0, denominator, xp.ones_like(denominator))
    return xp.where(denominator > 0, primary * primary / xp.sqrt(safe), xp.zeros_like(primary))


class Decision(NamedTuple):
    """A controller's verdict on an attempted step."""

    accept: Any
    ratio: Any
    next_h: Any


class StepController(abc.ABC):
    """Chooses step sizes: the first one before the loop, then one after each attempt.

    Chosen once before the loop (:func:`controller_for`); the loop only asks it.
    """

    #: Whether steps are rejected and resized by an error estimate.
    adaptive: bool = False

    @abc.abstractmethod
    def first_step(self, xp: Any, backend: Any, problem: Any, f: Any, t0: Any, y0: Any, dy0: Any,
                   direction: Any) -> tuple[Any, int]:
        """The first step size (signed) and the evaluations of ``f`` spent choosing it."""

    @abc.abstractmethod
    def decide(self, xp: Any, backend: Any, problem: Any, h: Any, y: Any, y_new: Any, derivatives: Any,
               finite: Any, previous_ratio: Any, planned: Any) -> Decision:
        """Accept or reject a step of size ``h`` from ``y`` to ``y_new``; the size of the next attempt.
        ``planned`` is the size the step had before it was shortened to land on a time."""

    @abc.abstractmethod
    def rejected_status(self, xp: Any, backend: Any, options: SolverOptions, t: Any, decision: Decision,
                        finite: Any, status: Any) -> Any:
        """The solve's status after the attempt from ``t`` was rejected: ``status`` while it may
        go on, else why it failed (``finite``: whether the attempt's state was finite)."""


@dataclass(frozen=True)
class ConstantSteps(StepController):
    """Steps of one size, accepted whenever the state stays finite; ``size=None`` takes one
    step per output interval (each step lands on the next output time)."""

    size: float | None = None

    def first_step(self, xp, backend, problem, f, t0, y0, dy0, direction):
        if self.size is None:
            return problem.ts[-1] - t0, 0
        return self.size * direction, 0

    def decide(self, xp, backend, problem, h, y, y_new, derivatives, finite, previous_ratio, planned):
        return Decision(finite, previous_ratio, planned)

    def rejected_status(self, xp, backend, options, t, decision, finite, status):
        return int(Status.NONFINITE)


@dataclass(frozen=True)
class ErrorControl(StepController):
    """The PI controller on the embedded error estimate (Hairer, Sec. II.4); with
    ``pcoeff = 0`` torchdiffeq's controller. Step sizes are constants of the discrete solve:
    no gradient flows through them."""

    adaptive = True

    def first_step(self, xp, backend, problem, f, t0, y0, dy0, direction):
        options, tab = problem.options, problem.tableau
        if options.first_step is not None:
            return bounded_step(xp, xp.asarray(options.first_step, dtype=t0.dtype, device=device_of(t0)),
                                options) * direction, 0
        magnitude = initial_step(xp, f, t0, backend.stop_gradient(y0), backend.stop_gradient(dy0), direction,
                                 tab.embedded_order or tab.order, problem.rtol, problem.atol, options.norm)
        return bounded_step(xp, backend.stop_gradient(magnitude), options) * direction, 1

    def decide(self, xp, backend, problem, h, y, y_new, derivatives, finite, previous_ratio, planned):
        options, tab = problem.options, problem.tableau
        ratio = backend.stop_gradient(
            error_ratio(xp, tab, h, y, y_new, derivatives, problem.rtol, problem.atol, options.norm))
        ratio = xp.where(finite, ratio, xp.full_like(ratio, xp.inf))
        next_h = bounded_step(xp, next_step(xp, backend.stop_gradient(h), ratio, previous_ratio, tab.order, options),
                              options)
        accept = ratio <= 1
        if options.step_floor:
            # A step sized at the floor cannot shrink further: accepted, as torchdiffeq's min_step
            # does. Its planned size is compared, as stretching it onto a landing time may pass the floor.
            accept = accept | (finite & (xp.abs(backend.stop_gradient(planned)) <= options.step_floor))
        return Decision(accept, ratio, next_h)

    def rejected_status(self, xp, backend, options, t, decision, finite, status):
        # A NaN step size (from a NaN derivative at the start) fails at once, not after max_steps.
        too_small = ~xp.isfinite(decision.next_h) | (xp.abs(decision.next_h) < options.min_step) | (
            t + decision.next_h == t)
        failure = backend.select(finite, int(Status.STEP_UNDERFLOW), int(Status.NONFINITE))
        return backend.select(too_small, failure, status)


def controller_for(tab: Any, options: SolverOptions) -> StepController:
    """Error control where the tableau has an estimate and no fixed ``step_size`` is set."""
    if options.step_size is not None:
        return ConstantSteps(options.step_size)
    return ErrorControl() if tab.adaptive else ConstantSteps()
