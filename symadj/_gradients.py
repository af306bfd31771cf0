"""Gradient strategies, written once against the backend contract.

Every mode treats step sizes as constants: the gradient is that of the discrete
solve with the accepted step sizes fixed (see docs).
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import InitVar, dataclass, fields, replace
from typing import Any

from ._backend import Backend, Field
from ._checkpoint_policies import Auto, CheckpointPolicy, as_checkpoint_policy
from ._array_api import device_of
from ._complex import cast as complex_cast
from ._complex import magnitude, real_product
from ._rk_step import rk_advance, rk_step_with_stages
from ._loop import Problem, integrate
from ._options import SolverOptions
from ._interpolant import Interpolant
from ._output_cotangents import OutputsCotangent
from ._plugins import registry
from ._progress import phase
from ._solution import Stats, Status
from ._state import StateLayout
from ._tableau import Tableau
from ._symplectic_step import SymplecticStep, adjoint_stages, cond_with_ends
from ._walk import BackwardStep, StageSource, WalkState
from ._walk_checks import RecomputingStep, WalkChecks, check_recomputation_choice
from .errors import (
    GradientNotSupportedError,
    InvalidArgumentError,
    MaxStepsError,
    NonFiniteError,
    StepSizeUnderflowError,
    UnknownNameError,
)


class GradientMode(abc.ABC):
    """How gradients of a solve are computed. Pass an instance or its name to ``gradient=``.

    The modes are :class:`Symplectic` (``"symplectic"``, the default), :class:`Checkpoint`
    (``"checkpoint"``), :class:`Backprop` (``"backprop"``) and :class:`Adjoint`
    (``"adjoint"``); a name is turned into its object at once. All treat step sizes as
    constants; the exact modes give the gradient of the discrete solve. A mode is a frozen
    dataclass: equal to another of its kind with the same settings, and hashable.

    Raises:
        UnknownNameError: (from :func:`symadj.solve`) ``gradient=`` names no mode.

    Examples:
        >>> import torch, symadj
        >>> _ = torch.manual_seed(0)
        >>> func = torch.nn.Linear(2, 2).double()
        >>> y0, t = torch.ones(3, 2, dtype=torch.float64), torch.linspace(0.0, 1.0, 3)
        >>> def weight_grad(mode):
        ...     func.zero_grad()
        ...     symadj.odeint(lambda t, y: func(y), y0, t, gradient=mode,
        ...                   adjoint_params=list(func.parameters())).pow(2).sum().backward()
        ...     return func.weight.grad.clone()
        >>> exact = weight_grad("backprop")
        >>> all(torch.allclose(weight_grad(mode), exact, rtol=1e-10, atol=0)
        ...     for mode in ("symplectic", symadj.Checkpoint()))
        True
    """

    name: str

    #: Whether the mode computes gradients with respect to the output times itself; for the
    #: others :func:`symadj.solve` gives dL/dt_k = ḡ_k · f(t_k, y(t_k)).
    time_gradients = False

    def solve(self, backend: Backend, problem: Problem, field: Field, y0: Any, times: Any = None
              ) -> tuple[Any, Stats]:
        """Outputs (leading time axis) and forward statistics, differentiable as this mode says.

        ``times`` is the caller's differentiable copy of the output times, for modes
        with ``time_gradients``.
        """
        if not backend.differentiable:
            return _reported(backend, problem, lambda: integrate(backend, problem, field, y0, record=False)[:2])
        times = times if self.time_gradients else None
        return _reported(backend, problem, lambda: self._solve(backend, problem, field, y0, times))

    @abc.abstractmethod
    def _solve(self, backend: Backend, problem: Problem, field: Field, y0: Any, times: Any = None
               ) -> tuple[Any, Stats]:
        """The differentiable solve: outputs and forward statistics; ``times`` (only for a
        mode with ``time_gradients``, else ``None``) the output times to differentiate."""

    def __repr__(self) -> str:
        # The settings that differ from the mode's defaults, e.g. Symplectic(checkpoints=Revolve(budget=8)).
        default = type(self)()
        shown = []
        for setting in fields(self):
            value, usual = getattr(self, setting.name), getattr(default, setting.name)
            if setting.repr and value is not usual and (usual is None or value != usual):
                shown.append(f"{setting.name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"


@dataclass(frozen=True, repr=False)
class Backprop(GradientMode):
    """Reverse-mode autodiff through every stage of every step: the reference; memory O(N·s·L).

    The fastest mode, and the one for higher-order gradients; it keeps the activations of
    every network evaluation of the solve until the backward pass.

    Examples:
        >>> import torch, symadj
        >>> y0 = torch.ones(2, requires_grad=True)
        >>> ys = symadj.odeint(lambda t, y: -y, y0, [0.0, 1.0], gradient=symadj.Backprop())
        >>> ys[-1].sum().backward()
        >>> [round(g, 5) for g in y0.grad.tolist()]
        [0.36788, 0.36788]
    """

    name = "backprop"

    def _solve(self, backend, problem, field, y0, times=None):
        outputs, stats, _ = integrate(backend, problem, field, y0, record=False, differentiable=True)
        return outputs, stats


@dataclass(frozen=True, repr=False)
class _RecordingMode(GradientMode):
    """Modes whose forward pass keeps the accepted steps, as a checkpoint policy says.

    Args:
        checkpoints: a :class:`CheckpointPolicy` or its name (``"auto"``, the default,
            ``"all"``, ``"offload"``, ``"stages"``, ``"revolve:K"``); see docs/checkpoints.md.
        memory: the budget of ``"auto"`` in bytes or as ``"512MiB"``, ``"2GiB"``; by default
            the backend's (:class:`Auto`).
        recomputation: what to do when the backward pass recomputes a step differently from
            the forward pass (func is not deterministic: dropout in training mode, hidden
            state, non-deterministic kernels), which makes the gradient that of another
            solve: ``"raise"`` a :class:`RecomputationError` (the default), ``"warn"``
            (:class:`RecomputationWarning`) or ``"off"`` (no comparison).
    """

    checkpoints: str | CheckpointPolicy = "auto"
    memory: InitVar[int | str | None] = None
    recomputation: str = "raise"

    def __post_init__(self, memory: int | str | None) -> None:
        # Names become objects at once: the fields hold the policy and the checked choice.
        object.__setattr__(self, "recomputation", check_recomputation_choice(self.recomputation))
        policy = as_checkpoint_policy(self.checkpoints)
        if memory is not None:
            if not isinstance(policy, Auto):
                raise InvalidArgumentError(
                    f"memory= is the budget of checkpoints='auto'; it does not apply to checkpoints={policy!r}"
                )
            policy = Auto(memory=memory)
        object.__setattr__(self, "checkpoints", policy.for_mode(self.name))

    def _solve(self, backend, problem, field, y0, times=None):
        self.checkpoints.check(backend, problem.options.max_steps)
        stored = adjoint_stages(problem.tableau, backward_interpolant(problem))

        def forward(y0, params):
            outputs, stats, trajectory = integrate(backend, problem, field.with_params(params), y0, record=True,
                                                   checkpoints=self.checkpoints, active_stages=stored, params=params)
            return outputs, stats, (trajectory, params)

        def backward(residuals, outputs_cotangent):
            trajectory, params = residuals
            return self._walk_back(backend, problem, field.with_params(params), params, trajectory, outputs_cotangent)

        return backend.custom_vjp(forward, backward, y0, field.params)

    def _walk_back(self, backend: Backend, problem: Problem, field: Field, params: Sequence[Any], trajectory: Any,
                   outputs_cotangent: Any) -> tuple[Any, list]:
        """The backward pass: the cotangents of ``y0`` and of ``params`` from the outputs'
        ``outputs_cotangent``, the recorded steps walked in reverse as the checkpoint policy says."""
        xp, tab, interpolant = problem.xp, problem.tableau, backward_interpolant(problem)
        checks = WalkChecks(backend, xp, self, trajectory.final)
        events, record = problem.events, trajectory.events
        event_outputs, event_params_bar = None, []
        incoming = outputs_cotangent
        if events is not None:
            outputs_cotangent, event_outputs, event_params_bar = events.cotangents(
                backend, xp, events.bound(params), params, record, outputs_cotangent, problem.ts,
                _direction(problem), record.rate)
        outputs = OutputsCotangent(backend, xp, trajectory, outputs_cotangent, interpolant,
                                   self.interpolated_stages(tab, interpolant), event_outputs)
        steps = _ModeSteps(self, backend, problem, field, params, record, checks,
                           adjoint_stages(tab, interpolant))
        start = WalkState(xp.zeros_like(outputs.first), [xp.zeros_like(p) for p in params], checks.start(problem.ts))
        with phase(problem.progress and problem.progress.backward, backend) as end:
            walked = self.checkpoints.walk(backend, xp, trajectory, outputs, start, steps)
            checks.report(walked, incoming)
            end.steps, end.after = trajectory.n_steps, walked.lam
        params_bar = walked.params_bar
        if event_params_bar:
            params_bar = backend.accumulate(params_bar, event_params_bar)
        return walked.lam, params_bar

    def interpolated_stages(self, tab: Tableau, interpolant: Interpolant | None) -> tuple[int, ...]:
        """The stages whose cotangents from interpolated outputs (and event states) the step adjoint takes."""
        return interpolant.stages if interpolant is not None else ()

    @abc.abstractmethod
    def step_adjoint(self, backend: Backend, problem: Problem, field: Field, params: Sequence[Any],
                     source: StageSource) -> RecomputingStep:
        """``(t_n, h_n, value_n, λ_{n+1}, θ̄, outputs) -> (λ_n, θ̄, (y_n, y_{n+1}))`` for one
        accepted step, with ``outputs`` the :class:`OutputCotangents` of the outputs in it,
        ``value_n`` what the walk read for the step (y_n, or its stage states: ``source``
        says) and y_{n+1} as the step's recomputation gives it (``(None, None)`` if it cannot)."""


@dataclass(frozen=True, repr=False)
class Symplectic(_RecordingMode):
    """The symplectic adjoint (Matsubara et al. 2021): exact gradient, memory O(N·|y| + s·|y| + L).

    Backward, each step's stages are recomputed without a graph, then the adjoint is
    integrated with the tableau's symplectic partner, one vector–Jacobian product per stage.
    The default mode; equal to :class:`Backprop` up to rounding.

    Examples:
        >>> import torch, symadj
        >>> y0 = torch.ones(2, requires_grad=True)
        >>> sol = symadj.solve(lambda t, y: -y, y0, [0.0, 1.0], gradient=symadj.Symplectic())
        >>> sol.ys[-1].sum().backward()
        >>> [round(g, 5) for g in y0.grad.tolist()], int(sol.stats.checkpoint_bytes) > 0
        ([0.36788, 0.36788], True)
    """

    name = "symplectic"

    def step_adjoint(self, backend, problem, field, params, source):
        return SymplecticStep(backend, problem.tableau, field, params, source, backward_interpolant(problem),
                              problem.options.perturb, recompute_ends=self.recomputation != "off")

    def interpolated_stages(self, tab, interpolant):
        return adjoint_stages(tab, interpolant) if interpolant is not None else ()


@dataclass(frozen=True, repr=False)
class Checkpoint(_RecordingMode):
    """Per-step checkpoints (ACA, Zhuang et al. 2020): exact gradient, memory O(N·|y| + s·L).

    Backward, each step is recomputed with a graph and backpropagated through: it holds
    one step's graph (s network evaluations) at a time, where :class:`Symplectic` holds one.

    Examples:
        >>> import torch, symadj
        >>> y0 = torch.ones(2, requires_grad=True)
        >>> symadj.odeint(lambda t, y: -y, y0, [0.0, 1.0], gradient="checkpoint")[-1].sum().backward()
        >>> [round(g, 5) for g in y0.grad.tolist()]
        [0.36788, 0.36788]
    """

    name = "checkpoint"

    def step_adjoint(self, backend, problem, field, params, source):
        xp, tab, interpolant = problem.xp, problem.tableau, backward_interpolant(problem)

        def step(t, h, value, lam, params_bar, outputs):
            y = source.start(value)
            lam = lam + outputs.at_end

            def plain(carry):
                lam, params_bar = carry

                def advance(y, params):
                    return rk_advance(xp, field.with_params(params), tab, t, h, y, nudge=problem.stage_nudge(y.dtype))

                y_end, y_bar, step_bar = backend.vjp(advance, y, params, lam)
                return y_bar, backend.accumulate(params_bar, step_bar), y_end

            def with_outputs(carry):
                # The step's end state and its derivatives k_i, with cotangents λ' and h·D_i.
                lam, params_bar = carry
                stages = interpolant.stages

                def advance(y, params):
                    y_new, _, derivatives, _ = rk_step_with_stages(xp, field.with_params(params), tab, t, h, y,
                                                                   nudge=problem.stage_nudge(y.dtype))
                    return xp.stack([y_new, *(derivatives[i] for i in stages)])

                h_state = xp.astype(h, lam.dtype)
                cotangent = xp.stack([lam, *(h_state * outputs.dense[p] for p in range(len(stages)))])
                ends, y_bar, step_bar = backend.vjp(advance, y, params, cotangent)
                return y_bar + outputs.direct, backend.accumulate(params_bar, step_bar), ends[0]

            if interpolant is None:
                lam, params_bar, y_end = plain((lam, params_bar))
            else:
                lam, params_bar, y_end = cond_with_ends(backend, outputs.has_dense, with_outputs, plain,
                                                        (lam, params_bar), y)
            return lam, params_bar, (y, y_end)

        return step


@dataclass(frozen=True, repr=False)
class Adjoint(GradientMode):
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
        >>> mode = symadj.Adjoint(rtol=1e-6, atol=1e-8, options={"norm": "seminorm"})
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
            return outputs, stats, (outputs, inputs, stats.events, stats.status, stats.t_final, stats.n_outputs)

        def backward(residuals, outputs_cotangent):
            outputs, inputs, record, status, t_final, reached = residuals
            params = inputs[1:] if timed else inputs
            # A solve stopped early (throw=False) left its later outputs NaN: the backward solves,
            # which start from the last output, have nothing to start from.
            finished = status == int(Status.SUCCESS)
            backend.check(finished, _unreached_outputs, status, t_final, reached, problem.ts)
            if backend.staged_loops:  # the check fires at run time: no backward solve may fail before it
                outputs = problem.xp.where(finished, outputs, problem.xp.zeros_like(outputs))
            bound = field.with_params(params)
            adjoint_problem, event_params_bar = problem, []
            if problem.events is not None:
                adjoint_problem, outputs, outputs_cotangent, event_cotangent, event_params_bar = _event_segments(
                    backend, problem, bound, params, record, outputs, outputs_cotangent)
                lam, params_bar = continuous_adjoint(backend, adjoint_problem, bound, params, outputs,
                                                     event_cotangent, self)
            else:
                lam, params_bar = continuous_adjoint(backend, problem, bound, params, outputs, outputs_cotangent,
                                                     self)
            if event_params_bar:
                params_bar = backend.accumulate(params_bar, event_params_bar)
            if not timed:
                return lam, params_bar
            return lam, [_time_cotangents(backend, problem, bound, outputs, outputs_cotangent, lam), *params_bar]

        inputs = [*field.params] if times is None else [times, *field.params]
        return backend.custom_vjp(forward, backward, y0, inputs)


def _reported(backend: Backend, problem: Problem, run: Callable[[], tuple[Any, Stats]]) -> tuple[Any, Stats]:
    """``run()``, the forward solve, as the forward phase of its progress meter."""
    with phase(problem.progress and problem.progress.forward, backend) as end:
        outputs, stats = run()
        end.steps = stats.n_accepted
    return outputs, stats


def _reporting_steps(backend: Backend, problem: Problem, adjoint: RecomputingStep) -> RecomputingStep:
    """``adjoint``, reporting each step of the backward walk to the backward meter."""
    if problem.progress is None:
        return adjoint
    reporter = problem.progress.backward

    def step(t, h, y, lam, params_bar, outputs):
        reporter.step(backend, problem.xp, t + h, t)
        return adjoint(t, h, y, lam, params_bar, outputs)

    return step


def _event_segments(backend: Backend, problem: Problem, field: Field, params: Sequence[Any], record: Any,
                    outputs: Any, outputs_cotangent: Any) -> tuple[Problem, Any, Any, Any, list]:
    """The continuous adjoint of a solve stopped by an event (one for the whole state): the
    output times at and after τ move onto τ (segments of length zero), the event state's
    cotangent ū joins the first of them, with ẏ = f(τ, y*) in the implicit function theorem.

    Returns the backward problem, the outputs, their own cotangents, those with ū added,
    and the parameters' cotangents through g."""
    xp, events, ts = problem.xp, problem.events, problem.ts
    n, direction = problem.n_outputs, _direction(problem)
    rate = field(record.t, record.state)
    own, event_outputs, params_bar = events.cotangents(backend, xp, events.bound(params), params, record,
                                                       outputs_cotangent, ts, direction, rate)
    after = record.fired & (direction * (ts - record.t) >= 0)
    first = after & ~xp.concat([xp.zeros((1,), dtype=xp.bool, device=device_of(ts)), after[:-1]])
    expand = (n, *(1,) * record.state.ndim)
    with_event = own + xp.where(xp.reshape(first, expand), event_outputs.cotangent, xp.zeros_like(own))
    moved = Problem(xp, problem.tableau, xp.where(after, record.t, ts), problem.rtol, problem.atol, problem.options,
                    progress=problem.progress, adjoint_callbacks=problem.adjoint_callbacks)
    return moved, outputs[:n, ...], own, with_event, params_bar


def _direction(problem: Problem) -> Any:
    return problem.xp.sign(problem.ts[-1] - problem.ts[0])


def _frozen_rows_step(problem: Problem, record: Any, adjoint: RecomputingStep) -> RecomputingStep:
    """``adjoint`` for a solve whose per-row events freeze the rows that fired:
    y_{n+1} = m ⊙ y_n + (1 − m) ⊙ Φ(y_n), so λ_n = m ⊙ λ_{n+1} + Φ'ᵀ((1 − m) ⊙ λ_{n+1})."""
    xp, events = problem.xp, problem.events

    def step(t, h, y, lam, params_bar, outputs):
        frozen = events.frozen(xp, record, t, _direction(problem), lam)
        zero = xp.zeros_like(lam)
        lam_n, params_bar, (start, end) = adjoint(t, h, y, xp.where(frozen, zero, lam), params_bar, outputs)
        if start is not None:
            end = xp.where(frozen, start, end)
        return lam_n + xp.where(frozen, lam, zero), params_bar, (start, end)

    return step


class _ModeSteps:
    """A recording mode's backward steps for one walk (:class:`symadj._walk.BackwardSteps`):
    its step adjoint, taking the stage source the policy gives, reporting to the backward
    meter, holding rows frozen by per-row events, and checked by the walk checks."""

    def __init__(self, mode: _RecordingMode, backend: Backend, problem: Problem, field: Field, params: Sequence[Any],
                 record: Any, checks: WalkChecks, stored: tuple[int, ...]) -> None:
        self.mode, self.backend, self.problem, self.field, self.params = mode, backend, problem, field, params
        self.record, self.checks, self.stored = record, checks, stored
        self.frozen_rows = problem.events is not None and problem.events.per_row

    def taking(self, source: StageSource) -> BackwardStep:
        adjoint = self.mode.step_adjoint(self.backend, self.problem, self.field, self.params, source)
        if self.frozen_rows:
            adjoint = _frozen_rows_step(self.problem, self.record, adjoint)
        return self.checks.steps(_reporting_steps(self.backend, self.problem, adjoint))

    def advance(self, t: Any, h: Any, y: Any) -> Any:
        problem = self.problem
        xp = problem.xp
        y_new = rk_advance(xp, self.field, problem.tableau, t, h, y, nudge=problem.stage_nudge(y.dtype))
        if not self.frozen_rows:
            return y_new
        return xp.where(problem.events.frozen(xp, self.record, t, _direction(problem), y), y, y_new)


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


_GRADIENT_MODES: dict[str, type[GradientMode]] = {
    mode.name: mode for mode in (Symplectic, Checkpoint, Backprop, Adjoint)
}


def as_gradient_mode(mode: str | GradientMode) -> GradientMode:
    """Turn a name (``"symplectic"``, ``"checkpoint"``, ``"backprop"``, ``"adjoint"``) into
    its :class:`GradientMode`; instances pass through.

    Args:
        mode: a :class:`GradientMode` or its name.

    Returns:
        The gradient mode object.

    Raises:
        UnknownNameError: an unknown name, listing the known ones.

    Examples:
        >>> import symadj
        >>> type(symadj.as_gradient_mode("checkpoint")).__name__
        'Checkpoint'
    """
    if isinstance(mode, GradientMode):
        return mode
    try:
        return _GRADIENT_MODES[mode]()
    except (KeyError, TypeError):
        raise UnknownNameError("gradient", mode, _GRADIENT_MODES) from None


def with_checkpoints(mode: GradientMode, checkpoints: str | CheckpointPolicy | None, given_as_object: bool
                     ) -> GradientMode:
    """``mode`` with the ``checkpoints=`` policy of :func:`symadj.solve` (``None``: the mode's own)."""
    if checkpoints is None:
        return mode
    if not isinstance(mode, _RecordingMode):
        raise InvalidArgumentError(
            f"checkpoints={checkpoints!r} applies to gradient='symplectic' or 'checkpoint' only, not "
            f"gradient={mode.name!r}, which keeps no checkpoints"
        )
    if given_as_object:
        raise InvalidArgumentError(
            f"checkpoints= was given next to a {type(mode).__name__} object: set it on the object instead, "
            f"e.g. symadj.{type(mode).__name__}(checkpoints={checkpoints!r})"
        )
    return type(mode)(checkpoints=checkpoints)


def backward_interpolant(problem: Problem) -> Interpolant | None:
    """The interpolant the backward pass weighs outputs with: none where no output can lie
    inside a step. With two output times, no events and no ``jump_t``, the only output after
    ``t[0]`` is the final time, which the last step lands on exactly (θ = 1), so the step
    adjoint needs no branch on interpolated outputs: under a compiler that branch copies
    θ̄, the parameters' cotangent, in and out of it at every step (on the 8 × 512 MLP, 6 MiB
    of JAX's 10 MiB of temporary memory)."""
    if problem.n_outputs <= 2 and problem.events is None and not problem.options.jump_t:
        return None
    return problem.interpolant


def continuous_adjoint(backend: Backend, problem: Problem, field: Field, params: Sequence[Any],
                       outputs: Any, outputs_cotangent: Any, mode: Adjoint) -> tuple[Any, list]:
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
    options = problem.options if mode.options is None else _adjoint_options(
        xp, mode.options, math.prod(y_last.shape)).bounded(backend.default_max_steps)
    if problem.options.jump_t:
        # func is as discontinuous backward as forward, whatever adjoint_options say.
        options = replace(options, jump_t=tuple(sorted({*options.jump_t, *problem.options.jump_t})))

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
            _, lam, *params_bar = layout.unflatten(xp, z[-1])
            return cast(lam, state_dtype), [cast(bar, p.dtype) for bar, p in zip(params_bar, params)]

        # Output times moved onto an event time leave segments of length zero.
        lam, params_bar = backend.cond(times[0] == times[1], lambda carry: carry, solve, carry)
        return lam + outputs_cotangent[k - 1], params_bar

    start = (outputs_cotangent[-1], [xp.zeros_like(p) for p in params])
    with phase(problem.progress and problem.progress.backward, backend) as end:
        lam, params_bar = backend.fori_loop(0, problem.n_outputs - 1, segment, start)
        end.after = lam
    return lam, params_bar


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


def _backward_failure(stats: Stats, times: Any, options: SolverOptions, mode: Adjoint) -> Exception:
    """The error of a failed backward segment of :func:`continuous_adjoint`, from run-time values."""
    status = Status(int(stats.status))
    start, end, reached = float(times[0]), float(times[1]), float(stats.t_final)
    where = (f"the backward (adjoint) solve of gradient='adjoint', from t={start:.6g} back to "
             f"t={end:.6g}, stopped at t={reached:.6g}")
    source = "set by adjoint_options" if mode.options is not None else "from options: adjoint_options was not given"
    if status is Status.MAX_STEPS:
        return MaxStepsError(
            f"{where}: max_steps={options.max_steps} step attempts were not enough ({source}); raise it "
            f"with adjoint_options={{'max_steps': {2 * options.max_steps}}} (or symadj.Adjoint(options=...)), "
            f"loosen adjoint_rtol/adjoint_atol, or use gradient='symplectic', which needs no backward solve"
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


def _adjoint_options(xp: Any, options: Any, n_state: int) -> SolverOptions:
    options = dict(options)
    if options.get("norm") == "seminorm":
        size = 2 * n_state

        def seminorm(scaled: Any) -> Any:
            part = magnitude(xp, scaled[:size])
            return xp.sqrt(xp.mean(part * part))

        options["norm"] = seminorm
    return SolverOptions.from_mapping(options)
