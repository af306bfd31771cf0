"""Gradient strategies, written once against the backend contract: the :class:`GradientMode`
interface, :class:`Backprop`, and the modes that keep the accepted steps and walk them
backward (:class:`Symplectic` with its step, :class:`CheckpointedBackprop`). The continuous
adjoint lives in ``_continuous_adjoint``; names become modes in ``_gradient_names``.

Every mode treats step sizes as constants: the gradient is that of the discrete
solve with the accepted step sizes fixed (see docs).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import InitVar, dataclass, fields
from typing import Any

from ._backend import Backend, Field
from ._checkpoint_policies import Auto, CheckpointPolicy, as_checkpoint_policy
from ._interpolant import Interpolant
from ._loop import Problem, integrate
from ._output_cotangents import OutputsCotangent
from ._progress import phase
from ._rk_step import rk_advance, rk_step_with_stages
from ._solution import SolveOutputs, Stats
from ._symplectic_step import SymplecticStep, adjoint_stages, cond_with_ends
from ._tableau import Tableau
from ._walk import BackwardStep, StageSource, WalkState
from ._walk_checks import RecomputingStep, WalkChecks, check_recomputation_choice
from .errors import InvalidArgumentError


class GradientMode(abc.ABC):
    """How gradients of a solve are computed. Pass an instance or its name to ``gradient=``.

    The modes are :class:`AutoGradient` (``"auto"``, the default), :class:`Symplectic`
    (``"symplectic"``), :class:`CheckpointedBackprop` (``"checkpoint"``), :class:`Backprop`
    (``"backprop"``), :class:`ContinuousAdjoint` (``"adjoint"``) and :class:`Reversible`
    (``"reversible"``, whose forward pass is a scheme of its own); a name is turned into its
    object at once. All
    treat step sizes as constants; the exact modes give the gradient of the discrete solve. A
    mode is a frozen dataclass: equal to another of its kind with the same settings, and hashable.

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
        ...     for mode in ("symplectic", symadj.CheckpointedBackprop()))
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
        return outputs, stats._replace(graph_steps=stats.n_accepted)


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

        def backward(residuals, cotangents):
            trajectory, params = residuals
            return self._walk_back(backend, problem, field.with_params(params), params, trajectory, cotangents)

        return backend.custom_vjp(forward, backward, y0, field.params)

    def _walk_back(self, backend: Backend, problem: Problem, field: Field, params: Sequence[Any], trajectory: Any,
                   cotangents: SolveOutputs) -> tuple[Any, list]:
        """The backward pass: the cotangents of ``y0`` and of ``params`` from the outputs'
        ``cotangents``, the recorded steps walked in reverse as the checkpoint policy says."""
        xp, tab, interpolant = problem.xp, problem.tableau, backward_interpolant(problem)
        checks = WalkChecks(backend, xp, self, trajectory.final)
        events, record = problem.events, trajectory.events
        outputs_cotangent, event_outputs, event_params_bar = cotangents.ys, None, []
        incoming = cotangents.joined(xp)
        if events is not None:
            outputs_cotangent, event_outputs, event_params_bar = events.cotangents(
                backend, xp, events.bound(params), params, record, cotangents, problem.ts,
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
    Equal to :class:`Backprop` up to rounding; the default's (:class:`AutoGradient`) walk.

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
class CheckpointedBackprop(_RecordingMode):
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


