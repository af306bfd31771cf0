"""``odeint`` and ``solve``: the public entry points, with torchdiffeq's call signature."""

from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ._backend import Backend
from ._callbacks import StepCallbacks
from ._checkpoint_policies import CheckpointPolicy
from ._array_api import device_of, is_array, namespace_of
from ._complex import cast as complex_cast
from ._complex import is_complex, real_dtype
from ._rk_step import stage_nudge, stage_time
from ._events import Event, Events, as_events
from ._gradients import Adjoint, Backprop, GradientMode, as_gradient_mode, with_checkpoints
from ._loop import Problem
from ._options import SolverOptions
from ._interpolant import interpolates
from ._plugins import registry
from ._progress import as_progress
from ._solution import EventOutcome, Solution, Stats, Status
from ._state import StateLayout
from ._stepsize import controller_for
from ._tableau import Tableau
from .errors import (
    GradientNotSupportedError,
    InvalidArgumentError,
    MaxStepsError,
    NonFiniteError,
    StepSizeUnderflowError,
    SymadjWarning,
)


def solve(
    func: Callable[..., Any],
    y0: Any,
    t: Any,
    *,
    method: str | Tableau | None = "dopri5",
    rtol: Any = 1e-7,
    atol: Any = 1e-9,
    gradient: str | GradientMode = "symplectic",
    backend: str | None = None,
    options: Mapping[str, Any] | None = None,
    args: Any = None,
    adjoint_params: Sequence[Any] | None = None,
    adjoint_rtol: float | None = None,
    adjoint_atol: float | None = None,
    adjoint_options: Mapping[str, Any] | None = None,
    checkpoints: str | CheckpointPolicy | None = None,
    event: Callable[..., Any] | Event | Sequence[Callable[..., Any] | Event] | None = None,
    progress: bool = False,
    throw: bool = True,
) -> Solution:
    """Solve dy/dt = func(t, y) from ``t[0]`` and return the state at every time in ``t``.

    Args:
        func: the vector field, ``func(t, y)`` — or ``func(t, y, args)`` when ``args`` is
            given (the JAX convention). ``y`` has the structure of ``y0``; ``t`` is a 0-d
            array in its real dtype (the solve keeps times in float64). Like torchdiffeq, symadj calls
            ``func.callback_step(t0, y0, dt)`` before each step it tries, and
            ``func.callback_accept_step``/``callback_reject_step`` after, where func defines
            them; their ``_adjoint`` forms get ``(t, (y, adj_y, *adj_params), dt)`` in the
            backward solves of ``gradient="adjoint"`` (the exact modes have none).
        y0: initial state: an array, or a tuple of arrays of one dtype, real or complex
            floating (see docs/gradient-modes.md, complex states).
        t: output times, strictly increasing or strictly decreasing; a single time gives ``y0``
            as the only output, without calling ``func``.
        method: a registered tableau name (see :func:`list_tableaux`) or a :class:`Tableau`;
            ``None`` means ``"dopri5"``.
        rtol: relative tolerance of the embedded error estimate (may be a traced value in JAX).
        atol: absolute tolerance of the embedded error estimate.
        gradient: ``"symplectic"`` (exact, least memory), ``"checkpoint"``, ``"backprop"``,
            ``"adjoint"``, or a :class:`GradientMode`.
        backend: ``"torch"``, ``"jax"``, ``"numpy"``, ...; by default the one that handles ``y0``.
        options: solver options, see :class:`SolverOptions` (unknown names are listed).
        args: extra argument passed to ``func``; gradients flow to it (JAX).
        adjoint_params: tensors gradients flow to (torch), leaves or not (``z = enc(x)``:
            the gradient flows on into ``enc``); func may use no other tensor that requires
            grad. By default ``func.parameters()`` and the tensors requiring grad that func's
            output depends on (found by one call of func, as in a closure ``lambda t, y: net(y)``).
        adjoint_rtol: for ``gradient="adjoint"`` only: the backward solve's relative tolerance
            (default: ``rtol``).
        adjoint_atol: for ``gradient="adjoint"`` only: its absolute tolerance (default: ``atol``).
        adjoint_options: for ``gradient="adjoint"`` only: its options, e.g. ``{"norm": "seminorm"}``.
        checkpoints: for ``gradient="symplectic"`` or ``"checkpoint"`` only: what the forward
            pass keeps for the backward pass, ``"auto"`` (default: a memory budget, e.g.
            ``"auto:2GiB"``), ``"all"``, ``"offload"``, ``"stages"``, ``"revolve:K"`` or a
            :class:`CheckpointPolicy` (see docs/checkpoints.md).
        event: a function ``g(t, y)`` (``g(t, y, args)`` with ``args``), an :class:`Event`
            (a function and a direction), or a list of them: the solve stops where one changes
            sign, located on the continuous extension; ``Solution.event`` tells when, where and
            which (see docs/events.md). A ``g`` returning one value per row of ``y`` (leading
            batch axis) stops each row at its own time. Outputs at and after an event hold the
            event state.
        progress: show t, the step count and the time left during the forward pass and
            the backward walk (tqdm when installed, else lines on stderr; under JAX's ``jit``
            through a host callback). Off by default, and then free.
        throw: raise when the solve fails; with ``False`` return the partial solution.

    Returns:
        A :class:`Solution` with ``ys`` of leading axis ``len(t)``.

    Raises:
        UnknownNameError: unknown method, backend, gradient mode or option.
        InvalidArgumentError: bad times, tolerances, state or options.
        GradientNotSupportedError: per-row events with ``gradient="adjoint"``.
        MaxStepsError: ``options["max_steps"]`` step attempts were not enough (``throw=True``).
        StepSizeUnderflowError: the step size fell below ``options["min_step"]`` (``throw=True``).
        NonFiniteError: ``y0`` or the state became NaN or infinite (``throw=True``).

    Examples:
        >>> import numpy as np, symadj
        >>> sol = symadj.solve(lambda t, y: -y, np.array([1.0]), np.array([0.0, 1.0]))
        >>> round(float(sol.ys[-1, 0]), 6), sol.status.name
        (0.367879, 'SUCCESS')
    """
    tableau = method if isinstance(method, Tableau) else registry.get_tableau("dopri5" if method is None else method)
    mode = with_checkpoints(_gradient_mode(gradient, adjoint_rtol, adjoint_atol, adjoint_options), checkpoints,
                            isinstance(gradient, GradientMode))
    chosen = registry.get_backend(backend) if backend is not None else registry.backend_for(_arrays_in(y0))
    xp = chosen.namespace()
    leaves, split, rebuild = chosen.split_state(y0)
    layout = StateLayout.of(xp, leaves, split, rebuild, single=len(leaves) == 1 and is_array(y0))
    flat_y0 = layout.flatten(xp, leaves)
    if math.prod(flat_y0.shape) == 0:
        raise InvalidArgumentError(
            f"y0 has no elements (shapes {list(layout.shapes)}); give a state with at least one element"
        )
    ts = _times(chosen, xp, t, flat_y0)
    # Every mode gives gradients with respect to t (see _with_time_gradients); the refusal is
    # the backends' contract for modes that would not.
    ts, times = chosen.time_inputs(t, ts, True, lambda: GradientNotSupportedError(
        f"gradient={mode.name!r} gives no gradient with respect to t; stop the gradient of t"
    ))
    _check_tolerance(chosen, xp, "rtol", rtol)
    _check_tolerance(chosen, xp, "atol", atol)
    chosen.check(xp.all(xp.isfinite(flat_y0)),
                 lambda: NonFiniteError("y0 contains NaN or infinity at the initial time t[0]"))
    solver_options = SolverOptions.from_mapping(options).bounded(chosen.default_max_steps)
    if controller_for(tableau, solver_options).adaptive:
        _check_resolution(xp, rtol, flat_y0.dtype)
    if ts.shape[0] == 1:
        if event is not None:
            raise InvalidArgumentError("event= needs t with at least two times: the start and a time past any event")
        return _initial_state_only(xp, layout, ts, flat_y0)
    field = chosen.make_field(func, args, flat_y0, ts, adjoint_params, layout)
    if chosen.differentiable and not isinstance(mode, Backprop):
        # A backend may find parameters func uses beyond those it was given and return the
        # field that holds them (torch finds them over the whole forward solve instead).
        found = chosen.check_params_found(field, _first_call_times(xp, ts, solver_options, flat_y0), flat_y0)
        if found is not None:
            field = found
    events = None
    if event is not None:
        _check_events_supported(tableau, solver_options, mode)
        events = Events.build(chosen, xp, as_events(event), args, flat_y0, ts, adjoint_params, layout)
        # The gradient modes bind func and the event functions with one parameter list.
        field, *event_fields = chosen.share_params([field, *events.fields])
        events = dataclasses.replace(events, fields=tuple(event_fields))
        if events.per_row and isinstance(mode, Adjoint):
            raise GradientNotSupportedError(
                "per-row events (event functions returning one value per row) need an exact gradient mode: "
                "gradient='symplectic' (default), 'checkpoint' or 'backprop'; gradient='adjoint' supports "
                "an event function returning one value for the whole state"
            )
    callbacks, adjoint_callbacks = StepCallbacks.of(func), StepCallbacks.of(func, adjoint=True)
    if adjoint_callbacks is not None and not isinstance(mode, Adjoint):
        warnings.warn(f"func's *_adjoint callbacks run in the backward solves of gradient='adjoint'; "
                      f"gradient={mode.name!r} has none, so they are not called", SymadjWarning, stacklevel=2)
    problem = Problem(xp, tableau, ts, rtol, atol, solver_options, events, as_progress(progress, ts),
                      callbacks.on(lambda y: layout.to_state(xp, y)) if callbacks is not None else None,
                      adjoint_callbacks)
    if times is not None and not mode.time_gradients:
        # dL/dt_0 = −(λ_0 − ḡ_0)·f(t_0, y_0): y0 moves against f as t_0 moves (its own output moves back).
        t_first = _first_call_times(xp, ts, solver_options, flat_y0)[0]
        shift, start_rate = _time_shift(chosen, xp, times, flat_y0), chosen.stop_gradient(field(t_first, flat_y0))
        flat_y0 = flat_y0 - start_rate * shift[0]
    outputs, stats = mode.solve(chosen, problem, field, flat_y0, times)
    if throw:
        chosen.check_status(stats, lambda stats, ts: _failure(stats, ts, problem.options), ts)
    if times is not None and not mode.time_gradients:
        # The exact modes' solves take no forward-mode autodiff anyway; backprop's does, and
        # deferred rates (a custom VJP rule in JAX) would end it. Events keep them eager: the
        # rates read the event record, whose traced flags a custom rule cannot close over.
        outputs = _with_time_gradients(chosen, xp, problem, field, outputs, shift, start_rate, stats.events,
                                       deferrable=not isinstance(mode, Backprop) and stats.events is None)
    outcome = None
    if events is not None:
        outputs, outcome = _event_outcome(chosen, xp, events, layout, outputs, stats.events, problem.n_outputs)
    ys = layout.to_state(xp, outputs, batch=(problem.n_outputs,))
    return Solution(ts=ts, ys=ys, stats=stats, event=outcome)


def _initial_state_only(xp: Any, layout: StateLayout, ts: Any, flat_y0: Any) -> Solution:
    """The solution at the single time ``t[0]``: ``y0`` itself, with a leading axis (as torchdiffeq)."""
    zero = xp.asarray(0)
    stats = Stats(n_attempts=zero, n_accepted=zero, n_rejected=zero, n_fevals=zero,
                  status=xp.asarray(int(Status.SUCCESS)), t_final=ts[0], n_outputs=xp.asarray(1))
    return Solution(ts=ts, ys=layout.to_state(xp, flat_y0[None, ...], batch=(1,)), stats=stats)


def _first_call_times(xp: Any, ts: Any, options: SolverOptions, y0: Any) -> Any:
    """``ts`` with ``ts[0]`` where the solve first calls func (one ulp after it with
    ``options['perturb']``): a backend's probe call of func is that call."""
    if not options.perturb:
        return ts
    nudge = stage_nudge(xp, True, y0.dtype, ts.dtype)
    first = stage_time(ts[0], ts[-1] - ts[0], 0.0, nudge)
    return xp.concat([xp.reshape(first, (1,)), ts[1:]])


def _time_shift(backend: Backend, xp: Any, times: Any, like: Any) -> Any:
    """``times − stop(times)`` in the state's dtype: zero, with the gradient of ``times``."""
    return xp.astype(times - backend.stop_gradient(times), like.dtype)


def _with_time_gradients(backend: Backend, xp: Any, problem: Problem, field: Any, outputs: Any, shift: Any,
                         start_rate: Any, record: Any, deferrable: bool) -> Any:
    """``outputs`` (values unchanged) with dL/dt_k = ḡ_k · f(t_k, y(t_k)) for k ≥ 1: an output
    moves along the solution as its time moves (the step sizes stay as they were). Outputs
    held at an event state do not move; with events, ``outputs`` ends with the event slots
    (:meth:`Events.packed`), and the event state of a row that never fired, the last output,
    moves with it. With ``deferrable`` (a mode without forward-mode autodiff through it),
    the backend may evaluate the rates in the backward pass only (:meth:`Backend.time_terms`)."""
    count = problem.n_outputs

    def rates_of(fixed: Any) -> Any:
        def rate(k: Any, rates: Any) -> Any:
            return rates.write(k, backend.stop_gradient(field(problem.ts[k], fixed[k, ...])))

        rates = backend.buffer(count, start_rate).write(0, start_rate)
        rates = backend.fori_loop(1, count, rate, rates).stack(count, start_rate)
        if record is not None:
            rates = problem.events.held_still(xp, record, rates, problem.ts, xp.sign(problem.ts[-1] - problem.ts[0]))
            # The last output's rate is zero on the rows that fired (held at their event state).
            rates = xp.concat([rates, rates[-1:, ...], xp.zeros_like(rates[-1:, ...])])
        return rates

    if record is not None:
        shift = xp.concat([shift, shift[-1:], shift[-1:]])
    fixed = backend.stop_gradient(outputs)
    if deferrable:
        return outputs + backend.time_terms(rates_of, fixed, shift)
    return outputs + Backend.time_terms(backend, rates_of, fixed, shift)


def _check_events_supported(tableau: Tableau, options: SolverOptions, mode: GradientMode) -> None:
    if tableau.dense is None:
        with_dense = ", ".join(registry.tableaux_with_dense_output())
        raise InvalidArgumentError(
            f"event= locates crossings on the method's continuous extension, which method={tableau.name!r} "
            f"does not declare (no [dense] section); use one that does: {with_dense}"
        )
    if not interpolates(tableau, options):
        why = ("options['land_on_outputs'] is set" if options.land_on_outputs
               else f"method={tableau.name!r} has no error estimate and no options['step_size']")
        raise InvalidArgumentError(
            f"event= needs outputs interpolated inside steps, but {why}; drop land_on_outputs, or give "
            f"options['step_size'] for a fixed-step method"
        )


def _event_outcome(backend: Backend, xp: Any, events: Events, layout: StateLayout, outputs: Any, record: Any,
                   n_outputs: int) -> tuple[Any, EventOutcome]:
    """The outputs without the event slots, and the event outcome: its time carries the
    time slot's gradient onto the record's full-precision value."""
    state, time_slot = outputs[n_outputs, ...], outputs[n_outputs + 1, ...]
    first = xp.reshape(time_slot, (*events.shape, -1))[..., 0]
    t = backend.stop_gradient(record.t) + complex_cast(xp, first - backend.stop_gradient(first), record.t.dtype)
    outcome = EventOutcome(t=t, y=layout.to_state(xp, state), fired=record.fired, index=record.which)
    return outputs[:n_outputs, ...], outcome


def odeint(
    func: Callable[..., Any],
    y0: Any,
    t: Any,
    *,
    method: str | Tableau | None = "dopri5",
    rtol: Any = 1e-7,
    atol: Any = 1e-9,
    gradient: str | GradientMode = "symplectic",
    backend: str | None = None,
    options: Mapping[str, Any] | None = None,
    args: Any = None,
    adjoint_params: Sequence[Any] | None = None,
    adjoint_rtol: float | None = None,
    adjoint_atol: float | None = None,
    adjoint_options: Mapping[str, Any] | None = None,
    checkpoints: str | CheckpointPolicy | None = None,
    event: Callable[..., Any] | Event | Sequence[Callable[..., Any] | Event] | None = None,
    progress: bool = False,
) -> Any:
    """torchdiffeq's ``odeint``: the solution at every time in ``t`` (leading axis), nothing else.

    Arguments as :func:`solve`, which also returns statistics; ``odeint`` always raises
    when the solve fails.

    Args:
        func: the vector field ``func(t, y)``, or ``func(t, y, args)`` when ``args`` is given.
        y0: initial state: an array, or a tuple of arrays (any pytree in JAX).
        t: output times, strictly monotonic; ``t[0]`` is the initial time (alone, it gives ``y0[None]``).
        method: a registered tableau name or a :class:`Tableau`; ``"dopri5"`` by default (also for ``None``).
        rtol: relative tolerance.
        atol: absolute tolerance.
        gradient: ``"symplectic"`` (default), ``"checkpoint"``, ``"backprop"``, ``"adjoint"``
            or a :class:`GradientMode`.
        backend: the array backend; by default the one that handles ``y0``.
        options: solver options, see :class:`SolverOptions`.
        args: extra argument of ``func``; gradients flow to it.
        adjoint_params: tensors gradients flow to (PyTorch), as in :func:`solve`; by default
            ``func.parameters()`` and the tensors requiring grad that func uses.
        adjoint_rtol: ``gradient="adjoint"`` only, as in :func:`solve`.
        adjoint_atol: ``gradient="adjoint"`` only.
        adjoint_options: ``gradient="adjoint"`` only.
        checkpoints: ``gradient="symplectic"``/``"checkpoint"`` only, as in :func:`solve`.
        event: stop where a function of the state crosses zero, as in :func:`solve` (whose
            ``Solution.event`` also gives the event time); outputs at and after it hold the
            event state.
        progress: show the solve's progress, as in :func:`solve`.

    Returns:
        The state at each time in ``t``, stacked along a new leading axis (a tuple or pytree
        of such arrays for a structured state).

    Raises:
        SymadjError: as :func:`solve` (unknown names, invalid arguments, a failed solve).

    Examples:
        >>> import numpy as np, symadj
        >>> ys = symadj.odeint(lambda t, y: -y, np.array([1.0]), np.linspace(0.0, 1.0, 3))
        >>> ys.shape
        (3, 1)
    """
    return solve(
        func, y0, t, method=method, rtol=rtol, atol=atol, gradient=gradient, backend=backend,
        options=options, args=args, adjoint_params=adjoint_params, adjoint_rtol=adjoint_rtol,
        adjoint_atol=adjoint_atol, adjoint_options=adjoint_options, checkpoints=checkpoints, event=event,
        progress=progress, throw=True,
    ).ys


def _gradient_mode(gradient: Any, rtol: Any, atol: Any, options: Any) -> GradientMode:
    mode = as_gradient_mode(gradient)
    given = [name for name, value in (("adjoint_rtol", rtol), ("adjoint_atol", atol),
                                      ("adjoint_options", options)) if value is not None]
    if not given:
        return mode
    if not isinstance(mode, Adjoint):
        raise InvalidArgumentError(
            f"{', '.join(given)} apply to gradient='adjoint' only, not gradient={mode.name!r}"
        )
    if isinstance(gradient, GradientMode):
        raise InvalidArgumentError(f"{', '.join(given)}: set them on the Adjoint object instead")
    return Adjoint(rtol=rtol, atol=atol, options=options)


def _arrays_in(y0: Any) -> list[Any]:
    """The arrays of a state, enough to choose its backend (which then splits it properly)."""
    if isinstance(y0, (tuple, list)):
        return [a for item in y0 for a in _arrays_in(item)]
    if isinstance(y0, Mapping):
        return [a for item in y0.values() for a in _arrays_in(item)]
    return [y0]


def _times(backend: Backend, xp: Any, t: Any, y0: Any) -> Any:
    if _is_complex_times(t):
        raise InvalidArgumentError(
            "t holds complex numbers; times are real (a complex state is integrated along real time): "
            "pass real times, e.g. t.real"
        )
    if is_array(t) and backend.handles(t):
        # A traced array (under jit) has no device yet: None, not a mismatch.
        t_device, y_device = device_of(t), device_of(y0)
        if t_device is not None and y_device is not None and t_device != y_device:
            raise InvalidArgumentError(f"t is on device {t_device} but y0 is on {y_device}; put them on one device")
    try:
        ts = backend.as_times(t, y0)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"t must be a 1-D sequence of numbers: {exc}") from None
    if ts.ndim != 1 or ts.shape[0] < 1:
        raise InvalidArgumentError(f"t must be 1-D with at least one time (the start), got shape {tuple(ts.shape)}")
    steps = ts[1:] - ts[:-1]
    backend.check(xp.all(xp.isfinite(ts)), lambda: InvalidArgumentError("t contains NaN or infinity"))
    backend.check(xp.all(steps > 0) | xp.all(steps < 0), _unordered_times, ts)
    return ts


def _unordered_times(ts: Any) -> InvalidArgumentError:
    """The error for output times that are repeated or out of order, naming the first offender."""
    values = [float(v) for v in ts]
    for k in range(1, len(values)):
        if values[k] == values[k - 1]:
            return InvalidArgumentError(
                f"t is duplicated: t[{k - 1}] = t[{k}] = {values[k]:.17g}; output times must be strictly "
                f"increasing or strictly decreasing, each time once. Drop the repeat (e.g. torch.unique(t) or "
                f"np.unique(t) on sorted times) and index the solution twice if you need the state there twice"
            )
    forward = values[-1] > values[0]
    for k in range(1, len(values)):
        if (values[k] > values[k - 1]) != forward:
            return InvalidArgumentError(
                f"t must be strictly increasing or strictly decreasing; it goes "
                f"{'up' if forward else 'down'} from t[0] = {values[0]:.6g} to t[-1] = {values[-1]:.6g}, but "
                f"t[{k}] = {values[k]:.6g} follows t[{k - 1}] = {values[k - 1]:.6g}: sort it"
            )
    return InvalidArgumentError("t must be strictly increasing or strictly decreasing")


def _is_complex_times(t: Any) -> bool:
    if is_array(t):
        return is_complex(namespace_of(t), t.dtype)
    if isinstance(t, (list, tuple)):
        return any(_is_complex_times(x) for x in t)
    return isinstance(t, numbers.Complex) and not isinstance(t, numbers.Real)


def _check_tolerance(backend: Backend, xp: Any, name: str, value: Any) -> None:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if not (math.isfinite(value) and value > 0):
            raise InvalidArgumentError(f"{name} must be a positive finite number, got {value!r}")
    elif is_array(value) and backend.handles(value):
        # An array (or a traced value under jit): checked element-wise, at run time if need be.
        backend.check(xp.all(xp.isfinite(value) & (value > 0)),
                      lambda value: InvalidArgumentError(f"{name} must be positive and finite, got {value}"), value)
    else:
        raise InvalidArgumentError(
            f"{name} must be a positive finite number (or an array of them), got {type(value).__name__} {value!r}"
        )


def _check_resolution(xp: Any, rtol: Any, dtype: Any) -> None:
    """Refuse an ``rtol`` below a half-precision state's unit roundoff (the controller would
    chase the rounding of each step); warn for float32/float64, where steps still converge but
    cost more for no accuracy. Traced tolerances are not checked."""
    if not isinstance(rtol, numbers.Real):
        return
    info = xp.finfo(real_dtype(xp, dtype))
    roundoff = float(info.eps) / 2
    if rtol >= roundoff:
        return
    name = str(dtype).rsplit(".", 1)[-1]  # "float16" from a library's "lib.float16" too
    message = (f"rtol={rtol:g} is below the resolution of {name} states (unit roundoff {roundoff:.3g}): "
               f"no {name} solution is that accurate")
    if info.bits < 32:
        typical = "1e-3" if info.eps < 1e-3 else "1e-2"
        raise InvalidArgumentError(
            f"{message}, and the step-size controller would chase rounding errors. Pass rtol of at least "
            f"{roundoff:.2g} (e.g. rtol={typical} with atol near it), or keep the state in float32 and let "
            f"func compute in low precision (torch.autocast around the solve does that)"
        )
    warnings.warn(f"{message}; steps shrink for no gain. Pass rtol >= {roundoff:.2g} or a wider dtype",
                  SymadjWarning, stacklevel=3)


def _failure(stats: Stats, ts: Any, options: SolverOptions) -> Exception:
    """The error of a failed solve, from run-time values of ``stats`` and ``ts``."""
    status = Status(int(stats.status))
    reached = float(stats.t_final)
    target = float(ts[int(stats.n_outputs)]) if int(stats.n_outputs) < ts.shape[0] else reached
    if status is Status.MAX_STEPS:
        return MaxStepsError(
            f"max_steps={options.max_steps} step attempts were not enough: stopped at "
            f"t={reached:.6g} before t={target:.6g}; raise options['max_steps'], loosen rtol/atol, "
            f"or pass throw=False for the partial solution"
        )
    if status is Status.STEP_UNDERFLOW:
        return StepSizeUnderflowError(
            f"the step size fell below min_step={options.min_step} (or below the time "
            f"resolution) at t={reached:.6g}: the problem may be stiff or singular there; loosen "
            f"rtol/atol, lower options['min_step'], or use throw=False"
        )
    return NonFiniteError(
        f"the state became NaN or infinite in the step from t={reached:.6g} "
        f"(after {int(stats.n_accepted)} accepted steps): check func for overflow or division by zero"
    )
