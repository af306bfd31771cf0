"""Where steps must land: the final output time, ``step_t`` and ``jump_t`` times, and
(without a continuous extension, or with ``options["land_on_outputs"]``) every output
time. An output a step lands on is that step's end state itself (θ = 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from ._array_api import device_of


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
