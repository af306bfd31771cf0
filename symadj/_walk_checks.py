"""Checks on the backward walk of the exact modes: non-finite cotangents, and steps whose
recomputation does not reproduce the forward pass.

The exact modes assume that func is a function: the backward walk recomputes each
step from its checkpoint and differentiates that recomputation. A stochastic layer in
training mode, a field with hidden state or a non-deterministic kernel breaks the
assumption without any error of its own, and the gradient is silently that of another
solve. Each walked step's recomputed end state is compared with the state the forward
pass reached (the start of the step walked just before it): an O(|y|) comparison a step.

The walk carries what the checks found as two extra cotangent entries (a small record
and the last step's start state), so that every checkpoint policy's walk, eager or
compiled, carries them without knowing of them; the verdict is given once, after the
walk (one host synchronisation, or one run-time check in a compiled program).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

from ._backend import Backend
from ._compat import device_of
from .errors import InvalidArgumentError, NonFiniteError, RecomputationError, RecomputationWarning

#: What ``recomputation=`` of :class:`symadj.Symplectic`/:class:`symadj.Checkpoint` accepts.
RECOMPUTATION_CHOICES = ("raise", "warn", "off")

# A recomputed end state may differ from the forward one by the rounding of a sum taken
# in another order (and of a compiled program fused otherwise): a few ulps of the state's
# scale. A stochastic layer differs by far more, unless the step is tiny.
ROUNDING_ULPS = 256

# The record's entries.
MISMATCHES, MISMATCH_START, MISMATCH_END, WORST = 0, 1, 2, 3
NONFINITE, NONFINITE_START, NONFINITE_END, HAVE_NEXT = 4, 5, 6, 7
RECORD_SIZE = 8

#: A step adjoint that also returns the step's start state and its recomputed end state:
#: ``(t, h, y, λ', θ̄, outputs) -> (λ, θ̄, (y_n, y_{n+1} recomputed))``.
RecomputingStep = Callable[..., tuple[Any, list, tuple[Any, Any]]]


def check_recomputation_choice(value: str) -> str:
    if value not in RECOMPUTATION_CHOICES:
        raise InvalidArgumentError(
            f"recomputation must be one of {', '.join(repr(c) for c in RECOMPUTATION_CHOICES)}, got {value!r}"
        )
    return value


def checked_walk_params(xp: Any, params: Sequence[Any], times: Any, state_like: Any) -> list:
    """``params`` and the two entries the checks carry, for a walk's ``params`` argument (it
    only makes zeros like them)."""
    return [*params, xp.zeros((RECORD_SIZE,), dtype=times.dtype), state_like]


def checked_steps(xp: Any, adjoint: RecomputingStep, compare: bool) -> Callable[..., tuple[Any, list]]:
    """``adjoint`` as the walks call it, keeping the record in its two extra cotangent entries.

    ``compare`` says whether recomputed end states are compared with the forward pass's.
    """

    def step(t, h, y, lam, params_bar, outputs):
        *bars, record, next_start = params_bar
        lam, bars, (start, end) = adjoint(t, h, y, lam, bars, outputs)
        t_end = t + h
        nonfinite = (record[NONFINITE] == 0) & ~xp.all(xp.isfinite(lam))
        record = _updated(xp, record, nonfinite, {NONFINITE: 1.0, NONFINITE_START: t, NONFINITE_END: t_end})
        if compare and start is not None:
            ulps = mismatch_in_ulps(xp, start, end, next_start, t.dtype)
            mismatch = (record[HAVE_NEXT] > 0) & (ulps > ROUNDING_ULPS)
            first = mismatch & (record[MISMATCHES] == 0)
            record = _updated(xp, record, first, {MISMATCH_START: t, MISMATCH_END: t_end})
            record = _updated(xp, record, mismatch, {MISMATCHES: record[MISMATCHES] + 1,
                                                     WORST: xp.maximum(record[WORST], ulps)})
            record = _updated(xp, record, True, {HAVE_NEXT: 1.0})
            # A copy: the walk may hand out views into storage that it overwrites later.
            next_start = xp.asarray(start, copy=True)
        return lam, [*bars, record, next_start]

    return step


def mismatch_in_ulps(xp: Any, start: Any, end: Any, forward_end: Any, dtype: Any) -> Any:
    """How far a recomputed end state is from the forward pass's, in ulps of the step's
    scale (the state's size plus the step's increment)."""
    difference = xp.max(xp.abs(end - forward_end))
    scale = xp.max(xp.abs(forward_end)) + xp.max(xp.abs(end - start))
    info = xp.finfo(difference.dtype)
    return xp.astype(difference / (scale * info.eps + info.smallest_normal), dtype)


def _updated(xp: Any, record: Any, when: Any, entries: dict[int, Any]) -> Any:
    """``record`` with ``entries`` replaced where ``when`` holds (one stack and one select)."""
    def value(index: int) -> Any:
        entry = entries.get(index, record[index])
        return xp.astype(entry, record.dtype) if hasattr(entry, "dtype") else xp.asarray(
            entry, dtype=record.dtype, device=device_of(record))

    replaced = xp.stack([value(i) for i in range(RECORD_SIZE)])
    return replaced if when is True else xp.where(when, replaced, record)


def report_walk(backend: Backend, xp: Any, mode: Any, record: Any, n_steps: Any, incoming: Any, y0_bar: Any,
                params_bar: Sequence[Any]) -> None:
    """After a walk: raise :class:`NonFiniteError` if it made NaN or infinite cotangents from
    finite ones (a cotangent that came in non-finite is the caller's, passed on as backprop
    would); raise or warn, as ``mode.recomputation`` says, if steps were recomputed differently."""
    results_finite = xp.all(xp.isfinite(y0_bar))
    for bar in params_bar:
        results_finite = results_finite & xp.all(xp.isfinite(bar))
    finite_or_callers = ~xp.all(xp.isfinite(incoming)) | ((record[NONFINITE] == 0) & results_finite)
    backend.check(finite_or_callers, lambda record: _nonfinite_error(mode, record), record)
    if mode.recomputation == "raise":
        backend.check(record[MISMATCHES] == 0, lambda record, n: RecomputationError(_mismatch_message(mode, record, n)),
                      record, n_steps)
    elif mode.recomputation == "warn":
        backend.host_callback(_warn_of_mismatch, mode, record, n_steps)


def _warn_of_mismatch(mode: Any, record: Any, n_steps: Any) -> None:
    if float(record[MISMATCHES]) > 0:
        warnings.warn(_mismatch_message(mode, record, n_steps), RecomputationWarning, stacklevel=2)


def _nonfinite_error(mode: Any, record: Any) -> NonFiniteError:
    where = (f"in the step from t={float(record[NONFINITE_START]):.6g} to t={float(record[NONFINITE_END]):.6g} "
             f"(the first the backward walk met, walking from the last step)" if float(record[NONFINITE]) > 0
             else "in the parameters' cotangents")
    return NonFiniteError(
        f"the backward pass of gradient={mode.name!r} made NaN or infinite cotangents {where}, from finite "
        f"cotangents of the outputs and a finite forward solve: func's derivatives overflow or are undefined "
        f"there (sqrt or log at 0, a division by a vanishing value, exp of a large value). Check func's "
        f"derivatives along the solution, or compare with gradient='backprop'"
    )


def _mismatch_message(mode: Any, record: Any, n_steps: Any) -> str:
    cls = type(mode).__name__
    return (
        f"gradient={mode.name!r}: the backward pass recomputed {int(record[MISMATCHES])} of the "
        f"{max(int(n_steps) - 1, 0)} steps it compared differently from the forward pass (the first the "
        f"backward walk met: from t={float(record[MISMATCH_START]):.6g} to t={float(record[MISMATCH_END]):.6g}; "
        f"end states off by up to "
        f"{float(record[WORST]):.3g} ulps): "
        f"func does not give the same value for the same (t, y) — dropout or another stochastic layer in "
        f"training mode, a field with hidden state, or a non-deterministic kernel — so the gradient would be "
        f"that of another solve. Put the model in eval mode (model.eval()), draw its randomness from a seed "
        f"fixed per evaluation, or use gradient='backprop', which differentiates the evaluations the forward "
        f"pass made; symadj.{cls}(recomputation='warn') or 'off' accepts the difference"
    )
