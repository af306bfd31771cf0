"""Events: stop a solve where a function of the state crosses zero, with exact gradients.

Event functions g_j(t, y[, args]) are checked at the end of every accepted step; where
one changes sign inside step n, its zero is located on the step's continuous extension
u(θ) = y_n + h Σ b_i(θ) k_i by a bracketing root finder (Illinois' regula falsi) to the
resolution of θ. The event time τ = t_n + θ* h and state y* = u(θ*) then act as one more
interpolated output of step n. Their gradient follows from the implicit function
theorem on g(t_n + θh, u(θ)) = 0: with ẏ = u'(θ*)/h and G_t = ∂_t g + ∇_y g · ẏ,

    dτ = −(∇_y g · du + ∂_p g · dp) / G_t        (du: the change of u at fixed θ*),

so the cotangents (ȳ*, τ̄) of the event state and time send ū = ȳ* − s ∇_y g to that
output and −s ∂_p g to the parameters, where s = (ȳ*·ẏ + τ̄) / G_t. The backward walks
treat ū as any interpolated output's cotangent; nothing else changes in them.

Per-sample events (each g_j returns one value per row of a state with a leading batch
axis) stop each row at its own time: a row whose event has fired is frozen from the next
step on (its stage derivatives are masked, so y_{n+1} = y_n there and its error does not
steer the step size), the other rows go on; the solve ends once every row has stopped,
or at the last output time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ._array_api import device_of, is_array
from ._backend import Backend, Field
from ._complex import cast as complex_cast
from ._complex import is_complex, real_dtype, real_part, real_product
from ._interpolant import Interpolant
from ._rk_step import AcceptedStep
from ._solution import SolveOutputs
from ._state import StateLayout
from .errors import InvalidArgumentError

#: Most iterations of the root finder (Illinois converges in about 10; its safeguard
#: halves the bracket at least every second iteration, 2 × 51 for float64).
ROOT_ITERATIONS = 128


class EventRecord(NamedTuple):
    """Where each event element fired; elements have the event shape, ``()`` or ``(batch,)``.

    ``which`` is the index of the event function that fired (−1: none), ``t`` the event
    time (the last output time where none fired), ``theta`` and ``step`` place it inside
    its accepted step, ``state`` is y* (state-shaped), ``rate`` ẏ along the continuous
    extension at τ.
    """

    fired: Any
    which: Any
    t: Any
    theta: Any
    step: Any
    state: Any
    rate: Any


class EventCarry(NamedTuple):
    """What the integration loop carries: g at the current time, and the record so far."""

    values: Any
    record: EventRecord


class EventOutputs(NamedTuple):
    """The event states as interpolated outputs of the backward pass: ``cotangent`` ū
    (state-shaped, zero on rows that did not fire) at θ = ``theta`` in step ``step``."""

    cotangent: Any
    fired: Any
    step: Any
    theta: Any


class EventSearch(NamedTuple):
    """What locating an event inside an accepted step takes besides the step: the bound
    event functions, the continuous extension, the direction of integration, and whether
    the event time must carry its derivative (``differentiable``: autodiff through the solve)."""

    fields: tuple[Field, ...]
    interpolant: Interpolant
    direction: Any
    differentiable: bool


class _Crossing(NamedTuple):
    """Which event elements changed sign in a step (``crossed``), and g at its two ends."""

    crossed: Any
    before: Any
    after: Any


@dataclass(frozen=True)
class _EventLayout:
    """The state layout seen by an event function: it gets the user's state, returns any array."""

    state: StateLayout
    index: int

    @property
    def dtype(self) -> Any:
        return self.state.dtype

    def wrap(self, xp: Any, fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        def g(t: Any, flat: Any) -> Any:
            value = fn(t, self.state.to_state(xp, flat))
            if not is_array(value):
                raise InvalidArgumentError(
                    f"event function {self.index} returned a {type(value).__name__}; return an array "
                    f"(0-d, or one value per row of the state)"
                )
            return value

        return g


@dataclass(frozen=True)
class Event:
    """An event function with a direction: pass it to ``event=`` in place of a plain function.

    Args:
        fn: ``g(t, y)`` (``g(t, y, args)`` with ``args``), as for a plain event function.
        direction: ``0`` (default): any sign change fires; ``1``: only rising through zero
            (− to +); ``-1``: only falling (+ to −).

    Examples:
        >>> import numpy as np, symadj
        >>> falling = symadj.Event(lambda t, y: y[0], direction=-1)  # a ball landing, not leaving
        >>> sol = symadj.solve(lambda t, y: np.array([y[1], -9.81]), np.array([0.0, 5.0]), [0.0, 5.0],
        ...                    event=falling)
        >>> round(float(sol.event.t), 4)  # 2 v0 / g; the rise through y = 0 at t = 0 does not count
        1.0194
    """

    fn: Callable[..., Any]
    direction: int = 0

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise InvalidArgumentError(f"Event(fn=...) must be a function g(t, y), got {type(self.fn).__name__}")
        if self.direction not in (-1, 0, 1):
            raise InvalidArgumentError(
                f"Event(direction={self.direction!r}): use 0 (any crossing), 1 (rising) or -1 (falling)"
            )


def as_events(event: Any) -> tuple[Event, ...]:
    """``event=`` as a tuple of :class:`Event`: a function or an Event, or a sequence of them."""
    given = tuple(event) if isinstance(event, (list, tuple)) else (event,)
    if not given:
        raise InvalidArgumentError("event is an empty list; pass at least one function g(t, y), or leave it out")
    events = []
    for index, item in enumerate(given):
        if isinstance(item, Event):
            events.append(item)
        elif callable(item):
            events.append(Event(item))
        else:
            raise InvalidArgumentError(
                f"event must be a function g(t, y) or a symadj.Event (or a list of them), got "
                f"{type(item).__name__} at position {index}"
            )
    return tuple(events)


@dataclass(frozen=True)
class Events:
    """The event functions of a solve, bound as fields, and the shape of their values."""

    fields: tuple[Field, ...]
    shape: tuple[int, ...]
    directions: tuple[int, ...]

    @classmethod
    def build(cls, backend: Backend, xp: Any, events: Sequence[Event], args: Any, y0: Any, ts: Any,
              adjoint_params: Any, layout: StateLayout) -> Events:
        """Bind the event functions like ``func`` and check, from one call at t[0], what they return."""
        fields = tuple(backend.make_field(event.fn, args, y0, ts, adjoint_params, _EventLayout(layout, index))
                       for index, event in enumerate(events))
        first = [field(ts[0], y0) for field in fields]
        for index, value in enumerate(first):
            if is_complex(xp, value.dtype):
                raise InvalidArgumentError(
                    f"event function {index} returned dtype {value.dtype}: an event is where a real value "
                    f"changes sign; return a real one (the real or imaginary part of an entry, or |y|² − r²)"
                )
        shapes = [tuple(value.shape) for value in first]
        batch = (y0.shape[0],) if layout.single and y0.ndim >= 1 else None
        for index, shape in enumerate(shapes):
            if shape != () and shape != batch:
                rows = f" or {batch} (one value per row of the state)" if batch else ""
                raise InvalidArgumentError(
                    f"event function {index} returned shape {shape}; expected (){rows}"
                )
        if len(set(shapes)) > 1:
            raise InvalidArgumentError(
                f"the event functions return different shapes {shapes}; make them all 0-d or all per row"
            )
        return cls(fields, shapes[0], tuple(event.direction for event in events))

    @property
    def per_row(self) -> bool:
        return self.shape != ()

    def bound(self, params: Sequence[Any]) -> tuple[Field, ...]:
        return tuple(field.with_params(params) for field in self.fields)

    def values(self, xp: Any, fields: Sequence[Field], t: Any, y: Any) -> Any:
        """g_j(t, y) stacked (j first), in the dtype of ``t``."""
        return xp.stack([xp.astype(field(t, y), t.dtype) for field in fields])

    def rows(self, xp: Any, x: Any, like: Any) -> Any:
        """``x`` (event-shaped) reshaped to broadcast against the state ``like``, row by row."""
        return xp.reshape(x, (*self.shape, *(1,) * (like.ndim - len(self.shape))))

    def row_sum(self, xp: Any, x: Any) -> Any:
        """Σ over each row of a state-shaped ``x`` (event-shaped)."""
        return xp.sum(xp.reshape(x, (*self.shape, -1)), axis=-1)

    # -- forward ------------------------------------------------------------

    def start(self, xp: Any, fields: Sequence[Field], ts: Any, y0: Any) -> EventCarry:
        t0 = ts[0]
        like = xp.zeros(self.shape, dtype=t0.dtype, device=device_of(t0))
        record = EventRecord(
            fired=xp.zeros(self.shape, dtype=xp.bool, device=device_of(t0)),
            which=xp.full(self.shape, -1, dtype=xp.int32, device=device_of(t0)),
            t=like + ts[-1], theta=like, step=xp.zeros(self.shape, dtype=xp.int32, device=device_of(t0)),
            state=y0, rate=xp.zeros_like(y0),
        )
        return EventCarry(self.values(xp, fields, t0, y0), record)

    def frozen(self, xp: Any, record: EventRecord, t: Any, direction: Any, like: Any) -> Any:
        """The rows stopped before a step from ``t`` (where a fired event lies at or before it)."""
        return self.rows(xp, record.fired & (direction * (t - record.t) >= 0), like)

    def after_step(self, backend: Backend, xp: Any, search: EventSearch, carry: EventCarry,
                   step: AcceptedStep) -> EventCarry:
        """Check the accepted ``step`` for sign changes, and record where they are."""
        values = self.values(xp, search.fields, step.t + step.h, step.y_new)
        before = carry.values
        rising, falling = (before < 0) & (values >= 0), (before > 0) & (values <= 0)
        crossed = xp.stack([(rising[j] if sense >= 0 else False) | (falling[j] if sense <= 0 else False)
                            for j, sense in enumerate(self.directions)]) & ~carry.record.fired
        crossing = _Crossing(crossed, before, values)

        def locate(record: EventRecord) -> EventRecord:
            return self._locate(backend, xp, search, record, crossing, step)

        record = backend.cond(xp.any(crossed), locate, lambda record: record, carry.record)
        return EventCarry(values, record)

    def _locate(self, backend: Backend, xp: Any, search: EventSearch, record: EventRecord, crossing: _Crossing,
                step: AcceptedStep) -> EventRecord:
        fields, interpolant = search.fields, search.interpolant
        t, h, y, derivatives = step.t, step.h, step.y, step.derivatives
        fixed_y = backend.stop_gradient(y)
        fixed_k = [backend.stop_gradient(k) for k in derivatives]

        def g_at(theta: Any) -> Any:  # (J, *shape), each function at its own θ
            return xp.stack([
                xp.astype(field(t + theta[j] * h, self.interpolate(xp, interpolant, theta[j], h, fixed_y, fixed_k)),
                          t.dtype)
                for j, field in enumerate(fields)])

        crossed = crossing.crossed
        theta = find_zero(backend, xp, g_at, backend.stop_gradient(crossing.before),
                          backend.stop_gradient(crossing.after), crossed)
        earliest = xp.where(crossed, theta, xp.full_like(theta, 2.0))
        which = xp.astype(xp.argmin(earliest, axis=0), xp.int32)
        theta = xp.min(earliest, axis=0)
        if search.differentiable:
            theta = self._differentiable_root(backend, xp, search, theta, which, step)
        new = xp.any(crossed, axis=0)
        tau = t + theta * h
        # An event a rounding away from the step's start still lies inside the step.
        tau = xp.where(tau == t, xp.nextafter(t, t + search.direction), tau)
        state = self.interpolate(xp, interpolant, theta, h, y, derivatives)
        rate = self.rate(xp, interpolant, theta, derivatives)
        new_rows = self.rows(xp, new, y)
        return EventRecord(
            fired=record.fired | new, which=xp.where(new, which, record.which), t=xp.where(new, tau, record.t),
            theta=xp.where(new, theta, record.theta),
            step=xp.where(new, xp.zeros_like(record.step) + step.index, record.step),
            state=xp.where(new_rows, state, record.state), rate=xp.where(new_rows, rate, record.rate),
        )

    def _differentiable_root(self, backend: Backend, xp: Any, search: EventSearch, theta: Any, which: Any,
                             step: AcceptedStep) -> Any:
        """θ* with the derivative the implicit function theorem gives it, its value unchanged:
        θ* − (G − stop(G)) / stop(∂G/∂θ), for autodiff through the solve (``backprop``)."""
        fixed = backend.stop_gradient
        fields, interpolant, t, h = search.fields, search.interpolant, step.t, step.h
        chosen = self.one_hot(xp, which, len(fields), fixed(theta))
        tau = t + fixed(theta) * h
        state = self.interpolate(xp, interpolant, fixed(theta), h, step.y, step.derivatives)
        g = xp.sum(chosen * self.values(xp, fields, tau, state), axis=0)
        rate = fixed(self.rate(xp, interpolant, fixed(theta), step.derivatives))
        dt_g, dy_g, _ = self.gradient(backend, xp, fields, (), chosen, tau, fixed(state))
        g_theta = (dt_g + xp.astype(self.row_sum(xp, real_product(backend, xp, dy_g, rate)), t.dtype)) * h
        return fixed(theta) - (g - fixed(g)) / xp.where(g_theta == 0, xp.ones_like(g_theta), g_theta)

    def one_hot(self, xp: Any, which: Any, count: int, like: Any) -> Any:
        """(J, *shape): 1 where function j is the one that fired."""
        j = xp.reshape(xp.arange(count, device=device_of(like)), (count, *(1,) * len(self.shape)))
        return xp.astype(j == which, like.dtype)

    def interpolate(self, xp: Any, interpolant: Interpolant, theta: Any, h: Any, y: Any,
                    derivatives: Sequence[Any]) -> Any:
        """u(θ) = y + h Σ b_i(θ) k_i, with θ event-shaped (one θ per row for per-row events)."""
        weights = interpolant.weights(xp, theta, interpolant.stages, y.dtype)
        return y + xp.astype(h, y.dtype) * interpolant.combine(xp, weights, derivatives, y.ndim - len(self.shape))

    def rate(self, xp: Any, interpolant: Interpolant, theta: Any, derivatives: Sequence[Any]) -> Any:
        """u'(θ)/h = Σ b_i'(θ) k_i."""
        weights = interpolant.derivative_weights(xp, theta, interpolant.stages, derivatives[0].dtype)
        return interpolant.combine(xp, weights, derivatives, derivatives[0].ndim - len(self.shape))

    def gradient(self, backend: Backend, xp: Any, fields: Sequence[Field], params: Sequence[Any], cotangent: Any,
                 tau: Any, state: Any) -> tuple[Any, Any, list[Any]]:
        """∂_t, ∇_y and ∂_p of Σ_j cotangent_j g_j at (τ, y*): one vector–Jacobian product,
        with τ (event-shaped) carried in the state's dtype (as the real part of a complex
        one, so that g gets a real time)."""
        size = math.prod(state.shape)
        real = real_dtype(xp, state.dtype)
        packed = xp.concat([xp.reshape(state, (-1,)), xp.reshape(xp.astype(tau, state.dtype), (-1,))])

        def g(z: Any, params: Sequence[Any]) -> Any:
            bound = [field.with_params(params) for field in fields] if params else fields
            y, t = xp.reshape(z[:size], state.shape), xp.reshape(real_part(xp, z[size:]), self.shape)
            return xp.stack([xp.astype(field(t, y), real) for field in bound])

        _, z_bar, params_bar = backend.vjp(g, packed, list(params), xp.astype(cotangent, real))
        # Re(): the cotangent of a real time held in a complex slot (either convention).
        dt_g = xp.astype(real_part(xp, xp.reshape(z_bar[size:], self.shape)), tau.dtype)
        return dt_g, xp.reshape(z_bar[:size], state.shape), params_bar

    def finish(self, xp: Any, record: EventRecord, outputs: Any, ts: Any, direction: Any
               ) -> tuple[SolveOutputs, EventRecord]:
        """The solve's outputs, event state and time: outputs at and after each row's event
        hold its event state; rows that never fired get the last output as their event
        state. The time is taken in the state's dtype (:class:`SolveOutputs`)."""
        last = outputs[-1, ...]
        record = record._replace(state=xp.where(self.rows(xp, record.fired, last), record.state, last))
        after = self._after(xp, record, ts, direction)
        ys = xp.where(self._output_rows(xp, after, last), record.state, outputs)
        # Copies: an autograd library marks the arrays a solve returns, and the record is kept unmarked.
        dtype = record.state.dtype
        state, time = xp.astype(record.state, dtype, copy=True), xp.astype(record.t, dtype, copy=True)
        return SolveOutputs(ys, state, time), record

    def held_still(self, xp: Any, record: EventRecord, rates: Any, ts: Any, direction: Any) -> Any:
        """``rates`` (one per output) zero where an output holds its row's event state."""
        after = self._output_rows(xp, self._after(xp, record, ts, direction), rates[0, ...])
        return xp.where(after, xp.zeros_like(rates), rates)

    def _after(self, xp: Any, record: EventRecord, ts: Any, direction: Any) -> Any:
        """(outputs, *shape): whether output k lies at or after the event of its row."""
        times = xp.reshape(ts, (-1, *(1,) * len(self.shape)))
        return record.fired & (direction * (times - record.t) >= 0)

    def _output_rows(self, xp: Any, x: Any, like: Any) -> Any:
        return xp.reshape(x, (x.shape[0], *self.shape, *(1,) * (like.ndim - len(self.shape))))

    # -- backward -----------------------------------------------------------

    def cotangents(self, backend: Backend, xp: Any, fields: Sequence[Field], params: Sequence[Any],
                   record: EventRecord, cotangent: SolveOutputs, ts: Any, direction: Any, rate: Any
                   ) -> tuple[Any, EventOutputs, list[Any]]:
        """Turn the cotangent of the solve's outputs, event state and time into the outputs'
        own (those at or after an event moved onto it), the event states' as interpolated
        outputs, and the parameters' through g. ``rate`` is ẏ at the events (the
        extension's, or f's)."""
        n = ts.shape[0]
        outputs_bar, state_bar, time_bar = cotangent
        last = outputs_bar[-1, ...]
        after = self._output_rows(xp, self._after(xp, record, ts, direction), last)
        fired_rows = self.rows(xp, record.fired, last)
        zero = xp.zeros_like(outputs_bar)
        state_bar = state_bar + xp.sum(xp.where(after, outputs_bar, zero), axis=0)
        outputs_bar = xp.where(after, zero, outputs_bar)
        # Rows that never fired: their event state is the last output.
        is_last = xp.reshape(xp.arange(n, device=device_of(ts)) == n - 1, (n, *(1,) * last.ndim))
        outputs_bar = outputs_bar + xp.where(is_last & ~fired_rows, state_bar, zero)
        state_bar = xp.where(fired_rows, state_bar, xp.zeros_like(state_bar))
        time_bar = xp.where(record.fired, complex_cast(xp, time_bar, ts.dtype), xp.zeros_like(record.t))

        chosen = self.one_hot(xp, record.which, len(fields), record.t) * xp.astype(record.fired, record.t.dtype)
        dt_g, dy_g, _ = self.gradient(backend, xp, fields, (), chosen, record.t, record.state)
        g_t = dt_g + xp.astype(self.row_sum(xp, real_product(backend, xp, dy_g, rate)), dt_g.dtype)
        safe = xp.where(record.fired, g_t, xp.ones_like(g_t))
        moved = xp.astype(self.row_sum(xp, real_product(backend, xp, state_bar, rate)), ts.dtype)
        s = xp.where(record.fired, (moved + time_bar) / safe, xp.zeros_like(g_t))
        event_bar = state_bar - self.rows(xp, xp.astype(s, state_bar.dtype), state_bar) * dy_g
        params_bar: list[Any] = []
        if params:
            _, _, params_bar = self.gradient(backend, xp, fields, params, -chosen * s, record.t, record.state)
        return outputs_bar, EventOutputs(event_bar, record.fired, record.step, record.theta), params_bar


def find_zero(backend: Backend, xp: Any, g: Callable[[Any], Any], g0: Any, g1: Any, active: Any) -> Any:
    """The first θ in (0, 1] where g leaves the side of zero it starts on, element-wise for
    the ``active`` elements, given g(0) = ``g0`` (nonzero) and g(1) = ``g1`` on the other
    side or zero: the Illinois variant of regula falsi, which keeps a bracket [a, b] with
    g(a) on the starting side and g(b) not (zero counts as not: a g that is zero at the
    step's end, or stays zero after a crossing, is located where it first reaches zero, not
    where the step ends) and converges superlinearly; a secant point outside the bracket
    falls back to bisection, and so does one that has not halved the bracket in two
    iterations (a flat zero, g ~ (θ − θ*)³, leaves regula falsi creeping from one side).
    Returns b, to the resolution of θ; a where g(b) is zero (a g that stays zero after its
    crossing has no slope there for the event time's gradient; at a it has its own)."""
    resolution = 4 * xp.finfo(g0.dtype).eps
    one = xp.ones_like(g0)
    start_side = xp.where(g0 > 0, one, -one)

    def running(c: tuple) -> Any:
        i, *_, done = c
        return (i < ROOT_ITERATIONS) & ~xp.all(done)

    def body(c: tuple) -> tuple:
        i, a, b, fa, fb, side, widths, done = c
        secant = (a * fb - b * fa) / xp.where(fb == fa, one, fb - fa)
        slow = b - a > widths[1] / 2
        c_ = xp.where((secant > a) & (secant < b) & ~slow, secant, (a + b) / 2)
        fc = g(xp.where(done, b, c_))
        moves_a = ~done & (fc * start_side > 0)
        moves_b = ~done & ~moves_a
        fa = xp.where(moves_b & (side == -1), fa / 2, fa)
        fb = xp.where(moves_a & (side == 1), fb / 2, fb)
        b, fb = xp.where(moves_b, c_, b), xp.where(moves_b, fc, fb)
        a, fa = xp.where(moves_a, c_, a), xp.where(moves_a, fc, fa)
        side = xp.where(moves_b, -1, xp.where(moves_a, 1, side))
        done = done | (b - a <= resolution)
        return i + 1, a, b, fa, fb, side, (b - a, widths[0]), done

    start = (0, xp.zeros_like(g0), one, g0, g1, xp.zeros(g0.shape, dtype=xp.int32, device=device_of(g0)),
             (2 * one, 2 * one), ~active)
    _, a, b, fa, fb, _, _, _ = backend.while_loop(running, body, start, max_iterations=ROOT_ITERATIONS)
    return xp.where(active, xp.where((fb == 0) & (a > 0), a, b), one)
