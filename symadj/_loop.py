"""The integration loop, written against a backend's primitives.

The loop reads: attempt a step, let the step-size side decide (``_landing.py``: the
controller, with steps landed on the final time, ``step_t`` and ``jump_t``, and every
output time where outputs are not interpolated), and on acceptance let each observer of
the solve update its own part of the loop state (``_observers.py``: the outputs writer,
the recorder for the backward pass, events, step callbacks, progress). A step from t_n of
size h_n ends at t_n + h_n, computed once, so every later use of that time (stage times,
the next step's FSAL derivative, the backward pass) sees the same number. Step sizes are
treated as constants by every gradient mode.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ._backend import Backend
from ._callbacks import StepCallbacks
from ._checkpoint_policies import AllSteps, CheckpointPolicy
from ._events import EventCarry, Events, EventSearch
from ._interpolant import Interpolant, interpolates
from ._landing import ControlState, LandingControl, landing_control
from ._observers import CallbacksObserver, Observer, ProgressObserver, Proposal, events_observer
from ._options import SolverOptions
from ._output_writers import OutputsState, StagedOutputs, outputs_writer
from ._progress import Progress
from ._recorder import Recorder, Recording, Trajectory
from ._rk_step import AcceptedStep, Nudge, VectorField, rk_step_with_stages, stage_nudge
from ._solution import Schedule, SolveOutputs, Stats, Status
from ._tableau import Tableau

__all__ = ["LoopRun", "Problem", "Trajectory", "integrate"]


@dataclass(frozen=True)
class Problem:
    """Everything the loop needs, with arrays already in the backend's namespace."""

    xp: Any
    tableau: Tableau
    ts: Any
    rtol: Any
    atol: Any
    options: SolverOptions
    events: Events | None = None
    progress: Progress | None = None
    callbacks: StepCallbacks | None = None
    adjoint_callbacks: StepCallbacks | None = None  # given the continuous adjoint's (y, λ, θ̄...)

    @property
    def n_outputs(self) -> int:
        return self.ts.shape[0]

    def stage_nudge(self, state_dtype: Any) -> Nudge | None:
        """How stage times move inside a step for a state of ``state_dtype`` (``options['perturb']``),
        or ``None``: every recomputation of a step takes it, to see the times the forward pass saw."""
        return stage_nudge(self.xp, self.options.perturb, state_dtype, self.ts.dtype)

    @functools.cached_property
    def interpolant(self) -> Interpolant | None:
        """The continuous extension outputs are evaluated with, or ``None`` where steps land on them."""
        return Interpolant.of(self.tableau) if interpolates(self.tableau, self.options) else None


class Counts(NamedTuple):
    """The loop's tallies: accepted and rejected attempts, evaluations of f."""

    n_accepted: Any
    n_rejected: Any
    n_fevals: Any


class LoopState(NamedTuple):
    """The loop's carry: the solution where the next step starts, and one part per concern
    (``None`` for a concern this solve does not have)."""

    t: Any
    y: Any
    dy: Any  # f at (t, y): the next step's first stage derivative
    status: Any
    counts: Counts
    control: ControlState  # the step-size side's
    outputs: OutputsState | None = None  # the outputs writer's
    recording: Recording | None = None  # the recorder's
    events: EventCarry | None = None  # the events observer's


def integrate(backend: Backend, problem: Problem, f: VectorField, y0: Any, *, record: bool,
              differentiable: bool = False, checkpoints: CheckpointPolicy | None = None,
              active_stages: tuple[int, ...] = (), params: Any = None
              ) -> tuple[SolveOutputs, Stats, Trajectory | None]:
    """Solve from ``ts[0]`` through every output time.

    Returns the outputs stacked along a leading axis (NaN where not reached), the
    statistics, and, when ``record``, the accepted steps for the backward pass, kept as
    the ``checkpoints`` policy says (default: every state); a policy that keeps stage
    states keeps those listed in ``active_stages``. ``differentiable`` asks the backend
    for a loop its autodiff can reverse. With events (``problem.events``, evaluated with
    ``params`` when given) the outputs come with the event state and time
    (:class:`SolveOutputs`) and the solve stops once every event element has fired.
    Each accepted step is reported to ``problem.progress.forward`` (opened and closed by
    the caller), and each attempt to ``problem.callbacks``.
    """
    recorder = Recorder(backend, problem, checkpoints if checkpoints is not None else AllSteps(), active_stages) \
        if record else None
    run = LoopRun(backend, problem, f, y0, recorder=recorder, differentiable=differentiable, params=params)
    return run.finish(run.run(run.start(y0)), y0)


class LoopRun:
    """The loop of one solve, chosen once (its outputs writer, observers and step-size side),
    run from the start or resumed from a loop state: a solve may run its first steps one
    way and the rest another (``gradient="auto"``).

    ``watchers`` are more observers, told of every step after the others; one that
    :attr:`Observer.stops` pauses the loop, which :meth:`resume` continues. A run resumed
    after ``first_step`` accepted steps numbers its steps from there (step ``first_step``
    is its step 0: what it records, the outputs' and events' steps); its counts and
    :class:`Stats` are those of the whole solve.
    """

    def __init__(self, backend: Backend, problem: Problem, f: VectorField, y0: Any, *, recorder: Recorder | None,
                 differentiable: bool = False, params: Any = None, watchers: Sequence[Observer] = (),
                 first_step: int = 0) -> None:
        xp, ts = problem.xp, problem.ts
        self.backend, self.problem, self.recorder = backend, problem, recorder
        self.direction = xp.sign(ts[-1] - ts[0])
        self.writer = outputs_writer(backend, problem, self.direction, differentiable)
        observers = _observers(backend, problem, self.writer, recorder, self.direction, differentiable, params)
        control = landing_control(backend, problem, f, y0, self.direction)
        self.loop = _Loop(backend, problem, f, control, [*observers, *watchers], problem.stage_nudge(y0.dtype),
                          first_step, watchers)
        self.differentiable = differentiable

    def start(self, y0: Any) -> LoopState:
        """The state before the first attempt."""
        return self.loop.start(y0)

    def resume(self, state: LoopState) -> LoopState:
        """``state`` (another run's, paused) as this run continues it."""
        state = state._replace(recording=None)
        for observer in self.loop.observers:
            state = observer.resumed(state)
        return state

    def run(self, state: LoopState) -> LoopState:
        """The state where the loop ends or a watcher pauses it."""
        return self.backend.while_loop(self.loop.running, self.loop.attempt, state,
                                       max_iterations=self.problem.options.max_steps,
                                       differentiable=self.differentiable)

    def unfinished(self, state: LoopState) -> Any:
        """Whether the solve goes on after ``state`` (watchers aside)."""
        return self.loop.running(state, watchers=False)

    def finish(self, state: LoopState, y0: Any) -> tuple[SolveOutputs, Stats, Trajectory | None]:
        """The outputs, the statistics and (with a recorder) the trajectory, from the last state."""
        problem, xp = self.problem, self.problem.xp
        outputs = SolveOutputs(self.writer.finish(state.outputs, y0))
        event_record = None
        if problem.events is not None:
            outputs, event_record = problem.events.finish(xp, state.events.record, outputs.ys, problem.ts,
                                                          self.direction)
        costs, trajectory = (0, 0, int(Schedule.NONE)), None
        if self.recorder is not None:
            costs, trajectory = self.recorder.finish(state, y0, event_record)
        stats = self.loop.stats(state, costs, event_record)
        if trajectory is not None:
            stats = stats._replace(walk_steps=trajectory.n_steps)
        return outputs, stats, trajectory


def _observers(backend: Backend, problem: Problem, writer: StagedOutputs, recorder: Recorder | None,
               direction: Any, differentiable: bool, params: Any) -> list[Observer]:
    """The observers this solve has, in the order they see each step."""
    xp, events, callbacks, progress = problem.xp, problem.events, problem.callbacks, problem.progress
    observers: list[Observer] = []
    if callbacks is not None:
        observers.append(CallbacksObserver(backend, callbacks))
    if recorder is not None:
        observers.append(recorder)
    observers.append(writer)
    if events is not None:
        fields = events.bound(params) if params is not None else events.fields
        search = EventSearch(fields, Interpolant.of(problem.tableau), direction, differentiable)
        observers.append(events_observer(backend, xp, events, search, problem.ts))
    if progress is not None:
        observers.append(ProgressObserver(backend, xp, progress.forward))
    return observers


class _Loop:
    """The body of the integration loop: attempt a step, let ``control`` decide, and tell the
    ``observers`` (chosen before the loop: each feature is one of them or absent)."""

    def __init__(self, backend: Backend, problem: Problem, f: VectorField, control: LandingControl,
                 observers: list[Observer], stages_nudge: Nudge | None, first_step: int = 0,
                 watchers: Sequence[Observer] = ()) -> None:
        self.backend, self.xp, self.problem, self.f, self.control = backend, problem.xp, problem, f, control
        self.observers, self.stopping = observers, [observer for observer in observers if observer.stops]
        self.first_step = first_step
        self.pausing = [observer for observer in watchers if observer.stops]
        # Each hook is called only on the observers that override it: a small network's step
        # costs about as much as the Python around it.
        self.attempted, self.proposed, self.rejected = (
            [observer for observer in observers if getattr(type(observer), hook) is not getattr(Observer, hook)]
            for hook in ("attempted", "proposed", "rejected"))
        self.stages_nudge = stages_nudge
        self.evals_per_attempt = problem.tableau.stages - 1

    def start(self, y0: Any) -> LoopState:
        """The state before the first attempt."""
        t, dy0, control, evaluations = self.control.start(self.f, self.problem.ts[0], y0)
        state = LoopState(t, y0, dy0, int(Status.RUNNING), Counts(0, 0, evaluations), control)
        for observer in self.observers:
            state = observer.start(state)
        return state

    def running(self, state: LoopState, watchers: bool = True) -> Any:
        going = (state.outputs.next_output < self.problem.n_outputs) & (state.status == int(Status.RUNNING))
        for observer in self.stopping:
            if watchers or observer not in self.pausing:
                going = going & ~observer.stopped(state)
        return going

    def attempt(self, state: LoopState) -> LoopState:
        xp, backend, control = self.xp, self.backend, self.control
        h, clip = control.clip(state.control, state.t)
        for observer in self.attempted:
            observer.attempted(state, h)
        proposal = Proposal(*rk_step_with_stages(xp, self.f, self.problem.tableau, state.t, h, state.y, state.dy,
                                                 self.stages_nudge))
        for observer in self.proposed:
            proposal = observer.proposed(state, proposal)
        finite = xp.all(xp.isfinite(proposal.y_new))
        decision = control.decide(state.control, h, state.y, proposal.y_new, proposal.derivatives, finite)
        counts = state.counts
        state = state._replace(counts=counts._replace(n_fevals=counts.n_fevals + self.evals_per_attempt))

        def accepted(state: LoopState) -> LoopState:
            t_end = state.t + h
            step = AcceptedStep(state.counts.n_accepted - self.first_step, state.t, h, state.y, proposal.y_new,
                                proposal.derivatives, proposal.stages, t_end, control.reached(clip, t_end))
            for observer in self.observers:
                state = observer.accepted(state, step)
            t, dy, fresh, next_control = control.accepted(state.control, clip, decision, t_end, proposal.y_new,
                                                          proposal.dy_fsal)
            counts = state.counts
            return state._replace(t=t, y=proposal.y_new, dy=dy, control=next_control, counts=counts._replace(
                n_accepted=counts.n_accepted + 1, n_fevals=counts.n_fevals + fresh))

        def rejected(state: LoopState) -> LoopState:
            for observer in self.rejected:
                observer.rejected(state, h)
            next_control, status = control.rejected(state.control, state.t, decision, finite, state.status)
            counts = state.counts._replace(n_rejected=state.counts.n_rejected + 1)
            return state._replace(control=next_control, status=status, counts=counts)

        state = backend.cond(decision.accept, accepted, rejected, state)
        exhausted = (state.counts.n_accepted + state.counts.n_rejected >= self.problem.options.max_steps) & \
            self.running(state, watchers=False)
        return state._replace(status=backend.select(exhausted, int(Status.MAX_STEPS), state.status))

    def stats(self, state: LoopState, costs: tuple[Any, Any, Any], event_record: Any) -> Stats:
        """The solve's statistics, from the loop's last state."""
        finished = state.outputs.next_output == self.problem.n_outputs
        for observer in self.stopping:
            if observer not in self.pausing:
                finished = finished | observer.stopped(state)
        checkpoint_bytes, extra_fevals, schedule = costs
        counts = state.counts
        return Stats(
            n_attempts=counts.n_accepted + counts.n_rejected, n_accepted=counts.n_accepted,
            n_rejected=counts.n_rejected, n_fevals=counts.n_fevals,
            status=self.backend.select(finished, int(Status.SUCCESS), state.status),
            t_final=state.t, n_outputs=state.outputs.next_output,
            checkpoint_bytes=checkpoint_bytes, extra_fevals=extra_fevals, schedule=schedule, events=event_record,
        )
