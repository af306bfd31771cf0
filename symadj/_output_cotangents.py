"""The outputs' cotangent in the backward walks: what the outputs inside each accepted
step send to its stages and to λ (see ``_interpolant.py`` for the sum they come from).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from ._array_api import device_of
from ._backend import Backend
from ._interpolant import Interpolant


class OutputCotangents(NamedTuple):
    """What the outputs of one step send backward: ``at_end`` is added to λ_{n+1};
    ``has_dense`` says whether interpolated outputs lie inside the step, whose cotangents
    ḡ_m give ``dense[p] = Σ_m b_i(θ_m) ḡ_m`` for stage i, the p-th of the stages the
    gradient mode asked for, and ``direct = Σ_m ḡ_m`` (added to λ_n)."""

    at_end: Any
    has_dense: Any
    dense: Any
    direct: Any


def collect_output_cotangents(backend: Backend, xp: Any, trajectory: Any, outputs_cotangent: Any, n: Any,
                              k: Any, interpolant: Interpolant | None, stages: Sequence[int]
                              ) -> tuple[OutputCotangents, Any]:
    """The cotangents of the outputs inside step ``n`` (outputs ``k``, ``k − 1``, ... down to
    output 1), and the index of the first output before the step."""
    if backend.staged_loops:
        return _collect_one_by_one(backend, xp, trajectory, outputs_cotangent, n, k, interpolant, stages)
    return _collect_together(backend, xp, trajectory, outputs_cotangent, int(n), int(k), interpolant, stages)


def _collect_together(backend: Backend, xp: Any, trajectory: Any, outputs_cotangent: Any, n: int, k: int,
                      interpolant: Interpolant | None, stages: Sequence[int]) -> tuple[OutputCotangents, int]:
    """:func:`collect_output_cotangents` for eager backends: the step's outputs found first,
    then their cotangents combined at once."""
    first = k
    while first >= 1 and int(trajectory.output_steps.read(first)) == n:
        first -= 1
    zero = xp.zeros_like(outputs_cotangent[0])
    if first == k:
        return OutputCotangents(zero, False, None, None), k
    g = outputs_cotangent[first + 1:k + 1, ...]
    theta = xp.stack([trajectory.output_thetas.read(j) for j in range(first + 1, k + 1)])
    end = xp.reshape(theta == 1, (-1, *(1,) * zero.ndim))
    at_end = xp.sum(xp.where(end, g, xp.zeros_like(g)), axis=0)
    if interpolant is None or bool(xp.all(theta == 1)):
        return OutputCotangents(at_end, False, None, None), first
    interior = xp.where(end, xp.zeros_like(g), g)
    weights = interpolant.weights(xp, theta, stages, g.dtype)  # (outputs, stages)
    dense = xp.tensordot(xp.permute_dims(weights, (1, 0)), interior, axes=1)
    return OutputCotangents(at_end, True, dense, xp.sum(interior, axis=0)), first


def _collect_one_by_one(backend: Backend, xp: Any, trajectory: Any, outputs_cotangent: Any, n: Any, k: Any,
                        interpolant: Interpolant | None, stages: Sequence[int]) -> tuple[OutputCotangents, Any]:
    """:func:`collect_output_cotangents` for staged backends, in a loop over the outputs."""
    zero = xp.zeros_like(outputs_cotangent[0])
    dense = xp.zeros((len(stages), *zero.shape), dtype=zero.dtype, device=device_of(zero)) \
        if interpolant is not None else zero

    def inside(carry: tuple) -> Any:
        k = carry[0]
        return (k >= 1) & (trajectory.output_steps.read(backend.select(k >= 1, k, 1)) == n)

    def take(carry: tuple) -> tuple:
        k, at_end, has_dense, dense, direct = carry
        g = outputs_cotangent[k]
        theta = trajectory.output_thetas.read(k)
        end = theta == 1
        at_end = at_end + xp.where(end, g, xp.zeros_like(g))
        if interpolant is not None:
            interior = xp.where(end, xp.zeros_like(g), g)
            weights = interpolant.weights(xp, theta, stages, g.dtype)
            dense = dense + xp.reshape(weights, (-1,) + (1,) * g.ndim) * interior
            direct = direct + interior
            has_dense = has_dense | ~end
        return k - 1, at_end, has_dense, dense, direct

    no = xp.asarray(False)
    k, at_end, has_dense, dense, direct = backend.while_loop(
        inside, take, (k, zero, no, dense, zero), max_iterations=2**31 - 1)
    return OutputCotangents(at_end, has_dense, dense, direct), k


class OutputsCotangent:
    """The cotangent of a solve's outputs, handed out step by step to a backward walk."""

    def __init__(self, backend: Backend, xp: Any, trajectory: Any, cotangent: Any, interpolant: Interpolant | None,
                 stages: Sequence[int], events: Any = None) -> None:
        self.backend, self.xp, self.trajectory, self.cotangent = backend, xp, trajectory, cotangent
        self.interpolant, self.stages, self.events = interpolant, tuple(stages), events

    @property
    def first(self) -> Any:
        """The cotangent of the output at ``t[0]``, which is y0 itself."""
        return self.cotangent[0]

    @property
    def last_index(self) -> Any:
        """The last output reached, where a walk from the last step starts."""
        return self.trajectory.n_outputs - 1

    def of_step(self, n: Any, k: Any) -> tuple[OutputCotangents, Any]:
        """The cotangents of the outputs in step ``n``, the latest of them output ``k``; and
        the index of the latest output before the step."""
        in_step, k = collect_output_cotangents(self.backend, self.xp, self.trajectory, self.cotangent, n, k,
                                               self.interpolant if self.stages else None, self.stages)
        if self.events is not None:
            in_step = self._with_events(in_step, n)
        return in_step, k

    def _with_events(self, in_step: OutputCotangents, n: Any) -> OutputCotangents:
        """``in_step`` and the event states inside step ``n``, each an interpolated output
        (one θ per row for per-row events)."""
        backend, xp, events = self.backend, self.xp, self.events
        inside = events.fired & (events.step == n)
        if not backend.staged_loops and not bool(xp.any(inside)):
            return in_step
        bar = events.cotangent
        rows = xp.reshape(inside, (*inside.shape, *(1,) * (bar.ndim - inside.ndim)))
        bar = xp.where(rows, bar, xp.zeros_like(bar))
        weights = self.interpolant.weights(xp, events.theta, self.stages, bar.dtype)  # (*rows, stages)
        dense = xp.stack([xp.reshape(weights[..., p], rows.shape) * bar for p in range(len(self.stages))])
        if in_step.dense is not None:
            dense, bar = dense + in_step.dense, bar + in_step.direct
        has_dense = True if not backend.staged_loops else in_step.has_dense | xp.any(inside)
        return OutputCotangents(in_step.at_end, has_dense, dense, bar)
