"""What a solve returns: the outputs, their times, and statistics."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, NamedTuple


class Status(enum.IntEnum):
    """How a solve ended."""

    RUNNING = 0
    SUCCESS = 1
    MAX_STEPS = 2
    STEP_UNDERFLOW = 3
    NONFINITE = 4


class Stats(NamedTuple):
    """Solver statistics of the forward solve.

    Attributes:
        n_steps: step attempts, accepted and rejected.
        n_accepted, n_rejected: accepted and rejected steps.
        n_fevals: evaluations of the vector field in the forward solve.
        status: a :class:`Status` code.
        t_final: the time the solve reached.
        n_outputs: how many output times were reached.
        checkpoint_bytes: memory held for the backward pass (states, times and step sizes of
            the accepted steps); 0 for modes that keep none.
    """

    n_steps: Any
    n_accepted: Any
    n_rejected: Any
    n_fevals: Any
    status: Any
    t_final: Any
    n_outputs: Any
    checkpoint_bytes: Any = 0


@dataclass(frozen=True)
class Solution:
    """The result of :func:`symadj.solve`.

    Attributes:
        ts: the output times.
        ys: the state at each output time, with a leading time axis (the structure of ``y0``).
            Outputs that a failed solve (``throw=False``) did not reach are NaN.
        stats: :class:`Stats` of the forward solve.
    """

    ts: Any
    ys: Any
    stats: Stats

    @property
    def status(self) -> Status:
        """How the solve ended (read on the host)."""
        return Status(int(self.stats.status))

    @property
    def success(self) -> bool:
        return self.status is Status.SUCCESS
