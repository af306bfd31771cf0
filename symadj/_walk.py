"""What a backward walk and the steps it reverses exchange.

A recording gradient mode hands its checkpoint policy a step adjoint; the policy walks the
accepted steps in reverse, reading (or recomputing) what each step needs, and calls it. The
policy decides where a step's stage states come from, by giving the mode's steps a
:class:`StageSource`: recomputed from the step's starting state, or read from the stage
states it stored. The walk's running state is one :class:`WalkState`, whose ``checks``
(the walk checks' figures) the policies pass along without looking inside.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from ._rk_step import Nudge, VectorField, rk_stages
from ._tableau import Tableau


class WalkState(NamedTuple):
    """The running state of a backward walk: λ (of the step's end before it is reversed, of
    its start after), the parameters' cotangents θ̄, and the walk checks' figures."""

    lam: Any
    params_bar: list
    checks: Any = ()


class StageSource(abc.ABC):
    """Where a backward step gets the stage states it takes products at, from the value the
    walk read for the step (its state y_n, or its stored stage states)."""

    @abc.abstractmethod
    def states(self, xp: Any, field: VectorField, tab: Tableau, t: Any, h: Any, value: Any,
               stages: tuple[int, ...], nudge: Nudge | None) -> Any:
        """The states of ``stages`` (ascending), stacked, of the step from ``t`` of size ``h``."""

    @abc.abstractmethod
    def start(self, value: Any) -> Any:
        """The step's starting state y_n."""


class FromState(StageSource):
    """The walk reads y_n; the stages are recomputed from it (no graph is kept)."""

    def states(self, xp, field, tab, t, h, value, stages, nudge):
        states, _ = rk_stages(xp, field, tab, t, h, value, None, stages[-1] + 1, nudge)
        return xp.stack([states[i] for i in stages])

    def start(self, value):
        return value


class FromStoredStages(StageSource):
    """The walk reads the stacked states of the stages ``stored`` (ascending, stage 0 among
    them), which the policy kept in the forward pass; nothing is recomputed."""

    def __init__(self, stored: tuple[int, ...]) -> None:
        self.stored = tuple(stored)

    def states(self, xp, field, tab, t, h, value, stages, nudge):
        if stages == self.stored:
            return value
        return xp.stack([value[self.stored.index(i)] for i in stages])

    def start(self, value):
        return value[self.stored.index(0)]


#: A mode's backward step, as a policy's walk calls it:
#: ``step(t_n, h_n, value_n, state, outputs of step n) -> state`` (``state`` a :class:`WalkState`).
BackwardStep = Callable[[Any, Any, Any, WalkState, Any], WalkState]

#: ``advance(t_n, h_n, y_n) -> y_{n+1}``, recomputed exactly as the forward pass computed it.
Advance = Callable[[Any, Any, Any], Any]


class BackwardSteps(Protocol):
    """A mode's backward steps, before the policy has said where their stages come from."""

    #: The stages whose states a policy that keeps stage states stores for each step (ascending).
    stored: tuple[int, ...]

    def taking(self, source: StageSource) -> BackwardStep:
        """The step, taking its stage states from ``source``."""
        ...

    def advance(self, t: Any, h: Any, y: Any) -> Any:
        """y_{n+1} from y_n, recomputed exactly as the forward pass computed it."""
        ...
