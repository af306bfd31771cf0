"""One backward step of the symplectic adjoint: the tableau's partner scheme on (λ, θ̄).

κ_i = h (B_i e_i λ' + D_i + Σ_{j>i} B_i Â_ij / B_j μ_j),  (μ_i, p_i) = VJP of f at stage i
with cotangent κ_i,  λ_n = λ' + G + Σ μ_i,  θ̄ += Σ p_i, where the outputs ḡ_m
interpolated inside the step give D_i = Σ_m b_i(θ_m) ḡ_m and G = Σ_m ḡ_m (both zero in a
step without them). Stages that receive no cotangent are skipped: a stage only the
interpolant weighs (the FSAL stage) only in steps holding outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ._array_api import device_of
from ._backend import Backend, Field
from ._interpolant import Interpolant, dense_stages
from ._rk_step import stage_nudge, stage_time
from ._tableau import Tableau
from ._walk import StageSource


def adjoint_stages(tab: Tableau, interpolant: Interpolant | None) -> tuple[int, ...]:
    """The stages the symplectic step takes products at: those the partner scheme uses and,
    with interpolated outputs, those the interpolant weighs."""
    return dense_stages(tab) if interpolant is not None else tuple(
        i for i in range(tab.stages) if tab.adjoint.active[i])


def cond_with_ends(backend: Backend, pred: Any, on_true: Callable, on_false: Callable, carry: tuple,
                   ends_like: Any) -> Any:
    """``backend.cond`` for branches that take ``(λ, θ̄)`` and return ``(λ, θ̄, ends)``: the
    carry a staged backend needs has the structure of what they return."""
    return backend.cond(pred, lambda c: on_true(c[:2]), lambda c: on_false(c[:2]), (*carry, ends_like))


class SymplecticStep:
    """``(t_n, h_n, value_n, λ_{n+1}, θ̄, outputs) -> (λ_n, θ̄, (y_n, y_{n+1}))`` for one accepted
    step, its stage states from ``source`` (chosen by the checkpoint policy: recomputed from
    y_n, or stored). ``perturb``: ``options['perturb']``, stage times as the forward pass
    took them. With ``recompute_ends``, the step's end state is also formed from the stage
    evaluations, for the recomputation check (``(None, None)`` where it is not).

    The stages are a loop, not unrolled: a compiler then holds one stage's activations and
    parameter cotangents at a time instead of scheduling all of them at once.
    """

    def __init__(self, backend: Backend, tab: Tableau, field: Field, params: Sequence[Any], source: StageSource,
                 interpolant: Interpolant | None = None, perturb: bool = False, recompute_ends: bool = True) -> None:
        self.backend, self.xp, self.tab, self.field, self.params = backend, backend.namespace(), tab, field, params
        self.source, self.interpolant, self.perturb = source, interpolant, perturb
        self.plain = tuple(i for i in range(tab.stages) if tab.adjoint.active[i])
        self.kept = adjoint_stages(tab, interpolant)
        self.ends_recomputed = recompute_ends and self.plain[0] == 0 and self.kept[0] == 0
        self._coefficients: dict[tuple[Any, ...], tuple[Any, Any, Any]] = {}

    def __call__(self, t: Any, h: Any, value: Any, lam: Any, params_bar: list, outputs: Any) -> tuple:
        lam = lam + outputs.at_end
        nudge = stage_nudge(self.xp, self.perturb, lam.dtype, t.dtype)

        def without_outputs(carry: tuple) -> tuple:
            return self.over(self.plain, t, h, self.stage_states(t, h, value, self.plain, nudge), *carry)

        def with_outputs(carry: tuple) -> tuple:
            lam, params_bar = carry
            states = self.stage_states(t, h, value, self.kept, nudge)
            lam, params_bar, ends = self.over(self.kept, t, h, states, lam, params_bar, outputs.dense)
            return lam + outputs.direct, params_bar, ends

        if self.interpolant is None:
            return without_outputs((lam, params_bar))
        start = self.source.start(value) if self.ends_recomputed else None
        return cond_with_ends(self.backend, outputs.has_dense, with_outputs, without_outputs, (lam, params_bar),
                              (start, start))

    def stage_states(self, t: Any, h: Any, value: Any, stages: tuple[int, ...], nudge: Any) -> Any:
        return self.source.states(self.xp, self.field, self.tab, t, h, value, stages, nudge)

    def coefficients(self, stages: tuple[int, ...], like: Any) -> tuple[Any, Any, Any]:
        """The partner's input weights and couplings, and the weights b_i, in ``like``'s
        dtype and memory, made once: a copy to the device at every step would stall the
        backward walk on it. (A staged backend makes them per trace: an array kept across
        traces would leak.)"""
        xp, adjoint, coeffs = self.xp, self.tab.adjoint, self.tab.floats
        key = (stages, str(like.dtype), str(device_of(like)))
        if key not in self._coefficients or self.backend.staged_loops:
            self._coefficients[key] = tuple(xp.asarray(values, dtype=like.dtype, device=device_of(like)) for values in (
                [adjoint.input_weight[i] for i in stages],
                [[adjoint.coupling[i][j] for j in stages] for i in stages],
                [coeffs.b[i] for i in stages],
            ))
        return self._coefficients[key]

    def over(self, stages: tuple[int, ...], t: Any, h: Any, stage_states: Any, lam: Any, params_bar: list,
             dense: Any = None) -> tuple:
        """The partner step over ``stages``, whose states are stacked in ``stage_states``;
        and the step's end state y_n + h Σ b_i f(Y_i) from the stages' evaluations (every
        stage of nonzero weight is among ``stages``), ``None`` without stage 0."""
        xp, backend, field, params = self.xp, self.backend, self.field, self.params
        nudge = stage_nudge(xp, self.perturb, stage_states.dtype, t.dtype)
        times = xp.stack([stage_time(t, h, self.tab.floats.c[i], nudge) for i in stages])
        input_weights, couplings, weights = self.coefficients(stages, stage_states)
        h_state = xp.astype(h, stage_states.dtype)
        count, ends_recomputed = len(stages), self.ends_recomputed

        def stage(k, carry):
            mus, derivatives, lam_new, params_bar = carry
            p = count - 1 - k
            weighted = input_weights[p] * lam if dense is None else input_weights[p] * lam + dense[p]
            cotangent = h_state * (weighted + xp.tensordot(couplings[p], mus.stack(count), axes=1))

            def evaluate(y, params):
                return field.with_params(params)(times[p], y)

            derivative, mu, stage_bar = backend.vjp(evaluate, stage_states[p], params, cotangent)
            mus = mus.write(p, mu)
            if ends_recomputed:
                derivatives = derivatives.write(p, derivative)
            return mus, derivatives, lam_new + mu, backend.accumulate(params_bar, stage_bar)

        mus = backend.buffer_of(xp.zeros_like(stage_states))
        derivatives = backend.buffer_of(xp.zeros_like(stage_states)) if ends_recomputed else None
        _, derivatives, lam_new, params_bar = backend.fori_loop(0, count, stage, (mus, derivatives, lam, params_bar))
        if not ends_recomputed:
            return lam_new, params_bar, (None, None)
        start = stage_states[0]
        return lam_new, params_bar, (start, start + h_state * xp.tensordot(weights, derivatives.stack(count), axes=1))
