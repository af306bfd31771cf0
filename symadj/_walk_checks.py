"""Checks on the backward walk of the exact modes: non-finite cotangents, and steps whose
recomputation does not reproduce the forward pass.

The exact modes assume that func is a function: the backward walk recomputes each
step from its checkpoint and differentiates that recomputation. A stochastic layer in
training mode, a field with hidden state or a non-deterministic kernel breaks the
assumption without any error of its own, and the gradient is silently that of another
solve. Each walked step's recomputed end state is compared with the state the forward
pass reached: the start of the step walked just before it, and for the first step walked
(the last step taken, the only one of a one-step solve) the forward pass's final state,
kept with the trajectory. A few passes over the state a step, judged once after the walk
(one host synchronisation, or one run-time check in a compiled program).

An eager backend keeps each step's figures in lists (a handful of operations a step); a
staged backend carries them through the walk's loop in the walk state's ``checks``
(:class:`symadj._walk.WalkState`), which every checkpoint policy's walk passes along without
looking inside.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

from ._array_api import device_of
from ._backend import Backend
from ._walk import BackwardStep, WalkState
from .errors import InvalidArgumentError, NonFiniteError, RecomputationError, RecomputationWarning

#: What ``recomputation=`` of :class:`symadj.Symplectic`/:class:`symadj.CheckpointedBackprop` accepts.
RECOMPUTATION_CHOICES = ("raise", "warn", "off")

# A recomputed end state may differ from the forward one by the rounding of a sum taken
# in another order (and of a compiled program fused otherwise): a few ulps of the step's
# scale. A stochastic layer differs by far more, unless the step is tiny.
ROUNDING_ULPS = 256

#: A step adjoint that also returns the step's start state and its recomputed end state:
#: ``(t, h, y, λ', θ̄, outputs) -> (λ, θ̄, (y_n, y_{n+1} recomputed))``, ``(None, None)``
#: where it recomputes no end state.
RecomputingStep = Callable[..., tuple[Any, list, tuple[Any, Any]]]


def check_recomputation_choice(value: str) -> str:
    if value not in RECOMPUTATION_CHOICES:
        raise InvalidArgumentError(
            f"recomputation must be one of {', '.join(repr(c) for c in RECOMPUTATION_CHOICES)}, got {value!r}"
        )
    return value


class WalkChecks:
    """The checks of one backward walk: :meth:`start` for the walk state's ``checks``,
    :meth:`steps` around its step adjoint, :meth:`report` after it."""

    def __init__(self, backend: Backend, xp: Any, mode: Any, final: Any) -> None:
        """``final``: the state the forward pass's last accepted step reached, which the
        first walked step's recomputation must reproduce."""
        self.backend, self.xp, self.mode = backend, xp, mode
        self.compare = mode.recomputation != "off"
        self.carried = backend.staged_loops
        self.times: list[Any] = []
        self.sizes: list[Any] = []
        self.finite: list[Any] = []
        self.gaps: list[Any] = []
        self.scales: list[Any] = []
        self.final = final
        self.next_start: Any = final

    def start(self, times: Any) -> Any:
        """The walk state's ``checks`` at the start of the walk: the carried figures on a
        staged backend (in the dtype of ``times``), nothing on an eager one."""
        if not self.carried:
            return ()
        zero = self.xp.zeros((), dtype=times.dtype)
        return _Running(_Figures(*(zero for _ in _Figures._fields)), self.final)

    def steps(self, adjoint: RecomputingStep) -> BackwardStep:
        """``adjoint`` as the walks call it, its figures kept."""
        return self._carrying(adjoint) if self.carried else self._listing(adjoint)

    def _listing(self, adjoint: RecomputingStep) -> BackwardStep:
        xp = self.xp

        def step(t, h, y, walk, outputs):
            lam, params_bar, (start, end) = adjoint(t, h, y, walk.lam, walk.params_bar, outputs)
            self.times.append(t)
            self.sizes.append(h)
            self.finite.append(xp.all(xp.isfinite(lam)))
            if self.compare and start is not None:
                gap, scale = _gap_and_scale(xp, start, end, self.next_start)
                self.gaps.append(gap)
                self.scales.append(scale)
                # A copy: the walk may hand out views into storage that it overwrites later.
                self.next_start = xp.asarray(start, copy=True)
            return walk._replace(lam=lam, params_bar=params_bar)

        return step

    def _carrying(self, adjoint: RecomputingStep) -> BackwardStep:
        xp, compare, final = self.xp, self.compare, self.final

        def step(t, h, y, walk, outputs):
            figures, next_start = walk.checks
            lam, params_bar, (start, end) = adjoint(t, h, y, walk.lam, walk.params_bar, outputs)
            figures = figures.walked_one(xp, t, h, ~xp.all(xp.isfinite(lam)))
            if compare and start is not None:
                # The walk starts its cotangents at zero: the first step walked takes the final state here.
                forward_end = xp.where(figures.walked == 1, final, next_start)
                ulps = xp.astype(_ulps(xp, *_gap_and_scale(xp, start, end, forward_end)), t.dtype)
                figures = figures.compared_one(xp, t, h, ulps)
                next_start = start
            return WalkState(lam, params_bar, _Running(figures, next_start))

        return step

    def report(self, walked: WalkState, incoming: Any) -> None:
        """Raise :class:`NonFiniteError` if the walk made NaN or infinite cotangents from
        finite ones ``incoming`` (a cotangent that came in non-finite is the caller's, passed
        on as backprop would); raise or warn, as the mode says, if steps were recomputed
        differently."""
        xp, backend, mode = self.xp, self.backend, self.mode
        figures = walked.checks.figures if self.carried else self._summary(incoming)
        results_finite = xp.all(xp.isfinite(walked.lam))
        for bar in walked.params_bar:
            results_finite = results_finite & xp.all(xp.isfinite(bar))
        ok = ~xp.all(xp.isfinite(incoming)) | ((figures.nonfinite == 0) & results_finite)
        backend.check(ok, lambda *values: _nonfinite_error(mode, _Figures(*values)), *figures)
        if mode.recomputation == "raise":
            backend.check(figures.mismatches == 0,
                          lambda *values: RecomputationError(_mismatch_message(mode, _Figures(*values))),
                          *figures)
        elif mode.recomputation == "warn":
            backend.host_callback(lambda *values: _warn_of_mismatch(mode, _Figures(*values)), *figures)

    def _summary(self, like: Any) -> _Figures:
        """The listed figures in the form a staged walk carries (a few operations for the whole walk)."""
        xp = self.xp
        if not self.times:
            zero = xp.zeros((), dtype=xp.float64, device=device_of(like))
            return _Figures(*(zero for _ in _Figures._fields))
        times, sizes = xp.stack(self.times), xp.stack(self.sizes)
        bad = ~xp.stack(self.finite)
        first_bad = xp.argmax(xp.astype(bad, xp.int32))
        nonfinite = xp.astype(xp.sum(xp.astype(bad, xp.int32)), times.dtype)
        walked = xp.asarray(len(self.times), dtype=times.dtype, device=device_of(times))
        if not self.gaps:
            zero = xp.zeros_like(nonfinite)
            return _Figures(nonfinite, times[first_bad], sizes[first_bad], walked, zero, zero, zero, zero)
        ulps = xp.astype(_ulps(xp, xp.stack(self.gaps), xp.stack(self.scales)), times.dtype)
        mismatch = ulps > ROUNDING_ULPS
        first = xp.argmax(xp.astype(mismatch, xp.int32))
        return _Figures(nonfinite, times[first_bad], sizes[first_bad], walked,
                        xp.astype(xp.sum(xp.astype(mismatch, xp.int32)), times.dtype), times[first], sizes[first],
                        xp.max(xp.where(mismatch, ulps, xp.zeros_like(ulps))))


class _Figures(NamedTuple):
    """The figures of a walk: non-finite steps and the first of them (its t and h), steps
    walked, recomputation mismatches, the first of them and the worst in ulps."""

    nonfinite: Any
    nonfinite_t: Any
    nonfinite_h: Any
    walked: Any
    mismatches: Any
    mismatch_t: Any
    mismatch_h: Any
    worst: Any

    def walked_one(self, xp: Any, t: Any, h: Any, bad: Any) -> _Figures:
        """These figures and the step from ``t`` of size ``h``, ``bad`` where its cotangent is not finite."""
        first_bad = bad & (self.nonfinite == 0)
        return self._replace(nonfinite=self.nonfinite + xp.astype(bad, t.dtype),
                             nonfinite_t=xp.where(first_bad, t, self.nonfinite_t),
                             nonfinite_h=xp.where(first_bad, h, self.nonfinite_h),
                             walked=self.walked + 1)

    def compared_one(self, xp: Any, t: Any, h: Any, ulps: Any) -> _Figures:
        """These figures and the comparison of the step from ``t`` of size ``h``, whose
        recomputed end state is ``ulps`` off the forward one."""
        mismatch = ulps > ROUNDING_ULPS
        first = mismatch & (self.mismatches == 0)
        return self._replace(mismatches=self.mismatches + xp.astype(mismatch, t.dtype),
                             mismatch_t=xp.where(first, t, self.mismatch_t),
                             mismatch_h=xp.where(first, h, self.mismatch_h),
                             worst=xp.where(mismatch & (ulps > self.worst), ulps, self.worst))


class _Running(NamedTuple):
    """What a staged walk carries for its checks: the figures so far, and the start state of
    the step walked last (the end state the next step walked must recompute)."""

    figures: _Figures
    next_start: Any


def _gap_and_scale(xp: Any, start: Any, end: Any, forward_end: Any) -> tuple[Any, Any]:
    """max |recomputed end − forward end|, and the step's scale: the state's size plus its increment."""
    return _largest(xp, end - forward_end), _largest(xp, forward_end) + _largest(xp, end - start)


def _largest(xp: Any, x: Any) -> Any:
    """max |x|, one reduction where the namespace has a vector norm."""
    return xp.linalg.vector_norm(x, ord=float("inf")) if hasattr(xp, "linalg") else xp.max(xp.abs(x))


def _ulps(xp: Any, gap: Any, scale: Any) -> Any:
    info = xp.finfo(gap.dtype)
    return gap / (scale * info.eps + info.smallest_normal)


def _warn_of_mismatch(mode: Any, figures: _Figures) -> None:
    if float(figures.mismatches) > 0:
        warnings.warn(_mismatch_message(mode, figures), RecomputationWarning, stacklevel=2)


def _interval(t: Any, h: Any) -> str:
    start, size = float(t), float(h)
    return f"from t={start:.6g} to t={start + size:.6g}"


def _nonfinite_error(mode: Any, figures: _Figures) -> NonFiniteError:
    where = (f"in the step {_interval(figures.nonfinite_t, figures.nonfinite_h)} (the first the backward walk "
             f"met, walking from the last step)" if float(figures.nonfinite) > 0 else "in the parameters' cotangents")
    return NonFiniteError(
        f"the backward pass of gradient={mode.name!r} made NaN or infinite cotangents {where}, from finite "
        f"cotangents of the outputs and a finite forward solve: func's derivatives overflow or are undefined "
        f"there (sqrt or log at 0, a division by a vanishing value, exp of a large value). Check func's "
        f"derivatives along the solution, or compare with gradient='backprop'"
    )


def _mismatch_message(mode: Any, figures: _Figures) -> str:
    cls = type(mode).__name__
    return (
        f"gradient={mode.name!r}: the backward pass recomputed {int(figures.mismatches)} of the "
        f"{int(figures.walked)} steps it compared differently from the forward pass (the first the "
        f"backward walk met: {_interval(figures.mismatch_t, figures.mismatch_h)}; end states off by up to "
        f"{float(figures.worst):.3g} ulps): func does not give the same value for the same (t, y) — dropout or "
        f"another stochastic layer in training mode, a field with hidden state, or a non-deterministic kernel — "
        f"so the gradient would be that of another solve. Put the model in eval mode (model.eval()), draw its "
        f"randomness from a seed fixed per evaluation, or use gradient='backprop', which differentiates the "
        f"evaluations the forward pass made; symadj.{cls}(recomputation='warn') or 'off' accepts the difference"
    )
