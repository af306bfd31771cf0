"""``odeint`` and ``solve``: the public entry points, with torchdiffeq's call signature.

A solve is prepared (names become objects, the arguments are checked, the parameters and
the events found: a :class:`PreparedSolve`), run by its gradient mode, and finished
(the time gradients, the event outcome, the state in the caller's structure).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._arguments import (
    SolveArguments,
    arrays_in,
    check_events_supported,
    check_resolution,
    check_tolerance,
    failure,
    gradient_mode_of,
    output_times,
    tableau_of,
)
from ._array_api import is_array
from ._backend import Backend, Field
from ._callbacks import StepCallbacks
from ._checkpoint_policies import CheckpointPolicy
from ._complex import cast as complex_cast
from ._continuous_adjoint import ContinuousAdjoint
from ._events import Event, Events, as_events
from ._gradients import Backprop, GradientMode
from ._loop import Problem
from ._options import SolverOptions
from ._plugins import registry
from ._progress import as_progress
from ._rk_step import stage_nudge, stage_time
from ._solution import EventOutcome, Solution, SolveOutputs, Stats, Status
from ._state import StateLayout
from ._stepsize import controller_for
from ._tableau import Tableau
from ._time_gradients import TimeGradients
from .errors import GradientNotSupportedError, InvalidArgumentError, NonFiniteError, SymadjWarning

if TYPE_CHECKING:
    from typing_extensions import Unpack


@dataclass(frozen=True)
class PreparedSolve:
    """A solve ready for its gradient mode: the backend, the state layout, the problem
    (output times, tableau, options, events...), the bound field, the flat initial state
    (moved for the time gradients), the caller's ``t`` where its gradient is wanted
    (else ``None``), and the time gradients :func:`solve` adds after the solve (else ``None``)."""

    backend: Backend
    layout: StateLayout
    mode: GradientMode
    problem: Problem
    field: Field
    y0: Any
    times: Any
    time_gradients: TimeGradients | None


@dataclass(frozen=True)
class _Inputs:
    """The caller's state and times in the chosen backend: the flat initial state, the
    output times, and the caller's ``t`` where its gradient is wanted (else ``None``)."""

    backend: Backend
    xp: Any
    layout: StateLayout
    y0: Any
    ts: Any
    times: Any


def solve(
    func: Callable[..., Any],
    y0: Any,
    t: Any,
    *,
    method: str | Tableau | None = "dopri5",
    rtol: Any = 1e-7,
    atol: Any = 1e-9,
    gradient: str | GradientMode = "auto",
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
        gradient: ``"auto"`` (the default: exact, the fastest within a memory budget, see
            :class:`AutoGradient`), ``"symplectic"`` (exact, least memory per step), ``"checkpoint"``,
            ``"backprop"``, ``"adjoint"``, ``"reversible"`` (exact for its own coupled scheme, memory
            independent of the number of steps), or a :class:`GradientMode`.
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
    arguments = SolveArguments(
        method=method, rtol=rtol, atol=atol, gradient=gradient, backend=backend, options=options, args=args,
        adjoint_params=adjoint_params, adjoint_rtol=adjoint_rtol, adjoint_atol=adjoint_atol,
        adjoint_options=adjoint_options, checkpoints=checkpoints, event=event, progress=progress,
    )
    prepared = _prepare(func, y0, t, arguments)
    if isinstance(prepared, Solution):
        return prepared
    outputs, stats = prepared.mode.solve(prepared.backend, prepared.problem, prepared.field, prepared.y0,
                                         prepared.times)
    return _finish(prepared, outputs, stats, throw)


def odeint(func: Callable[..., Any], y0: Any, t: Any, **arguments: Unpack[SolveArguments]) -> Any:
    """torchdiffeq's ``odeint``: the solution at every time in ``t`` (leading axis), nothing else.

    Arguments as :func:`solve`, which also returns statistics; ``odeint`` always raises
    when the solve fails.

    Args:
        func: the vector field ``func(t, y)``, or ``func(t, y, args)`` when ``args`` is given.
        y0: initial state: an array, or a tuple of arrays (any pytree in JAX).
        t: output times, strictly monotonic; ``t[0]`` is the initial time (alone, it gives ``y0[None]``).

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
    for name in arguments:
        if name not in SolveArguments.__annotations__:  # throw= too: odeint always raises
            raise TypeError(f"odeint() got an unexpected keyword argument {name!r}")
    return solve(func, y0, t, **arguments, throw=True).ys


def _prepare(func: Callable[..., Any], y0: Any, t: Any, arguments: SolveArguments) -> PreparedSolve | Solution:
    """The solve of ``func`` from ``y0`` over ``t`` ready to run; the :class:`Solution`
    itself for a single output time."""
    tableau, mode = tableau_of(arguments["method"]), gradient_mode_of(arguments)
    inputs = _inputs(y0, t, arguments["backend"], mode)
    options = _checked_options(inputs, arguments, tableau)
    if inputs.ts.shape[0] == 1:
        if arguments["event"] is not None:
            raise InvalidArgumentError("event= needs t with at least two times: the start and a time past any event")
        return _initial_state_only(inputs)
    field = _field(func, inputs, arguments, options, mode)
    field, events = _with_events(field, inputs, arguments, tableau, options, mode)
    problem = _problem(func, inputs, arguments, tableau, options, events, mode)
    time_gradients, start = None, inputs.y0
    if inputs.times is not None and not mode.time_gradients:
        first_time = _first_call_times(inputs.xp, inputs.ts, options, inputs.y0)[0]
        time_gradients = TimeGradients.of(inputs.backend, inputs.times, field, first_time, inputs.y0)
        start = time_gradients.moved_start(inputs.y0)
    return PreparedSolve(inputs.backend, inputs.layout, mode, problem, field, start, inputs.times, time_gradients)


def _inputs(y0: Any, t: Any, backend_name: str | None, mode: GradientMode) -> _Inputs:
    """``y0`` and ``t`` in the backend named (by default the one that handles ``y0``), checked."""
    backend = registry.get_backend(backend_name) if backend_name is not None else registry.backend_for(arrays_in(y0))
    xp = backend.namespace()
    leaves, split, rebuild = backend.split_state(y0)
    layout = StateLayout.of(xp, leaves, split, rebuild, single=len(leaves) == 1 and is_array(y0))
    flat_y0 = layout.flatten(xp, leaves)
    if math.prod(flat_y0.shape) == 0:
        raise InvalidArgumentError(
            f"y0 has no elements (shapes {list(layout.shapes)}); give a state with at least one element"
        )
    ts = output_times(backend, xp, t, flat_y0)
    # Every mode gives gradients with respect to t (see symadj/_time_gradients.py); the
    # refusal is the backends' contract for modes that would not.
    ts, times = backend.time_inputs(t, ts, True, lambda: GradientNotSupportedError(
        f"gradient={mode.name!r} gives no gradient with respect to t; stop the gradient of t"
    ))
    return _Inputs(backend, xp, layout, flat_y0, ts, times)


def _checked_options(inputs: _Inputs, arguments: SolveArguments, tableau: Tableau) -> SolverOptions:
    """The solver options, once the tolerances and ``y0`` are checked."""
    backend, xp, rtol = inputs.backend, inputs.xp, arguments["rtol"]
    check_tolerance(backend, xp, "rtol", rtol)
    check_tolerance(backend, xp, "atol", arguments["atol"])
    backend.check(xp.all(xp.isfinite(inputs.y0)),
                  lambda: NonFiniteError("y0 contains NaN or infinity at the initial time t[0]"))
    options = SolverOptions.from_mapping(arguments["options"]).bounded(backend.default_max_steps)
    if controller_for(tableau, options).adaptive:
        check_resolution(xp, rtol, inputs.y0.dtype, stacklevel=5)
    return options


def _field(func: Callable[..., Any], inputs: _Inputs, arguments: SolveArguments, options: SolverOptions,
           mode: GradientMode) -> Field:
    """``func`` bound as the backend's field, with every parameter it uses."""
    backend, y0 = inputs.backend, inputs.y0
    field = backend.make_field(func, arguments["args"], y0, inputs.ts, arguments["adjoint_params"], inputs.layout)
    if backend.differentiable and not isinstance(mode, Backprop):
        # A backend may find parameters func uses beyond those it was given and return the
        # field that holds them (torch finds them over the whole forward solve instead).
        found = backend.check_params_found(field, _first_call_times(inputs.xp, inputs.ts, options, y0), y0)
        if found is not None:
            field = found
    return field


def _with_events(field: Field, inputs: _Inputs, arguments: SolveArguments, tableau: Tableau,
                 options: SolverOptions, mode: GradientMode) -> tuple[Field, Events | None]:
    """``field`` and the events of ``event=`` (``None`` without), bound with one parameter list."""
    if arguments["event"] is None:
        return field, None
    check_events_supported(tableau, options)
    events = Events.build(inputs.backend, inputs.xp, as_events(arguments["event"]), arguments["args"], inputs.y0,
                          inputs.ts, arguments["adjoint_params"], inputs.layout)
    # The gradient modes bind func and the event functions with one parameter list.
    field, *event_fields = inputs.backend.share_params([field, *events.fields])
    events = dataclasses.replace(events, fields=tuple(event_fields))
    if events.per_row and isinstance(mode, ContinuousAdjoint):
        raise GradientNotSupportedError(
            "per-row events (event functions returning one value per row) need an exact gradient mode: "
            "gradient='symplectic' (default), 'checkpoint' or 'backprop'; gradient='adjoint' supports "
            "an event function returning one value for the whole state"
        )
    return field, events


def _problem(func: Callable[..., Any], inputs: _Inputs, arguments: SolveArguments, tableau: Tableau,
             options: SolverOptions, events: Events | None, mode: GradientMode) -> Problem:
    """What the loop needs, with func's step callbacks (torchdiffeq's) on the user's state."""
    xp, layout = inputs.xp, inputs.layout
    callbacks, adjoint_callbacks = StepCallbacks.of(func), StepCallbacks.of(func, adjoint=True)
    if adjoint_callbacks is not None and not isinstance(mode, ContinuousAdjoint):
        warnings.warn(f"func's *_adjoint callbacks run in the backward solves of gradient='adjoint'; "
                      f"gradient={mode.name!r} has none, so they are not called", SymadjWarning, stacklevel=4)
    return Problem(xp, tableau, inputs.ts, arguments["rtol"], arguments["atol"], options, events,
                   as_progress(arguments["progress"], inputs.ts),
                   callbacks.on(lambda y: layout.to_state(xp, y)) if callbacks is not None else None,
                   adjoint_callbacks)


def _finish(prepared: PreparedSolve, outputs: SolveOutputs, stats: Stats, throw: bool) -> Solution:
    """The :class:`Solution` of a solve that ran: checked (with ``throw``), with the time
    gradients added, the event outcome, and the state in the caller's structure."""
    backend, problem, xp = prepared.backend, prepared.problem, prepared.problem.xp
    if throw:
        backend.check_status(stats, lambda stats, ts: failure(stats, ts, problem.options), problem.ts)
    if prepared.time_gradients is not None:
        # The exact modes' solves take no forward-mode autodiff anyway; backprop's does, and
        # deferred rates (a custom VJP rule in JAX) would end it. Events keep them eager: the
        # rates read the event record, whose traced flags a custom rule cannot close over.
        deferrable = not isinstance(prepared.mode, Backprop) and stats.events is None
        outputs = prepared.time_gradients.added(backend, problem, prepared.field, outputs, stats.events, deferrable)
    outcome = None
    if problem.events is not None:
        outcome = _event_outcome(backend, xp, prepared.layout, outputs, stats.events)
    ys = prepared.layout.to_state(xp, outputs.ys, batch=(problem.n_outputs,))
    return Solution(ts=problem.ts, ys=ys, stats=stats, event=outcome)


def _event_outcome(backend: Backend, xp: Any, layout: StateLayout, outputs: SolveOutputs, record: Any
                   ) -> EventOutcome:
    """The event outcome: its time carries the gradient of the solve's event time (in the
    state's dtype) onto the record's full-precision value."""
    time = outputs.event_time
    t = backend.stop_gradient(record.t) + complex_cast(xp, time - backend.stop_gradient(time), record.t.dtype)
    return EventOutcome(t=t, y=layout.to_state(xp, outputs.event_state), fired=record.fired, index=record.which)


def _initial_state_only(inputs: _Inputs) -> Solution:
    """The solution at the single time ``t[0]``: ``y0`` itself, with a leading axis (as torchdiffeq)."""
    xp, ts = inputs.xp, inputs.ts
    zero = xp.asarray(0)
    stats = Stats(n_attempts=zero, n_accepted=zero, n_rejected=zero, n_fevals=zero,
                  status=xp.asarray(int(Status.SUCCESS)), t_final=ts[0], n_outputs=xp.asarray(1))
    return Solution(ts=ts, ys=inputs.layout.to_state(xp, inputs.y0[None, ...], batch=(1,)), stats=stats)


def _first_call_times(xp: Any, ts: Any, options: SolverOptions, y0: Any) -> Any:
    """``ts`` with ``ts[0]`` where the solve first calls func (one ulp after it with
    ``options['perturb']``): a backend's probe call of func is that call."""
    if not options.perturb:
        return ts
    nudge = stage_nudge(xp, True, y0.dtype, ts.dtype)
    first = stage_time(ts[0], ts[-1] - ts[0], 0.0, nudge)
    return xp.concat([xp.reshape(first, (1,)), ts[1:]])
