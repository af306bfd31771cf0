"""What a solve returns: the outputs, their times, and statistics."""

from __future__ import annotations

import enum
import warnings
from dataclasses import dataclass
from typing import Any, NamedTuple


class Status(enum.IntEnum):
    """How a solve ended: ``Solution.status``, and ``Stats.status`` as an integer code.

    ``SUCCESS`` means every output time was reached. With ``throw=False`` a failed solve
    returns its partial solution and one of ``MAX_STEPS`` (``options["max_steps"]`` step
    attempts were not enough), ``STEP_UNDERFLOW`` (the step size fell below
    ``options["min_step"]`` or the time resolution) or ``NONFINITE`` (the state became
    NaN or infinite). ``RUNNING`` is only seen inside the loop.

    Examples:
        >>> import numpy as np, symadj
        >>> sol = symadj.solve(lambda t, y: -y, np.ones(1), [0.0, 10.0], options={"max_steps": 2},
        ...                    throw=False)
        >>> sol.status
        <Status.MAX_STEPS: 2>
    """

    RUNNING = 0
    SUCCESS = 1
    MAX_STEPS = 2
    STEP_UNDERFLOW = 3
    NONFINITE = 4


class Schedule(enum.IntEnum):
    """What the forward pass kept for the backward pass: ``Stats.schedule`` as an integer code.

    ``NONE`` (a mode that keeps nothing), ``STEPS`` (the state at every accepted step),
    ``STAGES`` (every step's stage states too), ``OFFLOAD`` (every state, in host memory),
    ``REVOLVE`` (a fixed number of states, the rest recomputed by Griewank's schedule) or
    ``THINNED`` (every k-th state, k doubled whenever the memory budget filled up; the rest
    recomputed).

    Examples:
        >>> import torch, symadj
        >>> y0 = torch.ones(2, requires_grad=True)
        >>> sol = symadj.solve(lambda t, y: -y, y0, [0.0, 1.0], gradient="symplectic")
        >>> symadj.Schedule(int(sol.stats.schedule)).name
        'STAGES'
    """

    NONE = 0
    STEPS = 1
    STAGES = 2
    OFFLOAD = 3
    REVOLVE = 4
    THINNED = 5


class ReconstructionReport:
    """The reconstruction check of ``gradient="reversible"`` (:attr:`Stats.reconstruction`),
    filled in by the backward pass when it runs.

    The backward pass reconstructs y_0 and z_0 from the final pair; its figure is the larger
    of max |ŷ_0 − y_0| and max |ẑ_0 − y_0|, relative to the larger of max |y_0| and max |y_N|.
    The forward solve returns this object empty (the backward pass has not run yet); a backward
    pass reports into it, also from a compiled program (a host callback when it runs). Under
    ``jax.jit`` the object belongs to the compiled function, so it gathers the reports of
    every run (:meth:`clear` starts afresh); under ``jax.vmap`` each batch element reports.

    Attributes:
        gap: the largest figure reported, or ``None`` before any backward pass ran.
        tolerance: the figure past which the mode raises or warns.
        reports: how many figures were reported (backward passes, times batch elements).

    Examples:
        >>> import torch, symadj
        >>> y0 = torch.ones(2, dtype=torch.float64, requires_grad=True)
        >>> sol = symadj.solve(lambda t, y: -y, y0, [0.0, 1.0], method="rk4", gradient="reversible",
        ...                    options={"step_size": 0.1})
        >>> sol.stats.reconstruction.gap is None
        True
        >>> sol.ys[-1].sum().backward()
        >>> sol.stats.reconstruction.gap < sol.stats.reconstruction.tolerance
        True
    """

    def __init__(self, tolerance: float) -> None:
        self.tolerance = tolerance
        self.gap: float | None = None
        self.reports = 0

    def add(self, gap: Any) -> None:
        """Report one backward pass's figure (the backward pass calls this)."""
        value = float(gap)
        self.gap = value if self.gap is None or not value <= self.gap else self.gap
        self.reports += 1

    def clear(self) -> None:
        """Forget the figures reported so far."""
        self.gap, self.reports = None, 0

    def __repr__(self) -> str:
        return f"ReconstructionReport(gap={self.gap!r}, tolerance={self.tolerance:.3g}, reports={self.reports})"


class Stats(NamedTuple):
    """Solver statistics of the forward solve.

    Entries are arrays of the solve's library (traced values under ``jax.jit``); convert
    them with ``int()`` on the host.

    Attributes:
        n_attempts: step attempts, accepted and rejected (``n_accepted + n_rejected``). It
            was called ``n_steps``, a name that still reads it with a ``DeprecationWarning``;
            :attr:`n_accepted` is the steps the solution is made of.
        n_accepted: accepted steps.
        n_rejected: rejected steps.
        n_fevals: evaluations of the vector field in the forward solve.
        status: a :class:`Status` code.
        t_final: the time the solve reached.
        n_outputs: how many output times were reached.
        checkpoint_bytes: memory held at peak for the backward pass (the states the checkpoint
            policy keeps, and the times and step sizes of the accepted steps), in device or
            host memory; 0 for modes that keep none.
        extra_fevals: evaluations of the vector field the backward pass will spend recomputing
            states that the checkpoint policy did not keep (``"revolve:K"``, or ``"auto"``
            past its memory budget); 0 otherwise.
        schedule: a :class:`Schedule` code: what the forward pass kept.
        events: with ``event=``, where the events fired (read them from
            :attr:`Solution.event`); ``None`` otherwise.
        graph_steps: accepted steps whose autograd graph is kept for the backward pass (all
            of them with ``gradient="backprop"``; the first ones with ``"auto"``).
        walk_steps: accepted steps recorded for a backward walk (``"symplectic"``,
            ``"checkpoint"``, and the rest of the solve with ``"auto"``).
        graph_bytes: with ``gradient="auto"``, the bytes autograd saved for the steps with a
            graph, as measured (0 for the other modes, which do not measure it). The memory
            the backward pass holds at peak is :attr:`peak_bytes`.
        reconstruction: with ``gradient="reversible"``, a :class:`ReconstructionReport` that
            the backward pass fills in; ``None`` otherwise (and with ``reconstruction="off"``).

    Examples:
        >>> import numpy as np, symadj
        >>> stats = symadj.solve(lambda t, y: -y, np.ones(3), [0.0, 1.0], method="rk4",
        ...                      options={"step_size": 0.25}).stats
        >>> int(stats.n_accepted), int(stats.n_rejected), int(stats.n_fevals)
        (4, 0, 17)
    """

    n_attempts: Any
    n_accepted: Any
    n_rejected: Any
    n_fevals: Any
    status: Any
    t_final: Any
    n_outputs: Any
    checkpoint_bytes: Any = 0
    extra_fevals: Any = 0
    schedule: Any = 0
    events: Any = None
    graph_steps: Any = 0
    walk_steps: Any = 0
    graph_bytes: Any = 0
    reconstruction: ReconstructionReport | None = None

    @property
    def peak_bytes(self) -> Any:
        """The memory held for the backward pass at peak, as counted: ``graph_bytes +
        checkpoint_bytes``, what ``gradient="auto"`` keeps within its budget."""
        return self.graph_bytes + self.checkpoint_bytes

    def as_dict(self) -> dict[str, int | float | str | None]:
        """Plain Python numbers, for loggers (TensorBoard, Weights & Biases, ...): the counts
        as ``int``, ``t_final`` as ``float``, ``status`` and ``schedule`` by name (read on the
        host: not under ``jax.jit``). Event outcomes are in :attr:`Solution.event`; with
        ``gradient="reversible"``, ``reconstruction_gap`` is the reconstruction check's figure
        (``None`` before the backward pass ran).

        Examples:
            >>> import numpy as np, symadj
            >>> stats = symadj.solve(lambda t, y: -y, np.ones(1), [0.0, 1.0]).stats
            >>> stats.as_dict()["status"], stats.as_dict()["n_accepted"] > 0
            ('SUCCESS', True)
        """
        numbers: dict[str, int | float | str | None] = {
            name: int(getattr(self, name))
            for name in ("n_attempts", "n_accepted", "n_rejected", "n_fevals", "n_outputs", "checkpoint_bytes",
                         "extra_fevals", "graph_steps", "walk_steps", "graph_bytes")
        }
        numbers["t_final"] = float(self.t_final)
        numbers["status"] = Status(int(self.status)).name
        numbers["schedule"] = Schedule(int(self.schedule)).name
        if self.reconstruction is not None:
            numbers["reconstruction_gap"] = self.reconstruction.gap
        return numbers

    @property
    def n_steps(self) -> Any:
        """Deprecated name of :attr:`n_attempts` (step attempts, not accepted steps)."""
        warnings.warn("Stats.n_steps is deprecated: it counts step attempts, now read as Stats.n_attempts "
                      "(accepted steps are Stats.n_accepted)", DeprecationWarning, stacklevel=2)
        return self.n_attempts

    def __repr__(self) -> str:
        def shown(name: str, value: Any) -> str:
            codes = {"status": Status, "schedule": Schedule}
            if name in codes:
                try:
                    return codes[name](int(value)).name
                except (TypeError, ValueError):  # a traced value under jit has no number yet
                    return repr(value)
            return repr(value)

        fields = ", ".join(f"{name}={shown(name, getattr(self, name))}" for name in self._fields
                           if name not in ("events", "reconstruction") or getattr(self, name) is not None)
        return f"Stats({fields})"


class SolveOutputs(NamedTuple):
    """The differentiable result of a solve, as it crosses :meth:`Backend.custom_vjp`: the
    outputs ``ys`` (leading time axis) and, with events, the event state y* (state-shaped)
    and the event time τ (event-shaped, in the state's dtype: its cotangent has the
    precision of the others; :func:`symadj.solve` moves it onto the full-precision time
    of the event record). The event entries are ``None`` without events."""

    ys: Any
    event_state: Any = None
    event_time: Any = None

    def joined(self, xp: Any) -> Any:
        """Its arrays as one (``ys`` itself without events), to check them all at once."""
        if self.event_state is None:
            return self.ys
        return xp.concat([xp.reshape(x, (-1,)) for x in self])


class EventOutcome(NamedTuple):
    """Where the events of a solve fired (:attr:`Solution.event`).

    Entries have the event shape: ``()``, or ``(batch,)`` for event functions returning one
    value per row of the state (``y`` has the state's structure).

    Attributes:
        t: the event time; gradients flow to it (exact modes: the implicit function theorem
            on the discrete solution's continuous extension). Where no event fired: the last
            output time.
        y: the state at the event time (where none fired: the state at the last output time).
        fired: whether an event fired.
        index: which event function fired (its position in ``event=``); −1 where none did.

    Examples:
        >>> import numpy as np, symadj
        >>> sol = symadj.solve(lambda t, y: -y, np.array([1.0]), [0.0, 5.0], rtol=1e-10, atol=1e-12,
        ...                    event=lambda t, y: y[0] - 0.5)
        >>> round(float(sol.event.t), 8), bool(sol.event.fired)  # ln 2
        (0.69314718, True)
    """

    t: Any
    y: Any
    fired: Any
    index: Any


@dataclass(frozen=True)
class Solution:
    """The result of :func:`symadj.solve`.

    Attributes:
        ts: the output times.
        ys: the state at each output time, with a leading time axis (the structure of ``y0``).
            Outputs that a failed solve (``throw=False``) did not reach are NaN.
        stats: :class:`Stats` of the forward solve.
        event: an :class:`EventOutcome` for a solve with ``event=``; ``None`` otherwise.

    Examples:
        >>> import numpy as np, symadj
        >>> sol = symadj.solve(lambda t, y: -y, np.array([1.0, 2.0]), np.linspace(0.0, 1.0, 5))
        >>> sol.ts.shape, sol.ys.shape, sol.success
        ((5,), (5, 2), True)
    """

    ts: Any
    ys: Any
    stats: Stats
    event: EventOutcome | None = None

    @property
    def status(self) -> Status:
        """How the solve ended (read on the host)."""
        return Status(int(self.stats.status))

    @property
    def success(self) -> bool:
        """Whether every output time was reached (read on the host)."""
        return self.status is Status.SUCCESS
