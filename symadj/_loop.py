"""The integration loop, written against a backend's primitives.

The loop reads: attempt a step, let the controller decide, and on acceptance record the
step and evaluate the outputs inside it (see ``symadj/_interpolant.py`` and ``symadj/_landing.py``: with a continuous
extension, outputs are interpolated; steps land only on the final time, ``step_t`` and
``jump_t``). A step from t_n of size h_n ends at t_n + h_n, computed once, so every later
use of that time (stage times, the next step's FSAL derivative, the backward pass) sees
the same number. Step sizes are treated as constants by every gradient mode.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, NamedTuple

from ._backend import Backend
from ._callbacks import StepCallbacks
from ._checkpoint_policies import AllSteps, CheckpointPolicy
from ._complex import itemsize, real_dtype
from ._rk_step import Nudge, VectorField, rk_advance_evaluations, rk_step_with_stages, stage_nudge, stage_time
from ._events import Events
from ._options import SolverOptions
from ._interpolant import Interpolant, interpolates
from ._landing import at_jump, count_reached, landing_times
from ._progress import Progress
from ._solution import Schedule, Stats, Status
from ._stepsize import controller_for
from ._tableau import Tableau


@dataclass(frozen=True)
class Problem:
    """Everything the loop needs, with arrays already in the backend's namespace."""

    xp: Any
    tableau: Tableau
    ts: Any
    rtol: Any
    atol: Any
    options: SolverOptions
    events: Events | None = None
    progress: Progress | None = None
    callbacks: StepCallbacks | None = None
    adjoint_callbacks: StepCallbacks | None = None  # given the continuous adjoint's (y, λ, θ̄...)

    @property
    def n_outputs(self) -> int:
        return self.ts.shape[0]

    def stage_nudge(self, state_dtype: Any) -> Nudge | None:
        """How stage times move inside a step for a state of ``state_dtype`` (``options['perturb']``),
        or ``None``: every recomputation of a step takes it, to see the times the forward pass saw."""
        return stage_nudge(self.xp, self.options.perturb, state_dtype, self.ts.dtype)

    @functools.cached_property
    def interpolant(self) -> Interpolant | None:
        """The continuous extension outputs are evaluated with, or ``None`` where steps land on them."""
        return Interpolant.of(self.tableau) if interpolates(self.tableau, self.options) else None


class Trajectory(NamedTuple):
    """The accepted steps, kept for the backward pass: step n goes from ``times[n]`` with
    size ``steps[n]``; output k (k ≥ 1) lies in step ``output_steps[k]`` at θ =
    ``output_thetas[k]`` (1: the step's end state). ``states`` holds what the checkpoint
    policy kept (with the default, ``states[n]`` is y_n)."""

    times: Any
    steps: Any
    states: Any
    output_steps: Any
    output_thetas: Any
    n_steps: Any
    n_outputs: Any
    events: Any = None  # the EventRecord of a solve with events
    final: Any = None  # the state the last accepted step reached: what the backward walk's first step must recompute


class _Step(NamedTuple):
    """An accepted step, as the output evaluation sees it."""

    index: Any
    t: Any
    h: Any
    y: Any
    y_new: Any
    derivatives: list
    reached: Any  # the time outputs are taken up to: the landing time if the step landed


class _Carry(NamedTuple):
    t: Any
    y: Any
    dy: Any
    h: Any
    previous_ratio: Any
    next_output: Any
    next_landing: Any
    n_accepted: Any
    n_rejected: Any
    n_fevals: Any
    status: Any
    outputs: Any
    output_steps: Any
    output_thetas: Any
    times: Any
    steps: Any
    states: Any
    history: Any
    events: Any


def integrate(backend: Backend, problem: Problem, f: VectorField, y0: Any, *, record: bool,
              differentiable: bool = False, checkpoints: CheckpointPolicy | None = None,
              active_stages: tuple[int, ...] = (), params: Any = None) -> tuple[Any, Stats, Trajectory | None]:
    """Solve from ``ts[0]`` through every output time.

    Returns the outputs stacked along a leading axis (NaN where not reached), the
    statistics, and, when ``record``, the accepted steps for the backward pass, kept as
    the ``checkpoints`` policy says (default: every state); a policy that keeps stage
    states keeps those listed in ``active_stages``. ``differentiable`` asks the backend
    for a loop its autodiff can reverse. With events (``problem.events``, evaluated with
    ``params`` when given) the outputs are followed by the event state and time
    (:meth:`Events.packed`) and the solve stops once every event element has fired.
    Each accepted step is reported to ``problem.progress.forward`` (opened and closed by
    the caller), and each attempt to ``problem.callbacks``.
    """
    policy = checkpoints if checkpoints is not None else AllSteps()
    xp, tab, options, ts = problem.xp, problem.tableau, problem.options, problem.ts
    n_outputs = problem.n_outputs
    t0 = ts[0]
    direction = xp.sign(ts[-1] - t0)
    controller = controller_for(tab, options)
    interpolant = problem.interpolant
    landings = landing_times(xp, ts, direction, interpolant is not None, options.step_t, options.jump_t)
    has_jumps = bool(options.jump_t)
    state_real = real_dtype(xp, y0.dtype)  # times, step sizes and error ratios stay real
    # func gets t in the state's (real) dtype: jump sides and perturbed stages are an ulp of it.
    nudge = Nudge.for_state(xp, y0.dtype, t0.dtype)
    stages_nudge = problem.stage_nudge(y0.dtype)
    # With perturb, the FSAL derivative (at t + h, one ulp before) is not the next step's first.
    reuses_fsal = tab.fsal and not options.perturb

    def first_derivative(t: Any, y: Any) -> Any:
        return f(stage_time(t, direction, 0.0, stages_nudge), y)

    # A jump at t[0]: func is evaluated on the side the solve goes to, from one ulp past it.
    t_begin = xp.where(at_jump(xp, xp.reshape(t0, (1,)), options.jump_t)[0], nudge.beside(t0, direction), t0) \
        if has_jumps else t0
    dy0 = first_derivative(t_begin, y0)
    h0, choosing_evaluations = controller.first_step(xp, backend, problem, f, t_begin, y0, dy0, direction)
    capacity = options.max_steps if record else 0
    zero_index = xp.asarray(0)
    if not backend.staged_loops:
        outputs_at = _EagerOutputs
    else:
        outputs_at = _DeferredOutputs if interpolant is not None and differentiable else _StagedOutputs
    writer = outputs_at(backend, xp, ts, direction, interpolant, options.max_steps)

    events = problem.events
    event_fields = None
    if events is not None:
        event_fields = events.bound(params) if params is not None else events.fields
        event_interpolant = Interpolant.of(tab)
    keeps_stages = record and policy.keeps_stages(backend)
    stages_like = xp.stack([y0] * len(active_stages)) if keeps_stages else None
    carry = _Carry(
        t=t_begin, y=y0, dy=dy0, h=h0,
        previous_ratio=xp.ones((), dtype=state_real),
        next_output=1, next_landing=count_reached(xp, landings.times, direction, t0),
        n_accepted=0, n_rejected=0, n_fevals=1 + choosing_evaluations, status=int(Status.RUNNING),
        outputs=backend.buffer(n_outputs, y0).write(0, y0),
        output_steps=backend.buffer(n_outputs, zero_index).write(0, zero_index),
        output_thetas=backend.buffer(n_outputs, t0).write(0, xp.zeros_like(t0)),
        times=backend.buffer(capacity, t0) if record else None,
        steps=backend.buffer(capacity, t0) if record else None,
        states=policy.buffer(backend, capacity, y0, stages_like) if record else None,
        history=writer.history(y0, dy0),
        events=events.start(xp, event_fields, ts, y0) if events is not None else None,
    )
    evals_per_attempt = tab.stages - 1
    meter = problem.progress.forward if problem.progress is not None else None
    callbacks = problem.callbacks
    landing_slack = 1.0 + 64 * xp.finfo(t0.dtype).eps

    def running(c: _Carry) -> Any:
        going = (c.next_output < n_outputs) & (c.status == int(Status.RUNNING))
        return going if events is None else going & ~xp.all(c.events.record.fired)

    def attempt(c: _Carry) -> _Carry:
        landing = backend.select(c.next_landing < landings.count, c.next_landing, landings.count - 1)
        landing_time = landings.times[landing]
        jump = landings.jumps[landing] if has_jumps else False
        # A step onto a discontinuity ends one ulp before it, so that its stages at c = 1 see
        # func's side before the jump; the next step starts one ulp after it.
        target = xp.where(jump, nudge.beside(landing_time, -direction), landing_time) if has_jumps else landing_time
        remaining = target - c.t
        # A step that falls short of a landing time by a few ulps is stretched onto it, rather
        # than followed by a step of size 1e-16 (e.g. ten steps of 0.1 towards 1.0).
        lands = xp.abs(remaining) <= xp.abs(c.h) * landing_slack
        h = xp.where(lands, remaining, c.h)
        if callbacks is not None and callbacks.attempt is not None:
            backend.host_callback(callbacks.attempt, c.t, c.y, h)
        y_new, dy_fsal, derivatives, stage_states = rk_step_with_stages(xp, f, tab, c.t, h, c.y, c.dy, stages_nudge)
        if events is not None and events.per_row:
            # Rows whose event fired in an earlier step stay where they are.
            frozen = events.frozen(xp, c.events.record, c.t, direction, c.y)
            derivatives = [xp.where(frozen, xp.zeros_like(k), k) for k in derivatives]
            y_new = xp.where(frozen, c.y, y_new)
        finite = xp.all(xp.isfinite(y_new))
        decision = controller.decide(xp, backend, problem, h, c.y, y_new, derivatives, finite, c.previous_ratio,
                                     c.h)
        t_new = c.t + h
        c = c._replace(n_fevals=c.n_fevals + evals_per_attempt)

        def accepted(c: _Carry) -> _Carry:
            if callbacks is not None and callbacks.accept is not None:
                backend.host_callback(callbacks.accept, c.t, c.y, h)
            jumped = lands & jump
            t_start = xp.where(jumped, nudge.beside(landing_time, direction), t_new) if has_jumps else t_new
            if reuses_fsal and has_jumps:
                dy_new = backend.cond(jumped, lambda dy: first_derivative(t_start, y_new), lambda dy: dy, dy_fsal)
                fresh = backend.select(jumped, 1, 0)
            elif reuses_fsal:
                dy_new, fresh = dy_fsal, 0
            else:
                dy_new, fresh = first_derivative(t_start, y_new), 1
            if record:
                c = c._replace(
                    times=c.times.write(c.n_accepted, c.t),
                    steps=c.steps.write(c.n_accepted, h),
                    states=policy.store(backend, c.states, c.n_accepted, c.y,
                                        xp.stack([stage_states[i] for i in active_stages]) if keeps_stages else None),
                )
            # Outputs are taken up to the landing time itself, a jump's included: an output at a jump
            # is the state one ulp before it (the solution is continuous there), at θ = 1.
            step = _Step(c.n_accepted, c.t, h, c.y, y_new, derivatives, xp.where(lands, landing_time, t_new))
            c = writer.write(c, step)
            if events is not None:
                c = c._replace(events=events.after_step(
                    backend, xp, event_fields, c.events, event_interpolant, c.n_accepted, c.t, h, c.y, y_new,
                    derivatives, direction, differentiable))
            if meter is not None:
                meter.step(backend, xp, c.t, t_new, c.n_accepted + 1)
            return c._replace(
                t=t_start, y=y_new, dy=dy_new, h=decision.next_h, previous_ratio=decision.ratio,
                next_landing=backend.select(lands, count_reached(xp, landings.times, direction, landing_time),
                                            c.next_landing),
                n_accepted=c.n_accepted + 1, n_fevals=c.n_fevals + fresh,
            )

        def rejected(c: _Carry) -> _Carry:
            if callbacks is not None and callbacks.reject is not None:
                backend.host_callback(callbacks.reject, c.t, c.y, h)
            if not controller.adaptive:
                return c._replace(n_rejected=c.n_rejected + 1, status=int(Status.NONFINITE))
            # A NaN step size (from a NaN derivative at the start) fails at once, not after max_steps.
            too_small = ~xp.isfinite(decision.next_h) | (xp.abs(decision.next_h) < options.min_step) | (
                c.t + decision.next_h == c.t)
            failure = backend.select(finite, int(Status.STEP_UNDERFLOW), int(Status.NONFINITE))
            return c._replace(h=decision.next_h, n_rejected=c.n_rejected + 1,
                              status=backend.select(too_small, failure, c.status))

        c = backend.cond(decision.accept, accepted, rejected, c)
        exhausted = (c.n_accepted + c.n_rejected >= options.max_steps) & running(c)
        return c._replace(status=backend.select(exhausted, int(Status.MAX_STEPS), c.status))

    carry = backend.while_loop(running, attempt, carry, max_iterations=options.max_steps,
                               differentiable=differentiable)
    finished = carry.next_output == n_outputs
    if events is not None:
        finished = finished | xp.all(carry.events.record.fired)
    status = backend.select(finished, int(Status.SUCCESS), carry.status)
    outputs = writer.finish(carry, y0)
    event_record = None
    if events is not None:
        outputs, event_record = events.finish(xp, carry.events.record, outputs, ts, direction)
        outputs = events.packed(xp, outputs, event_record)
    checkpoint_bytes, extra_fevals, schedule = 0, 0, int(Schedule.NONE)
    if record:
        checkpoint_bytes, extra_fevals, schedule = policy.costs(
            backend, carry.states, carry.n_accepted, _bytes_of(xp, y0), len(active_stages) * _bytes_of(xp, y0),
            _bytes_of(xp, t0), rk_advance_evaluations(tab))
    stats = Stats(
        n_attempts=carry.n_accepted + carry.n_rejected, n_accepted=carry.n_accepted,
        n_rejected=carry.n_rejected, n_fevals=carry.n_fevals, status=status,
        t_final=carry.t, n_outputs=carry.next_output,
        checkpoint_bytes=checkpoint_bytes, extra_fevals=extra_fevals, schedule=schedule, events=event_record,
    )
    trajectory = None
    if record:
        trajectory = Trajectory(carry.times, carry.steps, carry.states, carry.output_steps, carry.output_thetas,
                                carry.n_accepted, carry.next_output, event_record, carry.y)
    return outputs, stats, trajectory


def _theta(xp: Any, times: Any, step: _Step) -> Any:
    """Where ``times`` lie in ``step``, as fractions of it; 1 for a time at its end or past it
    (an output at a jump, which the step ends one ulp before)."""
    theta = (times - step.t) / step.h
    return xp.minimum(theta, xp.ones_like(theta))


class _StagedOutputs:
    """Outputs evaluated as soon as their step is accepted, while its stages are alive: one
    at a time, in a loop whose length the compiled program learns at run time."""

    def __init__(self, backend: Backend, xp: Any, ts: Any, direction: Any, interpolant: Interpolant | None,
                 max_steps: int) -> None:
        self.backend, self.xp, self.ts, self.direction, self.interpolant = backend, xp, ts, direction, interpolant

    def history(self, y0: Any, dy0: Any) -> Any:
        return None

    def write(self, c: _Carry, step: _Step) -> _Carry:
        backend, xp, ts, interpolant = self.backend, self.xp, self.ts, self.interpolant
        n_outputs = ts.shape[0]

        def more(state: tuple) -> Any:
            k = state[0]
            inside = backend.select(k < n_outputs, k, n_outputs - 1)
            return (k < n_outputs) & (self.direction * (ts[inside] - step.reached) <= 0)

        def one(state: tuple) -> tuple:
            k, outputs, steps, thetas = state
            theta = _theta(xp, ts[k], step)
            value = step.y_new
            if interpolant is not None:
                value = xp.where(theta == 1, step.y_new,
                                 interpolant.evaluate(xp, theta, step.h, step.y, step.derivatives))
            return (k + 1, outputs.write(k, value),
                    steps.write(k, xp.asarray(step.index)), thetas.write(k, theta))

        k, outputs, steps, thetas = backend.while_loop(
            more, one, (c.next_output, c.outputs, c.output_steps, c.output_thetas), max_iterations=n_outputs)
        return c._replace(next_output=k, outputs=outputs, output_steps=steps, output_thetas=thetas)

    def finish(self, c: _Carry, y0: Any) -> Any:
        return c.outputs.stack(c.next_output, self.xp.full_like(y0, self.xp.nan))


class _EagerOutputs(_StagedOutputs):
    """:class:`_StagedOutputs` for eager backends: the outputs of a step are counted first,
    then evaluated together."""

    def write(self, c: _Carry, step: _Step) -> _Carry:
        xp, ts = self.xp, self.ts
        first, end = int(c.next_output), int(count_reached(xp, ts, self.direction, step.reached))
        if end <= first:
            return c
        theta = _theta(xp, ts[first:end], step)
        values = xp.broadcast_to(step.y_new, (end - first, *step.y_new.shape))
        if self.interpolant is not None:
            at_end = xp.reshape(theta == 1, (-1, *(1,) * step.y.ndim))
            values = xp.where(at_end, step.y_new,
                              self.interpolant.evaluate(xp, theta, step.h, step.y, step.derivatives))
        outputs, steps, thetas = c.outputs, c.output_steps, c.output_thetas
        index = xp.asarray(step.index)
        for k in range(first, end):
            outputs = outputs.write(k, values[k - first, ...])
            steps = steps.write(k, index)
            thetas = thetas.write(k, theta[k - first])
        return c._replace(next_output=end, outputs=outputs, output_steps=steps, output_thetas=thetas)


class _DeferredOutputs(_StagedOutputs):
    """Outputs evaluated after the loop, for a differentiable staged loop (JAX's reversible
    loop cannot hold another loop): each step's state, size and interpolated stage
    derivatives are kept (as reverse mode keeps them anyway), and every output is
    gathered from its step at the end, one vectorised evaluation."""

    def __init__(self, backend, xp, ts, direction, interpolant, max_steps):
        super().__init__(backend, xp, ts, direction, interpolant, max_steps)
        self.max_steps = max_steps

    def history(self, y0: Any, dy0: Any) -> Any:
        backend, xp = self.backend, self.xp
        stacked = xp.stack([dy0] * len(self.interpolant.stages))
        return (backend.buffer(self.max_steps + 1, y0), backend.buffer(self.max_steps, self.ts[0]),
                backend.buffer(self.max_steps, stacked))

    def write(self, c: _Carry, step: _Step) -> _Carry:
        backend, xp, ts = self.backend, self.xp, self.ts
        ys, hs, ks = c.history
        ys = ys.write(step.index, step.y).write(step.index + 1, step.y_new)
        hs = hs.write(step.index, step.h)
        ks = ks.write(step.index, xp.stack([step.derivatives[i] for i in self.interpolant.stages]))
        positions = xp.arange(ts.shape[0])
        inside = (positions >= c.next_output) & (self.direction * (ts - step.reached) <= 0)
        steps, thetas = c.output_steps.stack(ts.shape[0]), c.output_thetas.stack(ts.shape[0])
        return c._replace(
            next_output=c.next_output + xp.sum(xp.astype(inside, xp.int32)),
            output_steps=backend.buffer_of(xp.where(inside, step.index, steps)),
            output_thetas=backend.buffer_of(xp.where(inside, _theta(xp, ts, step), thetas)),
            history=(ys, hs, ks),
        )

    def finish(self, c: _Carry, y0: Any) -> Any:
        xp = self.xp
        ys, hs, ks = (buffer.stack(buffer.capacity) for buffer in c.history)
        n, theta = c.output_steps.stack(self.ts.shape[0]), c.output_thetas.stack(self.ts.shape[0])
        start, end = xp.take(ys, n, axis=0), xp.take(ys, n + 1, axis=0)
        h, k = xp.take(hs, n, axis=0), xp.take(ks, n, axis=0)
        weights = self.interpolant.weights(xp, theta, self.interpolant.stages, y0.dtype)  # (outputs, stages)
        expand = (1,) * y0.ndim
        increment = xp.sum(xp.reshape(weights, (*weights.shape, *expand)) * k, axis=1)
        values = start + xp.reshape(xp.astype(h, y0.dtype), (-1, *expand)) * increment
        values = xp.where(xp.reshape(theta == 1, (-1, *expand)), end, values)
        positions = xp.reshape(xp.arange(self.ts.shape[0]), (-1, *expand))
        values = xp.where(positions == 0, y0, values)
        return xp.where(positions < c.next_output, values, xp.full_like(values, xp.nan))


def _bytes_of(xp: Any, x: Any) -> int:
    return math.prod(x.shape) * itemsize(xp, x.dtype)
