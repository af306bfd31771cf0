"""The continuous adjoint (Chen et al. 2018): ``gradient="adjoint"``.

Backward, the augmented system (y, λ, θ̄) is solved between output times with its own
tolerances, starting from the last output; not exact for the discrete solve. A solve
stopped by an event (one for the whole state) moves its later output times onto the event.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from ._array_api import device_of
from ._backend import Backend, Field
from ._complex import cast as complex_cast
from ._complex import magnitude, real_product
from ._gradients import GradientMode, _direction
from ._loop import Problem, integrate
from ._options import SolverOptions
from ._plugins import registry
from ._progress import phase
from ._solution import SolveOutputs, Stats, Status
from ._state import StateLayout
from ._tableau import Tableau
from .errors import GradientNotSupportedError, MaxStepsError, NonFiniteError, StepSizeUnderflowError


@dataclass(frozen=True, repr=False)
class ContinuousAdjoint(GradientMode):
    """The continuous adjoint (Chen et al. 2018), solved backward with its own tolerances.

    Not exact for the discrete solve; memory O(|y| + L). ``rtol``/``atol``/``options``
    default to the forward solve's; ``options={"norm": "seminorm"}`` leaves the parameter
    cotangents out of the error norm, as torchdiffeq's option does.

    Args:
        rtol: relative tolerance of the backward solve (default: the forward ``rtol``).
        atol: absolute tolerance of the backward solve (default: the forward ``atol``).
        options: solver options of the backward solve (default: the forward ``options``).
        method: the tableau of the backward solve, a name or a :class:`Tableau` (default: the
            forward solve's; torchdiffeq's ``adjoint_method``).

    Examples:
        >>> import torch, symadj
        >>> y0 = torch.ones(2, requires_grad=True)
        >>> mode = symadj.ContinuousAdjoint(rtol=1e-6, atol=1e-8, options={"norm": "seminorm"})
        >>> symadj.odeint(lambda t, y: -y, y0, [0.0, 1.0], gradient=mode)[-1].sum().backward()
        >>> [round(g, 5) for g in y0.grad.tolist()]
        [0.36788, 0.36788]
    """

    rtol: float | None = None
    atol: float | None = None
    # Compared, not hashed: a dict of options is not hashable.
    options: Any = dataclasses.field(default=None, hash=False)
    method: Any = None
    name = "adjoint"
    time_gradients = True

    def _solve(self, backend, problem, field, y0, times=None):
        # The times go first: a backend may append the parameters it finds while the forward
        # solve runs to the list it gave `forward` (see Backend.custom_vjp).
        timed = times is not None

        def forward(y0, inputs):
            params = inputs[1:] if timed else inputs
            outputs, stats, _ = integrate(backend, problem, field.with_params(params), y0, record=False,
                                          params=params)
            return outputs, stats, (outputs.ys, inputs, stats.events, stats.status, stats.t_final, stats.n_outputs)

        def backward(residuals, cotangents):
            outputs, inputs, record, status, t_final, reached = residuals
            params = inputs[1:] if timed else inputs
            # A solve stopped early (throw=False) left its later outputs NaN: the backward solves,
            # which start from the last output, have nothing to start from.
            finished = status == int(Status.SUCCESS)
            backend.check(finished, _unreached_outputs, status, t_final, reached, problem.ts)
            if backend.staged_loops:  # the check fires at run time: no backward solve may fail before it
                outputs = problem.xp.where(finished, outputs, problem.xp.zeros_like(outputs))
            bound = field.with_params(params)
            # The cotangents the backward solves take at the output times: with an event's added.
            outputs_cotangent = cotangents.ys
            adjoint_problem, backward_cotangent, event_params_bar = problem, outputs_cotangent, []
            if problem.events is not None:
                adjoint_problem, outputs_cotangent, backward_cotangent, event_params_bar = _event_segments(
                    backend, problem, bound, params, record, cotangents)
            lam, params_bar = continuous_adjoint(backend, adjoint_problem, bound, params, outputs, backward_cotangent,
                                                 self)
            if event_params_bar:
                params_bar = backend.accumulate(params_bar, event_params_bar)
            if not timed:
                return lam, params_bar
            return lam, [_time_cotangents(backend, problem, bound, outputs, outputs_cotangent, lam), *params_bar]

        inputs = [*field.params] if times is None else [times, *field.params]
        return backend.custom_vjp(forward, backward, y0, inputs)


def continuous_adjoint(backend: Backend, problem: Problem, field: Field, params: Sequence[Any],
                       outputs: Any, outputs_cotangent: Any, mode: ContinuousAdjoint) -> tuple[Any, list]:
    """Solve the augmented system (y, λ, θ̄) backward between output times (Chen et al. 2018).

    The augmented state is one array in the dtype that y and the parameters promote to (a
    float32 state with float64 parameters is integrated in float64); func still sees y in
    its own dtype, and each cotangent comes back in the dtype of its array. A backward
    segment that fails raises (:class:`MaxStepsError`, ...), at run time under a tracing
    backend: its gradients would be NaN.
    """
    xp = problem.xp
    y_last = outputs[-1]
    state_dtype = y_last.dtype
    dtype = xp.result_type(state_dtype, *(p.dtype for p in params))
    shapes = (tuple(y_last.shape),) * 2 + tuple(tuple(p.shape) for p in params)
    layout = StateLayout(shapes, dtype, False, list, list)
    options = _backward_options(backend, problem, mode, math.prod(y_last.shape))

    def cast(x: Any, to: Any) -> Any:
        return complex_cast(xp, x, to)  # a real parameter's cotangent keeps its (real) part

    def flatten(arrays: Sequence[Any]) -> Any:
        return layout.flatten(xp, [cast(a, dtype) for a in arrays])

    def augmented(t, z):
        y, lam = (cast(a, state_dtype) for a in layout.unflatten(xp, z)[:2])
        dy, y_bar, params_bar = backend.vjp(lambda y, p: field.with_params(p)(t, y), y, params, lam)
        return flatten([dy, -y_bar, *(-p for p in params_bar)])

    rtol = problem.rtol if mode.rtol is None else mode.rtol
    atol = problem.atol if mode.atol is None else mode.atol
    callbacks = None
    if problem.adjoint_callbacks is not None:
        callbacks = problem.adjoint_callbacks.on(lambda z: tuple(layout.unflatten(xp, z)))
    # The backward solves' loops report to the backward meter.
    backward_solves = None if problem.progress is None else replace(problem.progress, forward=problem.progress.backward)
    tableau = problem.tableau if mode.method is None else _as_tableau(mode.method)

    def segment(i: Any, carry: tuple) -> tuple:
        # A loop, not unrolled: a compiler traces one backward segment, however many outputs.
        k = problem.n_outputs - 1 - i
        times = xp.stack([problem.ts[k], problem.ts[k - 1]])

        def solve(carry: tuple) -> tuple:
            lam, params_bar = carry
            z0 = flatten([outputs[k], lam, *params_bar])
            z, stats, _ = integrate(backend, Problem(xp, tableau, times, rtol, atol, options,
                                                     progress=backward_solves, callbacks=callbacks),
                                    augmented, z0, record=False)
            backend.check_status(stats, lambda stats, times: _backward_failure(stats, times, options, mode), times)
            _, lam, *params_bar = layout.unflatten(xp, z.ys[-1])
            return cast(lam, state_dtype), [cast(bar, p.dtype) for bar, p in zip(params_bar, params)]

        # Output times moved onto an event time leave segments of length zero.
        lam, params_bar = backend.cond(times[0] == times[1], lambda carry: carry, solve, carry)
        return lam + outputs_cotangent[k - 1], params_bar

    start = (outputs_cotangent[-1], [xp.zeros_like(p) for p in params])
    with phase(problem.progress and problem.progress.backward, backend) as end:
        lam, params_bar = backend.fori_loop(0, problem.n_outputs - 1, segment, start)
        end.after = lam
    return lam, params_bar


def _event_segments(backend: Backend, problem: Problem, field: Field, params: Sequence[Any], record: Any,
                    cotangents: SolveOutputs) -> tuple[Problem, Any, Any, list]:
    """The continuous adjoint of a solve stopped by an event (one for the whole state): the
    output times at and after τ move onto τ (segments of length zero), the event state's
    cotangent ū joins the first of them, with ẏ = f(τ, y*) in the implicit function theorem.

    Returns the backward problem, the outputs' own cotangents, those with ū added, and
    the parameters' cotangents through g."""
    xp, events, ts = problem.xp, problem.events, problem.ts
    n, direction = problem.n_outputs, _direction(problem)
    rate = field(record.t, record.state)
    own, event_outputs, params_bar = events.cotangents(backend, xp, events.bound(params), params, record,
                                                       cotangents, ts, direction, rate)
    after = record.fired & (direction * (ts - record.t) >= 0)
    first = after & ~xp.concat([xp.zeros((1,), dtype=xp.bool, device=device_of(ts)), after[:-1]])
    expand = (n, *(1,) * record.state.ndim)
    with_event = own + xp.where(xp.reshape(first, expand), event_outputs.cotangent, xp.zeros_like(own))
    moved = Problem(xp, problem.tableau, xp.where(after, record.t, ts), problem.rtol, problem.atol, problem.options,
                    progress=problem.progress, adjoint_callbacks=problem.adjoint_callbacks)
    return moved, own, with_event, params_bar


def _time_cotangents(backend: Backend, problem: Problem, field: Field, outputs: Any, outputs_cotangent: Any,
                     lam0: Any) -> Any:
    """dL/dt_k = g_k·f(t_k, y_k) for k ≥ 1 and dL/dt_0 = −(λ(t_0) − g_0)·f(t_0, y_0) (real
    pairings for a complex state)."""
    xp = problem.xp

    def dot(a: Any, b: Any) -> Any:
        return xp.astype(xp.sum(real_product(backend, xp, a, b)), problem.ts.dtype)

    derivatives = [field(problem.ts[k], outputs[k]) for k in range(problem.n_outputs)]
    later = [dot(outputs_cotangent[k], derivatives[k]) for k in range(1, problem.n_outputs)]
    first = -dot(lam0 - outputs_cotangent[0], derivatives[0])
    return xp.stack([first, *later])


def _unreached_outputs(status: Any, t_final: Any, reached: Any, ts: Any) -> GradientNotSupportedError:
    """The error of gradient='adjoint' on a forward solve that stopped before its last output."""
    k = int(reached)
    missed = f"output t[{k}] = {float(ts[k]):.6g}" if k < len(ts) else "its last output"
    return GradientNotSupportedError(
        f"gradient='adjoint' cannot differentiate this solve: the forward solve stopped at t={float(t_final):.6g} "
        f"({Status(int(status)).name}, returned with throw=False) before reaching {missed}, so the outputs from "
        f"there on were never computed (they are NaN), and the adjoint's backward solves start from the last "
        f"output. Make the solve reach every output (raise options['max_steps'], loosen rtol/atol), or use "
        f"gradient='symplectic', 'checkpoint' or 'backprop', which differentiate the steps that were taken"
    )


def _backward_failure(stats: Stats, times: Any, options: SolverOptions, mode: ContinuousAdjoint) -> Exception:
    """The error of a failed backward segment of :func:`continuous_adjoint`, from run-time values."""
    status = Status(int(stats.status))
    start, end, reached = float(times[0]), float(times[1]), float(stats.t_final)
    where = (f"the backward (adjoint) solve of gradient='adjoint', from t={start:.6g} back to "
             f"t={end:.6g}, stopped at t={reached:.6g}")
    source = "set by adjoint_options" if mode.options is not None else "from options: adjoint_options was not given"
    if status is Status.MAX_STEPS:
        return MaxStepsError(
            f"{where}: max_steps={options.max_steps} step attempts were not enough ({source}); raise it "
            f"with adjoint_options={{'max_steps': {2 * options.max_steps}}} "
            f"(or symadj.ContinuousAdjoint(options=...)), loosen adjoint_rtol/adjoint_atol, or use "
            f"gradient='symplectic', which needs no backward solve"
        )
    if status is Status.STEP_UNDERFLOW:
        return StepSizeUnderflowError(
            f"{where}: its step size fell below min_step={options.min_step} (or below the time "
            f"resolution); the adjoint system may be stiff there: loosen adjoint_rtol/adjoint_atol, "
            f"lower adjoint_options['min_step'], or use gradient='symplectic'"
        )
    return NonFiniteError(
        f"{where}: the adjoint state became NaN or infinite (after {int(stats.n_accepted)} accepted "
        f"steps); check func's derivatives for overflow, or use gradient='symplectic'"
    )


def _as_tableau(method: Any) -> Tableau:
    return method if isinstance(method, Tableau) else registry.get_tableau(method)


def _backward_options(backend: Backend, problem: Problem, mode: ContinuousAdjoint, n_state: int) -> SolverOptions:
    """The options of the backward solves: the mode's (``adjoint_options``), else the forward
    solve's, with the forward solve's ``jump_t`` in both cases."""
    options = problem.options if mode.options is None else _adjoint_options(
        problem.xp, mode.options, n_state).bounded(backend.default_max_steps)
    if problem.options.jump_t:
        # func is as discontinuous backward as forward, whatever adjoint_options say.
        options = replace(options, jump_t=tuple(sorted({*options.jump_t, *problem.options.jump_t})))
    return options


def _adjoint_options(xp: Any, options: Any, n_state: int) -> SolverOptions:
    options = dict(options)
    if options.get("norm") == "seminorm":
        size = 2 * n_state

        def seminorm(scaled: Any) -> Any:
            part = magnitude(xp, scaled[:size])
            return xp.sqrt(xp.mean(part * part))

        options["norm"] = seminorm
    return SolverOptions.from_mapping(options)
