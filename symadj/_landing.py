"""Where steps must land: the final output time, ``step_t`` and ``jump_t`` times, and
(without a continuous extension, or with ``options["land_on_outputs"]``) every output
time. An output a step lands on is that step's end state itself (θ = 1).

:class:`LandingControl` is the loop's step-size side: the controller, with each attempted
step clipped onto the next landing time (as diffrax's ``ClipStepSizeController`` wraps a
controller); :class:`JumpingControl` also steps over the ``jump_t`` discontinuities.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from ._array_api import device_of
from ._complex import real_dtype
from ._rk_step import Nudge, VectorField, stage_time
from ._stepsize import Decision, StepController, controller_for


class Landings(NamedTuple):
    """The times steps must end on, sorted in the direction of integration, and whether
    each is a jump (the derivative is evaluated afresh just past it)."""

    times: Any
    jumps: Any

    @property
    def count(self) -> int:
        return self.times.shape[0]


def landing_times(xp: Any, ts: Any, direction: Any, interpolate: bool, step_t: Sequence[float],
                  jump_t: Sequence[float]) -> Landings:
    """The final output time (or every output time after the first), ``step_t`` and ``jump_t``.

    A landing time that is also a ``jump_t`` time is a jump, whichever list it came from:
    an output time sorted ahead of the jump at the same time would otherwise be landed on
    exactly, and the jump counted as reached with it."""
    outputs = ts[-1:] if interpolate else ts[1:]
    extra = [*step_t, *jump_t]
    if not extra:
        return Landings(outputs, xp.zeros(outputs.shape, dtype=xp.bool))
    given = xp.asarray(extra, dtype=ts.dtype, device=device_of(ts))
    times = xp.concat([outputs, given])
    jumps = at_jump(xp, times, jump_t)
    order = xp.argsort(direction * times, stable=True)
    return Landings(xp.take(times, order), xp.take(jumps, order))


def at_jump(xp: Any, times: Any, jump_t: Sequence[float]) -> Any:
    """Whether each of ``times`` is one of ``jump_t``."""
    if not jump_t:
        return xp.zeros(times.shape, dtype=xp.bool)
    jumps = xp.asarray(list(jump_t), dtype=times.dtype, device=device_of(times))
    return xp.any(xp.reshape(times, (-1, 1)) == xp.reshape(jumps, (1, -1)), axis=1)


def count_reached(xp: Any, times: Any, direction: Any, reached: Any) -> Any:
    """How many of ``times`` (sorted in the direction of integration) lie at or before ``reached``."""
    return xp.sum(xp.astype(direction * (times - reached) <= 0, xp.int32))


class ControlState(NamedTuple):
    """The step-size side's part of the loop state."""

    h: Any  # the size the controller plans for the next attempt
    previous_ratio: Any  # the error ratio of the last accepted step
    next_landing: Any  # the index of the next landing time


class Clip(NamedTuple):
    """How an attempted step was clipped: whether it ends on ``landing_time`` (``lands``), and
    whether that time is a jump."""

    lands: Any
    landing_time: Any
    jump: Any


class LandingControl:
    """The step-size controller of a solve, with its steps landed on the landing times.

    The loop asks it for the step to attempt (:meth:`clip`), for a verdict on it
    (:meth:`decide`), and, after the verdict, for where the next step starts, with which
    derivative, and its own part of the loop state (:meth:`accepted`, :meth:`rejected`).
    """

    def __init__(self, backend: Any, problem: Any, controller: StepController, landings: Landings, direction: Any,
                 first_derivative: Callable[[Any, Any], Any], reuses_fsal: bool) -> None:
        self.backend, self.xp, self.problem, self.controller = backend, problem.xp, problem, controller
        self.landings, self.direction, self.first_derivative = landings, direction, first_derivative
        self.reuses_fsal = reuses_fsal
        self.slack = 1.0 + 64 * self.xp.finfo(problem.ts.dtype).eps

    def start_time(self, t0: Any) -> Any:
        """Where the first step starts."""
        return t0

    def start(self, f: VectorField, t0: Any, y0: Any) -> tuple[Any, Any, ControlState, int]:
        """The first step's start time and derivative, this side's first state, and the
        evaluations of ``f`` spent on them."""
        xp = self.xp
        t = self.start_time(t0)
        dy0 = self.first_derivative(t, y0)
        h0, choosing_evaluations = self.controller.first_step(xp, self.backend, self.problem, f, t, y0, dy0,
                                                              self.direction)
        state = ControlState(h0, xp.ones((), dtype=real_dtype(xp, y0.dtype)),  # error ratios stay real
                             count_reached(xp, self.landings.times, self.direction, t0))
        return t, dy0, state, 1 + choosing_evaluations

    def clip(self, state: ControlState, t: Any) -> tuple[Any, Clip]:
        """The step to attempt from ``t``: the planned one, or the one onto the next landing time."""
        xp, landings = self.xp, self.landings
        landing = self.backend.select(state.next_landing < landings.count, state.next_landing, landings.count - 1)
        landing_time = landings.times[landing]
        jump, target = self._target(landing, landing_time)
        remaining = target - t
        # A step that falls short of a landing time by a few ulps is stretched onto it, rather
        # than followed by a step of size 1e-16 (e.g. ten steps of 0.1 towards 1.0).
        lands = xp.abs(remaining) <= xp.abs(state.h) * self.slack
        return xp.where(lands, remaining, state.h), Clip(lands, landing_time, jump)

    def _target(self, landing: Any, landing_time: Any) -> tuple[Any, Any]:
        """Whether the landing time is a jump, and where a step onto it ends."""
        return False, landing_time

    def decide(self, state: ControlState, h: Any, y: Any, y_new: Any, derivatives: Any, finite: Any) -> Decision:
        """The controller's verdict on the attempted step of size ``h``."""
        return self.controller.decide(self.xp, self.backend, self.problem, h, y, y_new, derivatives, finite,
                                      state.previous_ratio, state.h)

    def reached(self, clip: Clip, t_end: Any) -> Any:
        """The time an accepted step ending at ``t_end`` takes outputs up to."""
        # Outputs are taken up to the landing time itself, a jump's included: an output at a jump
        # is the state one ulp before it (the solution is continuous there), at θ = 1.
        return self.xp.where(clip.lands, clip.landing_time, t_end)

    def accepted(self, state: ControlState, clip: Clip, decision: Decision, t_end: Any, y_new: Any,
                 dy_fsal: Any) -> tuple[Any, Any, Any, ControlState]:
        """After an accepted step: the next step's start time and first derivative, the
        evaluations of ``f`` spent on it, and this side's next state."""
        t_start, dy_new, fresh = self._restart(clip, t_end, y_new, dy_fsal)
        reached = count_reached(self.xp, self.landings.times, self.direction, clip.landing_time)
        next_landing = self.backend.select(clip.lands, reached, state.next_landing)
        return t_start, dy_new, fresh, ControlState(decision.next_h, decision.ratio, next_landing)

    def _restart(self, clip: Clip, t_end: Any, y_new: Any, dy_fsal: Any) -> tuple[Any, Any, Any]:
        if self.reuses_fsal:
            return t_end, dy_fsal, 0
        return t_end, self.first_derivative(t_end, y_new), 1

    def rejected(self, state: ControlState, t: Any, decision: Decision, finite: Any,
                 status: Any) -> tuple[ControlState, Any]:
        """After a rejected attempt from ``t``: this side's next state, and the solve's status."""
        status = self.controller.rejected_status(self.xp, self.backend, self.problem.options, t, decision, finite,
                                                 status)
        return state._replace(h=decision.next_h), status


class JumpingControl(LandingControl):
    """:class:`LandingControl` for a solve with ``jump_t``: a step onto a jump ends one ulp
    before it, and the next one starts one ulp after it, with a derivative of its own."""

    def __init__(self, backend: Any, problem: Any, controller: StepController, landings: Landings, direction: Any,
                 first_derivative: Callable[[Any, Any], Any], reuses_fsal: bool, nudge: Nudge) -> None:
        super().__init__(backend, problem, controller, landings, direction, first_derivative, reuses_fsal)
        self.nudge = nudge

    def start_time(self, t0: Any) -> Any:
        # A jump at t[0]: func is evaluated on the side the solve goes to, from one ulp past it.
        xp = self.xp
        return xp.where(at_jump(xp, xp.reshape(t0, (1,)), self.problem.options.jump_t)[0],
                        self.nudge.beside(t0, self.direction), t0)

    def _target(self, landing: Any, landing_time: Any) -> tuple[Any, Any]:
        jump = self.landings.jumps[landing]
        # A step onto a discontinuity ends one ulp before it, so that its stages at c = 1 see
        # func's side before the jump; the next step starts one ulp after it.
        return jump, self.xp.where(jump, self.nudge.beside(landing_time, -self.direction), landing_time)

    def _restart(self, clip: Clip, t_end: Any, y_new: Any, dy_fsal: Any) -> tuple[Any, Any, Any]:
        backend = self.backend
        jumped = clip.lands & clip.jump
        t_start = self.xp.where(jumped, self.nudge.beside(clip.landing_time, self.direction), t_end)
        if not self.reuses_fsal:
            return t_start, self.first_derivative(t_start, y_new), 1
        dy_new = backend.cond(jumped, lambda dy: self.first_derivative(t_start, y_new), lambda dy: dy, dy_fsal)
        return t_start, dy_new, backend.select(jumped, 1, 0)


def landing_control(backend: Any, problem: Any, f: VectorField, y0: Any, direction: Any, fsal: bool = True,
                    state_dtype: Any = None) -> LandingControl:
    """The step-size side of a solve of ``problem`` from ``y0``: with jumps or without, chosen here once.
    ``fsal=False``: the next step's first derivative is always evaluated afresh at its start
    (a scheme whose steps do not end where the base step's FSAL stage lies). ``state_dtype``:
    the dtype func gets its state in, where ``y0`` is carried wider (it sets the ulp of a nudge)."""
    xp, tab, options, ts = problem.xp, problem.tableau, problem.options, problem.ts
    landings = landing_times(xp, ts, direction, problem.interpolant is not None, options.step_t, options.jump_t)
    state_dtype = y0.dtype if state_dtype is None else state_dtype
    stages_nudge = problem.stage_nudge(state_dtype)

    def first_derivative(t: Any, y: Any) -> Any:
        return f(stage_time(t, direction, 0.0, stages_nudge), y)

    # With perturb, the FSAL derivative (at t + h, one ulp before) is not the next step's first.
    reuses_fsal = fsal and tab.fsal and not options.perturb
    controller = controller_for(tab, options)
    if not options.jump_t:
        return LandingControl(backend, problem, controller, landings, direction, first_derivative, reuses_fsal)
    # func gets t in the state's (real) dtype: jump sides and perturbed stages are an ulp of it.
    nudge = Nudge.for_state(xp, state_dtype, ts.dtype)
    return JumpingControl(backend, problem, controller, landings, direction, first_derivative, reuses_fsal, nudge)
