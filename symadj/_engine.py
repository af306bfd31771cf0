"""One explicit Runge–Kutta step for any tableau, in array-API operations only.

Forward stepping, the backward recomputation of stages and the per-step graphs of
the ``checkpoint`` mode all call these functions, so the stage states and times
they produce are bit-for-bit the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ._tableau import Tableau

VectorField = Callable[[Any, Any], Any]


def stage_time(t: Any, h: Any, c: float) -> Any:
    """t + c·h; the same expression wherever a stage time is needed."""
    return t if c == 0.0 else t + c * h


def weighted_sum(terms: Sequence[tuple[float, Any]]) -> Any:
    """Σ coefficient · k over a non-empty list of terms."""
    total = None
    for coefficient, k in terms:
        term = k if coefficient == 1.0 else coefficient * k
        total = term if total is None else total + term
    return total


def combine(y: Any, h: Any, terms: Sequence[tuple[float, Any]]) -> Any:
    """y + h · Σ coefficient · k (just y when there are no terms)."""
    return y + h * weighted_sum(terms) if terms else y


def rk_stages(xp: Any, f: VectorField, tab: Tableau, t: Any, h: Any, y: Any, k0: Any,
              count: int) -> tuple[list[Any], list[Any]]:
    """Stage states Y_0..Y_{count-1} and derivatives k_0..k_{count-2} of a step.

    The derivative of the last requested stage is not evaluated: callers that need it
    (the forward step) evaluate it themselves.
    """
    coeffs = tab.floats
    h_state = xp.astype(h, y.dtype)
    states, derivatives = [y], [k0]
    for i in range(1, count):
        states.append(combine(y, h_state, [(a, derivatives[j]) for j, a in coeffs.a[i]]))
        if i < count - 1:
            derivatives.append(f(stage_time(t, h, coeffs.c[i]), states[i]))
    return states, derivatives


def rk_solution(xp: Any, tab: Tableau, h: Any, y: Any, derivatives: Sequence[Any]) -> Any:
    """y_{n+1} = y_n + h Σ b_i k_i."""
    coeffs = tab.floats
    return combine(y, xp.astype(h, y.dtype),
                   [(b, derivatives[i]) for i, b in enumerate(coeffs.b) if b != 0.0])


def rk_advance(xp: Any, f: VectorField, tab: Tableau, t: Any, h: Any, y: Any, k0: Any) -> Any:
    """y_{n+1} alone, without the FSAL derivative: the map the ``checkpoint`` mode differentiates."""
    states, derivatives = rk_stages(xp, f, tab, t, h, y, k0, tab.stages)
    if tab.fsal:
        return states[-1]
    if tab.stages > 1:
        derivatives.append(f(stage_time(t, h, tab.floats.c[-1]), states[-1]))
    return rk_solution(xp, tab, h, y, derivatives)


def rk_step_with_stages(xp: Any, f: VectorField, tab: Tableau, t: Any, h: Any, y: Any, k0: Any
                        ) -> tuple[Any, Any, list[Any], list[Any]]:
    """One step: y_{n+1}, the FSAL derivative f(t+h, y_{n+1}) (``None`` if not FSAL), every
    stage derivative k_i, and the stage states Y_0..Y_{s-1}."""
    states, derivatives = rk_stages(xp, f, tab, t, h, y, k0, tab.stages)
    if tab.stages > 1:
        derivatives.append(f(stage_time(t, h, tab.floats.c[-1]), states[-1]))
    if tab.fsal:
        # The last stage state is y_{n+1} itself (its row of a equals b), and its
        # derivative, taken at t + 1·h = t + h exactly, is the next step's first.
        return states[-1], derivatives[-1], derivatives, states
    return rk_solution(xp, tab, h, y, derivatives), None, derivatives, states


def rk_advance_evaluations(tab: Tableau) -> int:
    """Evaluations of f in one :func:`rk_advance` (its f(t, y) included)."""
    return 1 + max(tab.stages - 2, 0) + (0 if tab.fsal or tab.stages == 1 else 1)
