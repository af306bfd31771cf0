"""The reversible gradient mode (McCallum & Foster, arXiv 2410.11648): any explicit tableau made
algebraically reversible, so the backward pass reconstructs each state instead of storing it.

Design. With Ψ_h(t, x) = h Σ b_i k_i the base tableau's increment (``_rk_step.rk_increment``),
a coupling λ ∈ (0, 1] and z_0 = y_0, one step is

    y_{n+1} = λ y_n + (1 − λ) z_n + Ψ_h(t_n, z_n)
    z_{n+1} = z_n − Ψ_{−h}(t_{n+1}, y_{n+1})

and the solution reported is y_n. The forward pass is a loop of its own over the pair
(:class:`_ForwardLoop`), not ``_loop.integrate`` with a wrapped field: the pair is no
Runge–Kutta step of any tableau, and the error estimate is the base pair's on the z half-step
alone. It reuses the loop's parts: the step-size side (``_landing.LandingControl``: the
controller, landing on the final time, ``step_t`` and ``jump_t``; its fresh first derivative
f(t_{n+1}, z_{n+1}) is the next z half-step's first stage, so no FSAL reuse) and the outputs
writer (``_output_writers``, with steps landed on every output time). As in the other modes a
step onto a jump ends an ulp before it, where its z half-step starts (t_n + h_n, the t_{n+1}
above), and the next step starts an ulp after it: each step records its own t_n and h_n.

Outputs are landed on, not interpolated: a continuous extension of the coupled scheme would
have to be derived and tested for its order, and the gradient through it would need the
stage derivatives of every step with an output; landing keeps the backward pass to one
reconstruction per step. The cost is a step per output interval at least (the benchmark's
time-series problem, 200 outputs: 200 steps where the symplectic mode interpolates in 37;
docs/gradient-modes.md).

The forward pass keeps, for the backward pass, the final pair (y_N, z_N) and two scalars a
step (t_n and h_n): no states. Backward, step n is undone from (y_{n+1}, z_{n+1}):
z_n = z_{n+1} + Ψ_{−h}(t_{n+1}, y_{n+1}), then y_n = (y_{n+1} − (1 − λ) z_n − Ψ_h(t_n, z_n)) / λ,
each Ψ evaluated once, with its graph, by ``Backend.vjp`` (the value reconstructs, the same
evaluation's VJP carries the cotangents: the cotangent of each Ψ is known before it is
evaluated, −z̄_{n+1} and then ȳ_{n+1} + the first VJP's). The gradient is that of the discrete
reversible solve, to the rounding of the reconstruction; the reconstructed (y_0, z_0) is then
compared with the true y_0, which catches a func with hidden state and rounding grown through
the steps (``reconstruction=``), and the figure goes to ``Stats.reconstruction``.

Precision. Undoing a step is a step backward in time, which expands the rounding of the pair
where the field contracts (and divides it by λ): a float32 pair loses, at each step, digits
the reconstruction needs, and on the benchmark's time series its gap reaches 4e-4 over 200
steps. For a state below float64 the pair and the scheme's sums are carried in float64 where
the library has it (``_Widened``: func evaluated on the state cast to its dtype, its value cast
back), so that each step is undone to float64 rounding; the outputs and cotangents cross the
custom VJP in the state's dtype.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from ._array_api import device_of
from ._backend import Backend, Field
from ._complex import bytes_of, cast, is_complex, real_dtype
from ._gradients import GradientMode, _reported
from ._landing import ControlState, landing_control
from ._loop import Counts, Problem
from ._output_writers import OutputsState, outputs_writer
from ._progress import phase
from ._rk_step import AcceptedStep, rk_increment, rk_increment_evaluations, rk_step_with_stages
from ._solution import ReconstructionReport, SolveOutputs, Stats, Status
from ._walk_checks import RECOMPUTATION_CHOICES
from .errors import (
    GradientNotSupportedError,
    InvalidArgumentError,
    NonFiniteError,
    ReconstructionError,
    ReconstructionWarning,
)


class _Carry(NamedTuple):
    """The forward loop's carry: the pair (y, z) where the next step starts, f(t, z), and the
    step-size side's, the outputs writer's and the step record's parts."""

    t: Any
    y: Any
    z: Any
    dy: Any  # f(t, z): the next z half-step's first stage derivative
    status: Any
    counts: Counts
    control: ControlState
    outputs: OutputsState | None = None
    times: Any = None  # buffer of t_n
    steps: Any = None  # buffer of h_n


class _Record(NamedTuple):
    """What the backward pass reads: the final pair, the accepted steps' times and sizes, the
    step each output lies at the end of, and y_0 to check the reconstruction against."""

    y0: Any
    y: Any
    z: Any
    times: Any
    steps: Any
    n_steps: Any
    output_steps: Any
    n_outputs: Any


@dataclass(frozen=True, repr=False)
class Reversible(GradientMode):
    """McCallum & Foster's reversible scheme on any explicit tableau: exact gradient, memory O(|y| + N).

    The forward solution is that of the coupled scheme (y, z) above (it differs from the base
    tableau's by the method's error); the backward pass reconstructs each step's state from
    the next instead of storing it, so memory does not grow with the number of steps (two
    scalars a step). Each step costs two base steps forward and two base steps with their
    VJPs backward. Outputs are landed on: each output time ends a step.

    Args:
        coupling: λ ∈ (0, 1]. Backward, each step divides by λ, so rounding errors in the
            reconstruction grow like λ^(−N); λ = 1 decouples z from y and loses the scheme's
            stability. 0.999, the authors' default, keeps both small.
        reconstruction: what to do when the reconstructed y_0 or z_0 is off the true y_0 by
            more than ``reconstruction_tol`` relative to the state's size (func not a function
            of (t, y), or rounding grown through the steps): ``"raise"`` a
            :class:`ReconstructionError` (the default), ``"warn"``
            (:class:`ReconstructionWarning`) or ``"off"``.
        reconstruction_tol: that tolerance; by default √ε of the state's dtype (1.5e-8 in
            float64, 3.5e-4 in float32), about half the digits of the gradient.
        wide_carry: for a state below float64 (float32, complex64, half precision), keep the
            pair (y, z) and the scheme's sums in float64 (complex128) where the library has
            it, func evaluated in the state's dtype: the forward pass then loses no digits
            that the reconstruction needs, and the backward pass undoes each step to float64
            rounding (a contracting field amplifies the rounding of a float32 pair, about
            1e4× over the benchmark's time series). Memory: two float64 states. JAX has
            float64 only with ``jax_enable_x64``.

    Examples:
        >>> import torch, symadj
        >>> y0 = torch.ones(2, dtype=torch.float64, requires_grad=True)
        >>> sol = symadj.solve(lambda t, y: -y, y0, [0.0, 1.0], method="rk4", gradient="reversible",
        ...                    options={"step_size": 0.1})
        >>> sol.ys[-1].sum().backward()
        >>> [round(g, 5) for g in y0.grad.tolist()]
        [0.36788, 0.36788]
    """

    coupling: float = 0.999
    reconstruction: str = "raise"
    reconstruction_tol: float | None = None
    wide_carry: bool = True
    name = "reversible"

    def __post_init__(self) -> None:
        if isinstance(self.coupling, bool) or not isinstance(self.coupling, (int, float)) or \
                not 0.0 < self.coupling <= 1.0:
            raise InvalidArgumentError(
                f"coupling={self.coupling!r}: the reversible scheme's λ must lie in (0, 1]; the default is 0.999")
        if self.reconstruction not in RECOMPUTATION_CHOICES:
            raise InvalidArgumentError(
                f"reconstruction must be one of {', '.join(map(repr, RECOMPUTATION_CHOICES))}, "
                f"got {self.reconstruction!r}")
        tol = self.reconstruction_tol
        if tol is not None and (isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol > 0):
            raise InvalidArgumentError(
                f"reconstruction_tol={tol!r} must be a positive number, or None for √ε of the state's dtype")
        if not isinstance(self.wide_carry, bool):
            raise InvalidArgumentError(f"wide_carry={self.wide_carry!r} must be True or False")

    def solve(self, backend: Backend, problem: Problem, field: Field, y0: Any, times: Any = None
              ) -> tuple[Any, Stats]:
        problem = _checked(problem)
        if not backend.differentiable:
            loop = _ForwardLoop(backend, problem, field, self._carry(problem.xp, y0), y0)
            return _reported(backend, problem, lambda: loop.run(y0)[:2])
        return _reported(backend, problem, lambda: self._solve(backend, problem, field, y0))

    def _tolerance(self, xp: Any, dtype: Any) -> float:
        if self.reconstruction_tol is not None:
            return float(self.reconstruction_tol)
        return float(xp.finfo(real_dtype(xp, dtype)).eps) ** 0.5

    def _carry(self, xp: Any, y0: Any) -> _Carrying:
        wide = _wide_dtype(xp, y0) if self.wide_carry else y0.dtype
        return _Carrying(self.coupling, y0.dtype, wide)

    def _solve(self, backend, problem, field, y0, times=None):
        carrying = self._carry(problem.xp, y0)
        report = None
        if self.reconstruction != "off":
            report = ReconstructionReport(self._tolerance(problem.xp, y0.dtype))

        def forward(y0, params):
            loop = _ForwardLoop(backend, problem, field.with_params(params), carrying, y0)
            outputs, stats, record = loop.run(y0)
            return outputs, stats, (record, params)

        def backward(residuals, cotangents):
            record, params = residuals
            with phase(problem.progress and problem.progress.backward, backend) as end:
                y0_bar, params_bar = _walk_back(backend, problem, carrying.field(problem.xp, field.with_params(params)),
                                                params, self, record, cotangents, report)
                end.steps, end.after = record.n_steps, y0_bar
            return y0_bar, params_bar

        outputs, stats = backend.custom_vjp(forward, backward, y0, field.params)
        # Outside the custom VJP: the report is no array, and the backward pass fills it in.
        return outputs, stats._replace(reconstruction=report)


def _checked(problem: Problem) -> Problem:
    """``problem`` with steps landed on every output time; refuses what the mode does not support yet."""
    if problem.events is not None:
        raise GradientNotSupportedError(
            "gradient='reversible' does not support events (event=): an event time is located on a continuous "
            "extension of the steps and differentiated through it, and the coupled scheme has none (it lands on its "
            "output times instead). Use gradient='symplectic' (the default), 'checkpoint' or 'backprop', or "
            "'adjoint' for an event function returning one value for the whole state")
    if problem.callbacks is not None:
        raise GradientNotSupportedError(
            "func's step callbacks (callback_step, callback_accept_step, callback_reject_step) are not called by "
            "gradient='reversible' yet: use gradient='symplectic' (default), 'checkpoint' or 'backprop', or remove "
            "them from func")
    return replace(problem, options=replace(problem.options, land_on_outputs=True))


class _Carrying(NamedTuple):
    """How the pair is carried: the coupling λ, the state's dtype, and the pair's (wider, or the same)."""

    coupling: float
    dtype: Any
    wide: Any

    def field(self, xp: Any, field: Field) -> Field:
        """``field`` as the scheme evaluates it on the pair."""
        return field if self.wide == self.dtype else _Widened(xp, field, self.dtype, self.wide)


class _Widened(Field):
    """A field evaluated on a wider pair: at the state cast to the state's dtype, its value cast back."""

    def __init__(self, xp: Any, field: Field, dtype: Any, wide: Any) -> None:
        self.xp, self.inner, self.dtype, self.wide, self.params = xp, field, dtype, wide, field.params

    def __call__(self, t: Any, y: Any) -> Any:
        return cast(self.xp, self.inner(t, cast(self.xp, y, self.dtype)), self.wide)

    def with_params(self, params: Any) -> Field:
        return _Widened(self.xp, self.inner.with_params(params), self.dtype, self.wide)


def _wide_dtype(xp: Any, y0: Any) -> Any:
    """float64 (complex128 for a complex state) where the state is narrower and the library
    makes it on the state's device; the state's dtype otherwise."""
    wide = xp.complex128 if is_complex(xp, y0.dtype) else xp.float64
    if y0.dtype == wide or not xp.isdtype(y0.dtype, ("real floating", "complex floating")):
        return y0.dtype
    try:
        with warnings.catch_warnings():  # JAX without jax_enable_x64 makes float32, and warns
            warnings.simplefilter("ignore")
            made = xp.zeros((), dtype=wide, device=device_of(y0))
    except (TypeError, RuntimeError, ValueError):  # a device without float64 (Apple's MPS)
        return y0.dtype
    return wide if made.dtype == wide else y0.dtype


class _ForwardLoop:
    """The coupled scheme's forward loop over (y, z), with the base pair's step-size control."""

    def __init__(self, backend: Backend, problem: Problem, field: Field, carrying: _Carrying, y0: Any) -> None:
        """The loop for a solve from ``y0`` (its dtype and shape; :meth:`run` takes the value)."""
        self.backend, self.xp, self.problem, self.carrying = backend, problem.xp, problem, carrying
        self.field, self.coupling = carrying.field(problem.xp, field), carrying.coupling
        self.tab, ts = problem.tableau, problem.ts
        direction = self.xp.sign(ts[-1] - ts[0])
        self.nudge = problem.stage_nudge(y0.dtype)
        self.writer = outputs_writer(backend, problem, direction, False)
        self.control = landing_control(backend, problem, self.field, cast(self.xp, y0, carrying.wide), direction,
                                       fsal=False, state_dtype=y0.dtype)

    def run(self, y0: Any) -> tuple[SolveOutputs, Stats, _Record]:
        """The outputs (in the state's dtype), the statistics, and what the backward pass reads
        (in the pair's)."""
        backend, problem, ts = self.backend, self.problem, self.problem.ts
        y0 = cast(self.xp, y0, self.carrying.wide)
        t, dy, control, evaluations = self.control.start(self.field, ts[0], y0)
        capacity = problem.options.max_steps
        state = _Carry(t, y0, y0, dy, int(Status.RUNNING), Counts(0, 0, evaluations), control, None,
                       backend.buffer(capacity, t), backend.buffer(capacity, t))
        state = self.writer.start(state)
        state = backend.while_loop(self.running, self.attempt, state, max_iterations=capacity)
        outputs = SolveOutputs(cast(self.xp, self.writer.finish(state.outputs, y0), self.carrying.dtype))
        n = problem.n_outputs
        record = _Record(y0, state.y, state.z, state.times, state.steps, state.counts.n_accepted,
                         state.outputs.steps.stack(n), state.outputs.next_output)
        return outputs, self.stats(state, y0), record

    def running(self, state: _Carry) -> Any:
        return (state.outputs.next_output < self.problem.n_outputs) & (state.status == int(Status.RUNNING))

    def attempt(self, state: _Carry) -> _Carry:
        xp, backend, control, tab = self.xp, self.backend, self.control, self.tab
        h, clip = control.clip(state.control, state.t)
        # The z half-step is the base step, whose embedded pair decides the step size.
        z_base, _, derivatives, _ = rk_step_with_stages(xp, self.field, tab, state.t, h, state.z, state.dy,
                                                        self.nudge)
        finite = xp.all(xp.isfinite(z_base))
        decision = control.decide(state.control, h, state.z, z_base, derivatives, finite)
        counts = state.counts
        state = state._replace(counts=counts._replace(n_fevals=counts.n_fevals + tab.stages - 1))

        def accepted(state: _Carry) -> _Carry:
            t_end = state.t + h
            lam = self.coupling
            y_new = lam * state.y + (1 - lam) * state.z + rk_increment(xp, self.field, tab, state.t, h, state.z,
                                                                       derivatives=derivatives)
            z_new = state.z - rk_increment(xp, self.field, tab, t_end, -h, y_new, nudge=self.nudge)
            index = state.counts.n_accepted
            step = AcceptedStep(index, state.t, h, state.y, y_new, [], [], t_end, control.reached(clip, t_end))
            state = self.writer.accepted(state, step)
            if self.problem.progress is not None:
                self.problem.progress.forward.step(backend, xp, state.t, t_end, index + 1)
            t, dy, fresh, next_control = control.accepted(state.control, clip, decision, t_end, z_new, None)
            counts = state.counts
            return state._replace(
                t=t, y=y_new, z=z_new, dy=dy, control=next_control,
                times=state.times.write(index, state.t), steps=state.steps.write(index, h),
                counts=counts._replace(n_accepted=counts.n_accepted + 1, n_fevals=counts.n_fevals + fresh
                                       + rk_increment_evaluations(tab)))

        def rejected(state: _Carry) -> _Carry:
            next_control, status = control.rejected(state.control, state.t, decision, finite, state.status)
            return state._replace(control=next_control, status=status,
                                  counts=state.counts._replace(n_rejected=state.counts.n_rejected + 1))

        state = backend.cond(decision.accept, accepted, rejected, state)
        exhausted = (state.counts.n_accepted + state.counts.n_rejected >= self.problem.options.max_steps) & \
            self.running(state)
        return state._replace(status=backend.select(exhausted, int(Status.MAX_STEPS), state.status))

    def stats(self, state: _Carry, y0: Any) -> Stats:
        """The solve's statistics; what it holds for the backward pass is the final pair and two
        scalars a step."""
        xp, counts = self.xp, state.counts
        finished = state.outputs.next_output == self.problem.n_outputs
        held = 2 * bytes_of(xp, y0) + 2 * counts.n_accepted * bytes_of(xp, state.t)
        return Stats(
            n_attempts=counts.n_accepted + counts.n_rejected, n_accepted=counts.n_accepted,
            n_rejected=counts.n_rejected, n_fevals=counts.n_fevals,
            status=self.backend.select(finished, int(Status.SUCCESS), state.status),
            t_final=state.t, n_outputs=state.outputs.next_output, checkpoint_bytes=held)


class _BackCarry(NamedTuple):
    """The backward walk's carry: the pair at the end of the step to undo, its cotangents, the
    parameters' cotangent, and the index of the next output whose cotangent is still to add."""

    y: Any
    z: Any
    y_bar: Any
    z_bar: Any
    params_bar: list
    output: Any


def _walk_back(backend: Backend, problem: Problem, field: Field, params: Sequence[Any], mode: Reversible,
               record: _Record, cotangents: SolveOutputs, report: ReconstructionReport | None) -> tuple[Any, list]:
    """The cotangents of ``y0`` and ``params``: every step undone, last first, with its VJPs;
    the reconstructed y_0 and z_0 then checked as ``mode`` says, the figure given to ``report``."""
    xp, tab, dtype = problem.xp, problem.tableau, cotangents.ys.dtype
    nudge = problem.stage_nudge(dtype)
    g, n_steps, lam = cast(xp, cotangents.ys, record.y.dtype), record.n_steps, mode.coupling

    def undo(i: Any, carry: _BackCarry) -> _BackCarry:
        m = n_steps - 1 - i
        lands = (carry.output >= 1) & (record.output_steps[carry.output] == m)
        y_bar = carry.y_bar + xp.where(lands, g[carry.output], xp.zeros_like(carry.y_bar))
        t, h = record.times.read(m), record.steps.read(m)
        t_end = t + h
        if problem.progress is not None:
            problem.progress.backward.step(backend, xp, t_end, t)

        def back_half(y, params):
            return rk_increment(xp, field.with_params(params), tab, t_end, -h, y, nudge=nudge)

        def forth_half(z, params):
            return rk_increment(xp, field.with_params(params), tab, t, h, z, nudge=nudge)

        b, y_from_b, params_b = backend.vjp(back_half, carry.y, params, -carry.z_bar)
        y_bar = y_bar + y_from_b
        z = carry.z + b
        a, z_from_a, params_a = backend.vjp(forth_half, z, params, y_bar)
        y = (carry.y - (1 - lam) * z - a) / lam
        params_bar = backend.accumulate(backend.accumulate(carry.params_bar, params_b), params_a)
        return _BackCarry(y, z, lam * y_bar, carry.z_bar + (1 - lam) * y_bar + z_from_a, params_bar,
                          carry.output - backend.select(lands, 1, 0))

    zeros = xp.zeros_like(record.y)
    start = _BackCarry(record.y, record.z, zeros, zeros, [xp.zeros_like(p) for p in params],
                       xp.asarray(record.n_outputs - 1))
    walked = backend.fori_loop(0, n_steps, undo, start)
    _check_finite(backend, xp, g, walked)
    if report is not None:
        _check_reconstruction(backend, xp, mode, record, walked, report)
    return cast(xp, walked.y_bar + walked.z_bar + g[0], dtype), walked.params_bar


def _check_reconstruction(backend: Backend, xp: Any, mode: Reversible, record: _Record, walked: _BackCarry,
                          report: ReconstructionReport) -> None:
    """Give ``report`` how far the reconstructed y_0 or z_0 is off the true y_0, relative to the
    larger of |y_0| and |y_N|; raise or warn, as ``mode`` says, past its tolerance (one host
    callback, and one run-time check that calls the host only when it fails)."""
    real, tol = real_dtype(xp, record.y0.dtype), report.tolerance
    scale = xp.maximum(_largest(xp, record.y0), _largest(xp, record.y)) + xp.finfo(real).smallest_normal
    gap = xp.maximum(_largest(xp, walked.y - record.y0), _largest(xp, walked.z - record.y0)) / scale
    steps = xp.astype(xp.asarray(record.n_steps), real)
    backend.host_callback(report.add, gap)
    narrow = str(record.y.dtype) if xp.finfo(real).bits < 64 else None
    if mode.reconstruction == "raise":
        backend.check(gap <= tol, lambda gap, steps: ReconstructionError(_message(mode, gap, steps, tol, narrow)),
                      gap, steps)
    else:
        backend.host_callback(lambda gap, steps: _warn(mode, gap, steps, tol, narrow), gap, steps)


def _check_finite(backend: Backend, xp: Any, incoming: Any, walked: _BackCarry) -> None:
    """Raise :class:`NonFiniteError` where the walk made NaN or infinite cotangents from finite
    ``incoming`` ones (a cotangent that came in non-finite is the caller's, passed on)."""
    finite = xp.all(xp.isfinite(walked.y_bar)) & xp.all(xp.isfinite(walked.z_bar))
    for bar in walked.params_bar:
        finite = finite & xp.all(xp.isfinite(bar))
    backend.check(~xp.all(xp.isfinite(incoming)) | finite, lambda: NonFiniteError(
        "the backward pass of gradient='reversible' made NaN or infinite cotangents from finite cotangents of "
        "the outputs and a finite forward solve: func's derivatives overflow or are undefined along the solution "
        "(sqrt or log at 0, a division by a vanishing value, exp of a large value). Check func's derivatives "
        "there, or compare with gradient='backprop'"))


def _largest(xp: Any, x: Any) -> Any:
    return xp.max(xp.abs(x))


def _warn(mode: Reversible, gap: Any, steps: Any, tol: float, narrow: str | None) -> None:
    if not float(gap) <= tol:
        warnings.warn(_message(mode, gap, steps, tol, narrow), ReconstructionWarning, stacklevel=2)


def _message(mode: Reversible, gap: Any, steps: Any, tol: float, narrow: str | None) -> str:
    """The check's message; ``narrow``: the pair's dtype where it was carried below float64."""
    if narrow is None:
        carried = ""
    elif mode.wide_carry:
        carried = (f". The pair was carried in {narrow}, for want of float64 here: with JAX, "
                   f"jax.config.update('jax_enable_x64', True) lets it carry the pair in float64 (the state stays "
                   f"{narrow})")
    else:
        carried = f". The pair was carried in {narrow}: symadj.Reversible(wide_carry=True) carries it in float64"
    return (
        f"gradient='reversible': the backward pass reconstructed the initial state {float(gap):.3g} off the true "
        f"one, relative to the state's size, over {int(steps)} steps (tolerance {tol:.3g}): either func does not "
        f"give the same value for the same (t, y) (a stochastic layer in training mode, hidden state, a "
        f"non-deterministic kernel), or rounding errors grew through the steps (undoing a step is a step backward "
        f"in time, which expands them where the field contracts; coupling={mode.coupling} divides them by λ at "
        f"each step). Put the model in eval mode, raise the coupling towards 1 (0.999 is the default), solve in "
        f"float64, or use gradient='symplectic', which stores the states; symadj.Reversible(reconstruction='warn') "
        f"or 'off', or a larger reconstruction_tol, accepts the gap{carried}"
    )
