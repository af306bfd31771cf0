"""One explicit Runge–Kutta step for any tableau, in array-API operations only.

Forward stepping, the backward recomputation of stages and the per-step graphs of
the ``checkpoint`` mode all call these functions, so the stage states and times
they produce are bit-for-bit the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ._complex import real_dtype
from ._tableau import Tableau

VectorField = Callable[[Any, Any], Any]


class AcceptedStep(NamedTuple):
    """A step the integration loop accepted, as its observers see it: step ``index``, from
    ``t`` with size ``h``, from ``y`` to ``y_new``."""

    index: Any
    t: Any
    h: Any
    y: Any
    y_new: Any
    derivatives: list  # k_0..k_{s-1}
    stages: list  # the stage states Y_0..Y_{s-1}
    t_end: Any  # t + h, computed once
    reached: Any  # the time outputs are taken up to: the landing time if the step landed


@dataclass(frozen=True)
class Nudge:
    """Moves a time one ulp of the dtype func receives t in (the state's real dtype, or the
    times' where that is coarser): a float64 ulp would round back onto a float32 time.

    ``jump_t`` moves step ends with it; ``options['perturb']`` moves the stages at c = 0 and
    c = 1 (see :func:`stage_time`).
    """

    xp: Any
    dtype: Any

    @classmethod
    def for_state(cls, xp: Any, state_dtype: Any, time_dtype: Any) -> Nudge:
        """The nudge for func called on a state of ``state_dtype`` at times of ``time_dtype``."""
        state_real = real_dtype(xp, state_dtype)
        return cls(xp, state_real if xp.finfo(state_real).eps > xp.finfo(time_dtype).eps else time_dtype)

    def beside(self, t: Any, side: Any) -> Any:
        """``t`` moved one ulp towards the sign of ``side`` (not moved where ``side`` is 0)."""
        xp = self.xp
        coarse = xp.astype(t, self.dtype)
        # A target 1 + |t| away: t ± 1 would round back onto t where an ulp exceeds 2.
        toward = coarse + xp.astype(xp.sign(side), self.dtype) * (xp.abs(coarse) + 1)
        return xp.astype(xp.nextafter(coarse, toward), t.dtype)


def stage_nudge(xp: Any, perturb: bool, state_dtype: Any, time_dtype: Any) -> Nudge | None:
    """The :class:`Nudge` of :func:`stage_time` with ``options['perturb']``, else ``None``."""
    return Nudge.for_state(xp, state_dtype, time_dtype) if perturb else None


def stage_time(t: Any, h: Any, c: float, nudge: Nudge | None = None) -> Any:
    """t + c·h; the same expression wherever a stage time is needed.

    With ``nudge`` (``options['perturb']``, torchdiffeq's option of that name) a stage at
    c = 0 is taken one ulp after t and one at c = 1 one ulp before t + h (towards the inside
    of the step), so that a func with a jump at a step's end is evaluated on the step's side.
    """
    if nudge is not None and c == 0.0:
        return nudge.beside(t, h)
    if nudge is not None and c == 1.0:
        return nudge.beside(t + h, -h)
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
              count: int, nudge: Nudge | None = None) -> tuple[list[Any], list[Any]]:
    """Stage states Y_0..Y_{count-1} and derivatives k_0..k_{count-2} of a step.

    ``k0`` is f at the first stage, evaluated here when ``None``. The derivative of the
    last requested stage is not evaluated: callers that need it (the forward step)
    evaluate it themselves.
    """
    coeffs = tab.floats
    h_state = xp.astype(h, y.dtype)
    if k0 is None:
        k0 = f(stage_time(t, h, coeffs.c[0], nudge), y)
    states, derivatives = [y], [k0]
    for i in range(1, count):
        states.append(combine(y, h_state, [(a, derivatives[j]) for j, a in coeffs.a[i]]))
        if i < count - 1:
            derivatives.append(f(stage_time(t, h, coeffs.c[i], nudge), states[i]))
    return states, derivatives


def rk_solution(xp: Any, tab: Tableau, h: Any, y: Any, derivatives: Sequence[Any]) -> Any:
    """y_{n+1} = y_n + h Σ b_i k_i."""
    coeffs = tab.floats
    return combine(y, xp.astype(h, y.dtype),
                   [(b, derivatives[i]) for i, b in enumerate(coeffs.b) if b != 0.0])


def rk_advance(xp: Any, f: VectorField, tab: Tableau, t: Any, h: Any, y: Any, k0: Any = None,
               nudge: Nudge | None = None) -> Any:
    """y_{n+1} alone, without the FSAL derivative: the map the ``checkpoint`` mode differentiates."""
    states, derivatives = rk_stages(xp, f, tab, t, h, y, k0, tab.stages, nudge)
    if tab.fsal:
        return states[-1]
    if tab.stages > 1:
        derivatives.append(f(stage_time(t, h, tab.floats.c[-1], nudge), states[-1]))
    return rk_solution(xp, tab, h, y, derivatives)


def rk_step_with_stages(xp: Any, f: VectorField, tab: Tableau, t: Any, h: Any, y: Any, k0: Any = None,
                        nudge: Nudge | None = None) -> tuple[Any, Any, list[Any], list[Any]]:
    """One step: y_{n+1}, the FSAL derivative f(t+h, y_{n+1}) (``None`` if not FSAL), every
    stage derivative k_i, and the stage states Y_0..Y_{s-1}."""
    states, derivatives = rk_stages(xp, f, tab, t, h, y, k0, tab.stages, nudge)
    if tab.stages > 1:
        derivatives.append(f(stage_time(t, h, tab.floats.c[-1], nudge), states[-1]))
    if tab.fsal:
        # The last stage state is y_{n+1} itself (its row of a equals b), and its
        # derivative, taken at t + 1·h = t + h exactly, is the next step's first (not
        # with a nudge: taken one ulp before t + h, the next step needs it one ulp after).
        return states[-1], derivatives[-1], derivatives, states
    return rk_solution(xp, tab, h, y, derivatives), None, derivatives, states


def rk_increment(xp: Any, f: VectorField, tab: Tableau, t: Any, h: Any, y: Any, k0: Any = None,
                 nudge: Nudge | None = None, derivatives: Sequence[Any] | None = None) -> Any:
    """h Σ b_i k_i, the step's increment from (t, y), evaluating only the stages up to the last
    with a non-zero weight (dopri5's FSAL stage has none); from ``derivatives`` when given."""
    weights = [(i, b) for i, b in enumerate(tab.floats.b) if b != 0.0]
    if derivatives is None:
        last = weights[-1][0]
        states, derivatives = rk_stages(xp, f, tab, t, h, y, k0, last + 1, nudge)
        if last > 0:
            derivatives.append(f(stage_time(t, h, tab.floats.c[last], nudge), states[last]))
    return xp.astype(h, y.dtype) * weighted_sum([(b, derivatives[i]) for i, b in weights])


def rk_increment_evaluations(tab: Tableau) -> int:
    """Evaluations of f in one :func:`rk_increment` (its f(t, y) included)."""
    return 1 + max(i for i, b in enumerate(tab.floats.b) if b != 0.0)


def rk_advance_evaluations(tab: Tableau) -> int:
    """Evaluations of f in one :func:`rk_advance` (its f(t, y) included)."""
    return 1 + max(tab.stages - 2, 0) + (0 if tab.fsal or tab.stages == 1 else 1)
