"""Output times: where steps must land, and the outputs evaluated inside accepted steps.

With a tableau that has a continuous extension, an adaptive or fixed-step solve takes
the steps its controller chooses and evaluates every output time inside an accepted
step from that step's stages:  y(t_n + θ h_n) = y_n + h_n Σ_i b_i(θ) k_i.  Steps land
only on the final output time, on ``step_t`` and ``jump_t`` times, and (without a
continuous extension, or with ``options["land_on_outputs"]``) on every output time.
An output a step lands on is that step's end state itself (θ = 1).

The interpolant is linear in the stage derivatives, so the backward pass of an output
ḡ inside step n adds h_n b_i(θ) ḡ to the cotangent of stage i and ḡ to λ_n: no extra
memory and no extra evaluations (:func:`collect_output_cotangents`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ._backend import Backend
from ._compat import device_of
from ._tableau import Tableau


@dataclass(frozen=True)
class Interpolant:
    """A tableau's continuous extension, b_i(θ) = Σ_k p_ik θ^k, as floats."""

    coefficients: tuple[tuple[float, ...], ...]  # row i: p_i1 .. p_id

    @classmethod
    def of(cls, tab: Tableau) -> Interpolant | None:
        return None if tab.floats.dense is None else cls(tab.floats.dense)

    @property
    def stages(self) -> tuple[int, ...]:
        """The stages whose weight is not identically zero."""
        return tuple(i for i, row in enumerate(self.coefficients) if any(p != 0.0 for p in row))

    def weights(self, xp: Any, theta: Any, stages: Sequence[int], dtype: Any) -> Any:
        """b_i(θ) for each stage in ``stages`` (last axis), for θ of any shape, in ``dtype``."""
        matrix = self._matrix(xp, tuple(stages), theta)
        theta = xp.expand_dims(theta, axis=-1)
        total = xp.zeros((*theta.shape[:-1], matrix.shape[0]), dtype=theta.dtype, device=device_of(theta))
        for k in reversed(range(matrix.shape[1])):  # Horner: b_i(θ) = θ (p_i1 + θ (p_i2 + ...))
            total = (total + matrix[:, k]) * theta
        return xp.astype(total, dtype)

    def derivative_weights(self, xp: Any, theta: Any, stages: Sequence[int], dtype: Any) -> Any:
        """b_i'(θ) for each stage in ``stages`` (last axis), for θ of any shape, in ``dtype``."""
        matrix = self._matrix(xp, tuple(stages), theta)
        powers = xp.arange(1, matrix.shape[1] + 1, dtype=theta.dtype, device=device_of(theta))
        matrix = matrix * powers  # b_i'(θ) = Σ_k k p_ik θ^(k-1)
        theta = xp.expand_dims(theta, axis=-1)
        total = xp.zeros((*theta.shape[:-1], matrix.shape[0]), dtype=theta.dtype, device=device_of(theta))
        for k in reversed(range(matrix.shape[1])):
            total = total * theta + matrix[:, k]
        return xp.astype(total, dtype)

    def _matrix(self, xp: Any, stages: tuple[int, ...], like: Any) -> Any:
        rows = [self.coefficients[i] for i in stages]
        degree = max(len(row) for row in rows)
        return xp.asarray([[*row, *([0.0] * (degree - len(row)))] for row in rows], dtype=like.dtype,
                          device=device_of(like))

    def evaluate(self, xp: Any, theta: Any, h: Any, y: Any, derivatives: Sequence[Any]) -> Any:
        """y + h Σ_i b_i(θ) k_i, for θ of any shape (the result has θ's shape, then y's)."""
        stages = self.stages
        weights = self.weights(xp, theta, stages, y.dtype)
        shape = (*theta.shape, *(1,) * y.ndim)
        total = None
        for position, i in enumerate(stages):
            term = xp.reshape(weights[..., position], shape) * derivatives[i]
            total = term if total is None else total + term
        return y + xp.astype(h, y.dtype) * total


def dense_stages(tab: Tableau) -> tuple[int, ...]:
    """Stages the backward pass needs when a step holds interpolated outputs: those the
    adjoint step uses, and those the interpolant weighs (an FSAL stage, say)."""
    interpolant = Interpolant.of(tab)
    extra = set(interpolant.stages) if interpolant is not None else set()
    return tuple(i for i in range(tab.stages) if tab.adjoint.active[i] or i in extra)


def interpolates(tab: Tableau, options: Any) -> bool:
    """Whether outputs are interpolated (else every output is landed on)."""
    return tab.dense is not None and not options.land_on_outputs and (
        tab.adaptive or options.step_size is not None)


class Landings(NamedTuple):
    """The times steps must end on, sorted in the direction of integration, and whether
    each is a jump (the derivative is evaluated afresh just past it)."""

    times: Any
    jumps: Any

    @property
    def count(self) -> int:
        return self.times.shape[0]


def landing_times(xp: Any, ts: Any, direction: Any, interpolate: bool, step_t: Sequence[float],
                  jump_t: Sequence[float]) -> Landings:
    """The final output time (or every output time after the first), ``step_t`` and ``jump_t``.

    A landing time that is also a ``jump_t`` time is a jump, whichever list it came from:
    an output time sorted ahead of the jump at the same time would otherwise be landed on
    exactly, and the jump counted as reached with it."""
    outputs = ts[-1:] if interpolate else ts[1:]
    extra = [*step_t, *jump_t]
    if not extra:
        return Landings(outputs, xp.zeros(outputs.shape, dtype=xp.bool))
    given = xp.asarray(extra, dtype=ts.dtype, device=device_of(ts))
    times = xp.concat([outputs, given])
    jumps = at_jump(xp, times, jump_t)
    order = xp.argsort(direction * times, stable=True)
    return Landings(xp.take(times, order), xp.take(jumps, order))


def at_jump(xp: Any, times: Any, jump_t: Sequence[float]) -> Any:
    """Whether each of ``times`` is one of ``jump_t``."""
    if not jump_t:
        return xp.zeros(times.shape, dtype=xp.bool)
    jumps = xp.asarray(list(jump_t), dtype=times.dtype, device=device_of(times))
    return xp.any(xp.reshape(times, (-1, 1)) == xp.reshape(jumps, (1, -1)), axis=1)


def count_reached(xp: Any, times: Any, direction: Any, reached: Any) -> Any:
    """How many of ``times`` (sorted in the direction of integration) lie at or before ``reached``."""
    return xp.sum(xp.astype(direction * (times - reached) <= 0, xp.int32))


# -- the backward pass ---------------------------------------------------------------


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
