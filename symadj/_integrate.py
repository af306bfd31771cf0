"""The adaptive (or fixed-step) integration loop, written against a backend's primitives.

Steps are clipped so that they land on every output time; no interpolation. A step
from t_n of size h_n ends at t_n + h_n, computed once, so every later use of that
time (stage times, the next step's FSAL derivative, the backward pass) sees the same
number. Step sizes are treated as constants by every gradient mode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

from ._backend import Backend
from ._checkpoints import AllSteps, CheckpointPolicy
from ._engine import VectorField, error_ratio, rk_advance_evaluations, rk_step_with_stages
from ._options import SolverOptions
from ._solution import Stats, Status
from ._stepsize import initial_step, next_step
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

    @property
    def n_outputs(self) -> int:
        return self.ts.shape[0]


class Trajectory(NamedTuple):
    """The accepted steps, kept for the backward pass: step n goes from ``times[n]`` with
    size ``steps[n]``; output k was reached after ``output_steps[k]`` steps. ``states``
    holds what the checkpoint policy kept (with the default, ``states[n]`` is y_n)."""

    times: Any
    steps: Any
    states: Any
    output_steps: Any
    n_steps: Any
    n_outputs: Any


class _Carry(NamedTuple):
    t: Any
    y: Any
    dy: Any
    h: Any
    previous_ratio: Any
    next_output: Any
    n_accepted: Any
    n_rejected: Any
    n_fevals: Any
    status: Any
    outputs: Any
    output_steps: Any
    times: Any
    steps: Any
    states: Any


def integrate(backend: Backend, problem: Problem, f: VectorField, y0: Any, *, record: bool,
              differentiable: bool = False, checkpoints: CheckpointPolicy | None = None,
              active_stages: tuple[int, ...] = ()) -> tuple[Any, Stats, Trajectory | None]:
    """Solve from ``ts[0]`` through every output time.

    Returns the outputs stacked along a leading axis (NaN where not reached), the
    statistics, and, when ``record``, the accepted steps for the backward pass, kept as
    the ``checkpoints`` policy says (default: every state); a policy that keeps stage
    states keeps those listed in ``active_stages``. ``differentiable`` asks the backend
    for a loop its autodiff can reverse.
    """
    policy = checkpoints if checkpoints is not None else AllSteps()
    xp, tab, options, ts = problem.xp, problem.tableau, problem.options, problem.ts
    n_outputs = problem.n_outputs
    t0 = ts[0]
    direction = xp.sign(ts[-1] - t0)
    dy0 = f(t0, y0)
    n_fevals = 1
    adaptive = tab.adaptive and options.step_size is None
    if options.step_size is not None:
        h0 = options.step_size * direction
    elif not adaptive:
        h0 = ts[-1] - t0  # one step per output interval: every step is clipped to the next output
    elif options.first_step is not None:
        h0 = options.first_step * direction
    else:
        # Step sizes are constants of the discrete solve: no gradient through the heuristic.
        magnitude = initial_step(xp, f, t0, backend.stop_gradient(y0), backend.stop_gradient(dy0),
                                 direction, tab.embedded_order or tab.order, problem.rtol, problem.atol,
                                 options.norm)
        h0 = backend.stop_gradient(magnitude) * direction
        n_fevals += 1
    fixed_h = h0
    capacity = options.max_steps if record else 0
    zero_index = xp.asarray(0)

    def kept(y: Any, stage_states: list[Any]) -> Any:
        """What the policy stores for a step from ``y``."""
        return xp.stack([stage_states[i] for i in active_stages]) if policy.stages else y

    kept_like = xp.stack([y0] * len(active_stages)) if record and policy.stages else y0
    carry = _Carry(
        t=t0, y=y0, dy=dy0, h=h0,
        previous_ratio=xp.ones((), dtype=y0.dtype),
        next_output=1, n_accepted=0, n_rejected=0, n_fevals=n_fevals, status=int(Status.RUNNING),
        outputs=backend.buffer_write(backend.buffer(n_outputs, y0), 0, y0),
        output_steps=backend.buffer_write(backend.buffer(n_outputs, zero_index), 0, zero_index),
        times=backend.buffer(capacity, t0) if record else None,
        steps=backend.buffer(capacity, t0) if record else None,
        states=policy.buffer(backend, capacity, kept_like) if record else None,
    )
    evals_per_attempt = tab.stages - 1
    landing_slack = 1.0 + 64 * xp.finfo(t0.dtype).eps

    def running(c: _Carry) -> Any:
        return (c.next_output < n_outputs) & (c.status == int(Status.RUNNING))

    def attempt(c: _Carry) -> _Carry:
        remaining = ts[c.next_output] - c.t
        # A step that falls short of an output by a few ulps is stretched onto it, rather
        # than followed by a step of size 1e-16 (e.g. ten steps of 0.1 towards 1.0).
        lands = xp.abs(remaining) <= xp.abs(c.h) * landing_slack
        h = xp.where(lands, remaining, c.h)
        y_new, dy_fsal, derivatives, stage_states = rk_step_with_stages(xp, f, tab, c.t, h, c.y, c.dy)
        finite = xp.all(xp.isfinite(y_new))
        if adaptive:
            ratio = backend.stop_gradient(error_ratio(
                xp, tab, h, c.y, y_new, derivatives, problem.rtol, problem.atol, options.norm))
            ratio = xp.where(finite, ratio, xp.full_like(ratio, xp.inf))
            accept = ratio <= 1
            h_next = next_step(xp, backend.stop_gradient(h), ratio, c.previous_ratio, tab.order, options)
        else:
            ratio, accept, h_next = c.previous_ratio, finite, fixed_h
        t_new = c.t + h
        c = c._replace(n_fevals=c.n_fevals + evals_per_attempt)

        def accepted(c: _Carry) -> _Carry:
            dy_new = dy_fsal if tab.fsal else f(t_new, y_new)
            if record:
                c = c._replace(
                    times=backend.buffer_write(c.times, c.n_accepted, c.t),
                    steps=backend.buffer_write(c.steps, c.n_accepted, h),
                    states=policy.store(backend, c.states, c.n_accepted, kept(c.y, stage_states)),
                )
            c = c._replace(t=t_new, y=y_new, dy=dy_new, h=h_next, previous_ratio=ratio,
                           n_accepted=c.n_accepted + 1,
                           n_fevals=c.n_fevals + (0 if tab.fsal else 1))
            return backend.cond(lands, reached_output, lambda c: c, c)

        def reached_output(c: _Carry) -> _Carry:
            return c._replace(
                outputs=backend.buffer_write(c.outputs, c.next_output, c.y),
                output_steps=backend.buffer_write(c.output_steps, c.next_output,
                                                  xp.asarray(c.n_accepted)),
                next_output=c.next_output + 1,
            )

        def rejected(c: _Carry) -> _Carry:
            if not adaptive:
                return c._replace(n_rejected=c.n_rejected + 1, status=int(Status.NONFINITE))
            too_small = (xp.abs(h_next) < options.min_step) | (c.t + h_next == c.t)
            failure = backend.select(finite, int(Status.STEP_UNDERFLOW), int(Status.NONFINITE))
            return c._replace(h=h_next, n_rejected=c.n_rejected + 1,
                              status=backend.select(too_small, failure, c.status))

        c = backend.cond(accept, accepted, rejected, c)
        exhausted = (c.n_accepted + c.n_rejected >= options.max_steps) & running(c)
        return c._replace(status=backend.select(exhausted, int(Status.MAX_STEPS), c.status))

    carry = backend.while_loop(running, attempt, carry, max_iterations=options.max_steps,
                               differentiable=differentiable)
    status = backend.select(carry.next_output == n_outputs, int(Status.SUCCESS), carry.status)
    outputs = backend.buffer_stack(carry.outputs, carry.next_output, xp.full_like(y0, xp.nan))
    checkpoint_bytes, extra_fevals = 0, 0
    if record:
        checkpoint_bytes, extra_fevals = policy.costs(
            backend, carry.n_accepted, _bytes_of(xp, kept_like), _bytes_of(xp, t0), rk_advance_evaluations(tab))
    stats = Stats(
        n_steps=carry.n_accepted + carry.n_rejected, n_accepted=carry.n_accepted,
        n_rejected=carry.n_rejected, n_fevals=carry.n_fevals, status=status,
        t_final=carry.t, n_outputs=carry.next_output,
        checkpoint_bytes=checkpoint_bytes, extra_fevals=extra_fevals,
    )
    trajectory = None
    if record:
        trajectory = Trajectory(carry.times, carry.steps, carry.states, carry.output_steps,
                                carry.n_accepted, carry.next_output)
    return outputs, stats, trajectory


def _bytes_of(xp: Any, x: Any) -> int:
    return math.prod(x.shape) * xp.finfo(x.dtype).bits // 8
