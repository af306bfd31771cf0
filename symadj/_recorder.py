"""The recorder of the integration loop: the accepted steps kept for the backward pass."""

from __future__ import annotations

from typing import Any, NamedTuple

from ._backend import Backend
from ._checkpoint_policies import CheckpointPolicy
from ._complex import bytes_of
from ._observers import Observer
from ._rk_step import AcceptedStep, rk_advance_evaluations


class Trajectory(NamedTuple):
    """The accepted steps, kept for the backward pass: step n goes from ``times[n]`` with
    size ``steps[n]``; output k (k ≥ 1) lies in step ``output_steps[k]`` at θ =
    ``output_thetas[k]`` (1: the step's end state). ``states`` holds what the checkpoint
    policy kept (with the default, ``states[n]`` is y_n)."""

    times: Any
    steps: Any
    states: Any
    output_steps: Any
    output_thetas: Any
    n_steps: Any
    n_outputs: Any
    events: Any = None  # the EventRecord of a solve with events
    final: Any = None  # the state the last accepted step reached: what the backward walk's first step must recompute


class Recording(NamedTuple):
    """The recorder's part of the loop state: each accepted step's start time and size, and
    what the checkpoint policy stores of it."""

    times: Any
    steps: Any
    states: Any


class Recorder(Observer):
    """Keeps every accepted step as ``policy`` says, for the backward pass; a policy that
    keeps stage states keeps those listed in ``active_stages``."""

    def __init__(self, backend: Backend, problem: Any, policy: CheckpointPolicy,
                 active_stages: tuple[int, ...]) -> None:
        self.backend, self.xp, self.problem, self.policy = backend, problem.xp, problem, policy
        self.active_stages, self.capacity = active_stages, problem.options.max_steps
        self.keeps_stages = policy.keeps_stages(backend)
        self.first_step = 0

    def _stacked(self, stages: list) -> Any:
        """The stage states the policy keeps, stacked (``None`` where it keeps none)."""
        return self.xp.stack([stages[i] for i in self.active_stages]) if self.keeps_stages else None

    def start(self, state: Any) -> Any:
        backend, t0, y0 = self.backend, self.problem.ts[0], state.y
        stages_like = self._stacked([y0] * self.problem.tableau.stages)
        return state._replace(recording=Recording(
            times=backend.buffer(self.capacity, t0),
            steps=backend.buffer(self.capacity, t0),
            states=self.policy.buffer(backend, self.capacity, y0, stages_like),
        ))

    def resumed(self, state: Any) -> Any:
        # It records the steps from here on, numbered from 0 (the loop numbers them so).
        self.first_step = state.counts.n_accepted
        return self.start(state)

    def accepted(self, state: Any, step: AcceptedStep) -> Any:
        recording = state.recording
        return state._replace(recording=Recording(
            times=recording.times.write(step.index, step.t),
            steps=recording.steps.write(step.index, step.h),
            states=self.policy.store(self.backend, recording.states, step.index, step.y, self._stacked(step.stages)),
        ))

    def finish(self, state: Any, y0: Any, event_record: Any) -> tuple[tuple[Any, Any, Any], Trajectory]:
        """The policy's costs (checkpoint bytes, extra evaluations, schedule) and the trajectory."""
        xp, recording, outputs = self.xp, state.recording, state.outputs
        n_steps = state.counts.n_accepted - self.first_step
        costs = self.policy.costs(
            self.backend, recording.states, n_steps, bytes_of(xp, y0),
            len(self.active_stages) * bytes_of(xp, y0), bytes_of(xp, self.problem.ts[0]),
            rk_advance_evaluations(self.problem.tableau))
        trajectory = Trajectory(recording.times, recording.steps, recording.states, outputs.steps, outputs.thetas,
                                n_steps, outputs.next_output, event_record, state.y)
        return costs, trajectory
