"""A tableau's continuous extension: outputs inside an accepted step.

With a tableau that has a continuous extension, an adaptive or fixed-step solve takes
the steps its controller chooses and evaluates every output time inside an accepted
step from that step's stages:  y(t_n + θ h_n) = y_n + h_n Σ_i b_i(θ) k_i.  The sum is
linear in the stage derivatives, so the backward pass of an output ḡ inside step n adds
h_n b_i(θ) ḡ to the cotangent of stage i and ḡ to λ_n: no extra memory and no extra
evaluations (see ``_output_cotangents.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._array_api import device_of
from ._tableau import Tableau


@dataclass(frozen=True)
class Interpolant:
    """A tableau's continuous extension, b_i(θ) = Σ_k p_ik θ^k, as floats."""

    coefficients: tuple[tuple[float, ...], ...]  # row i: p_i1 .. p_id

    @classmethod
    def of(cls, tab: Tableau) -> Interpolant | None:
        return None if tab.floats.dense is None else cls(tab.floats.dense)

    @functools.cached_property
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
        weights = self.weights(xp, theta, self.stages, y.dtype)
        return y + xp.astype(h, y.dtype) * self.combine(xp, weights, derivatives, y.ndim)

    def combine(self, xp: Any, weights: Any, derivatives: Any, trailing: int) -> Any:
        """Σ_i w_i k_i over :attr:`stages`: ``weights`` has any leading shape, then one entry per
        stage; each w_i gets ``trailing`` unit axes to broadcast against k_i. ``derivatives`` is
        a list indexed by stage, or an array stacked as (*leading, stages, ...) whose stage axis
        holds :attr:`stages` in order (summed along that axis)."""
        leading = weights.shape[:-1]
        if not isinstance(derivatives, (list, tuple)):
            return xp.sum(xp.reshape(weights, (*weights.shape, *(1,) * trailing)) * derivatives, axis=len(leading))
        total = None
        for position, i in enumerate(self.stages):
            term = xp.reshape(weights[..., position], (*leading, *(1,) * trailing)) * derivatives[i]
            total = term if total is None else total + term
        return total


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
