"""What watches the integration loop: each observer of a solve keeps its own part of the loop
state (if any) and is told of every attempt, its proposal and its verdict.

A solve has only the observers it needs, chosen once before the loop: the outputs writer
(``_output_writers.py``) always, the recorder for the backward pass (``_recorder.py``) when
it records, and here the step callbacks, the progress meter and the events when it has them.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ._backend import Backend
from ._callbacks import StepCallbacks
from ._events import Events, EventSearch
from ._progress import Reporter
from ._rk_step import AcceptedStep


class Proposal(NamedTuple):
    """What an attempted step computed: its end state, the FSAL derivative (``None`` if the
    tableau has none), every stage derivative k_i and the stage states Y_i."""

    y_new: Any
    dy_fsal: Any
    derivatives: list
    stages: list


class Observer:
    """One concern of the loop; every hook does nothing unless overridden. ``state`` is the
    loop's state (``_loop.LoopState``): an observer replaces its own part of it only."""

    #: Whether :meth:`stopped` can end the solve before its last output time.
    stops: bool = False

    def start(self, state: Any) -> Any:
        """The loop's first state with this observer's part in it (``state.y``: y0, ``state.dy``: f there)."""
        return state

    def resumed(self, state: Any) -> Any:
        """``state``, paused by another run of the loop, as this observer's run continues it
        (``state.counts.n_accepted``: the steps before it; ``state.recording`` is ``None``)."""
        return state

    def attempted(self, state: Any, h: Any) -> None:
        """A step of size ``h`` from ``state.t`` is about to be tried."""

    def proposed(self, state: Any, proposal: Proposal) -> Proposal:
        """The attempted step's result, as the controller is to judge it."""
        return proposal

    def accepted(self, state: Any, step: AcceptedStep) -> Any:
        """The loop state once ``step`` is accepted."""
        return state

    def rejected(self, state: Any, h: Any) -> None:
        """The step of size ``h`` from ``state.t`` was rejected."""

    def stopped(self, state: Any) -> Any:
        """Whether the solve is over (with :attr:`stops`)."""
        raise NotImplementedError


class CallbacksObserver(Observer):
    """torchdiffeq's step callbacks, called with ``(t, y, h)`` from the loop."""

    def __init__(self, backend: Backend, callbacks: StepCallbacks) -> None:
        self.backend, self.callbacks = backend, callbacks

    def attempted(self, state: Any, h: Any) -> None:
        if self.callbacks.attempt is not None:
            self.backend.host_callback(self.callbacks.attempt, state.t, state.y, h)

    def accepted(self, state: Any, step: AcceptedStep) -> Any:
        if self.callbacks.accept is not None:
            self.backend.host_callback(self.callbacks.accept, step.t, step.y, step.h)
        return state

    def rejected(self, state: Any, h: Any) -> None:
        if self.callbacks.reject is not None:
            self.backend.host_callback(self.callbacks.reject, state.t, state.y, h)


class ProgressObserver(Observer):
    """The forward meter's step report (the meter is opened and closed by the caller)."""

    def __init__(self, backend: Backend, xp: Any, meter: Reporter) -> None:
        self.backend, self.xp, self.meter = backend, xp, meter

    def accepted(self, state: Any, step: AcceptedStep) -> Any:
        self.meter.step(self.backend, self.xp, step.t, step.t_end, state.counts.n_accepted + 1)
        return state


class EventsObserver(Observer):
    """The events of a solve: their values and record in ``state.events``, checked after
    each accepted step; the solve stops once every event element has fired."""

    stops = True

    def __init__(self, backend: Backend, xp: Any, events: Events, search: EventSearch, ts: Any) -> None:
        self.backend, self.xp, self.events, self.search, self.ts = backend, xp, events, search, ts

    def start(self, state: Any) -> Any:
        return state._replace(events=self.events.start(self.xp, self.search.fields, self.ts, state.y))

    def accepted(self, state: Any, step: AcceptedStep) -> Any:
        return state._replace(events=self.events.after_step(self.backend, self.xp, self.search, state.events, step))

    def stopped(self, state: Any) -> Any:
        return self.xp.all(state.events.record.fired)


class RowEventsObserver(EventsObserver):
    """:class:`EventsObserver` for per-row events: a row whose event has fired is frozen."""

    def proposed(self, state: Any, proposal: Proposal) -> Proposal:
        xp = self.xp
        # Rows whose event fired in an earlier step stay where they are.
        frozen = self.events.frozen(xp, state.events.record, state.t, self.search.direction, state.y)
        derivatives = [xp.where(frozen, xp.zeros_like(k), k) for k in proposal.derivatives]
        return proposal._replace(y_new=xp.where(frozen, state.y, proposal.y_new), derivatives=derivatives)


def events_observer(backend: Backend, xp: Any, events: Events, search: EventSearch, ts: Any) -> EventsObserver:
    """The observer of ``events``: per row, or for the whole state."""
    kind = RowEventsObserver if events.per_row else EventsObserver
    return kind(backend, xp, events, search, ts)
