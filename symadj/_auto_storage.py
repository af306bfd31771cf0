"""The storage of :class:`symadj.Auto`, one strategy per kind of backend: an eager one
(:class:`EagerAuto`) decides step by step on the host and allocates as it goes; a staged
one (:class:`StagedAuto`) fixes its storage when the program compiles and runs no branch
around it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from ._backend import Backend
from ._complex import bytes_of
from ._revolve import Checkpoints, revolve_counts_from, stride_positions
from ._sizes import size_text
from ._solution import Schedule
from ._walk import BackwardSteps, FromState, FromStoredStages, WalkState
from ._walks import revolve_walk, walk_every_step
from .errors import InvalidArgumentError


def _slots(memory: int, state_bytes: int, least: int) -> int:
    """The states ``memory`` bytes hold, refused below the ``least`` a backward pass needs."""
    slots = memory // state_bytes
    if slots < least:
        raise InvalidArgumentError(
            f"checkpoints=Auto(memory={size_text(memory)}) holds {slots} state(s) of {size_text(state_bytes)}; the "
            f"backward pass needs at least {least}: give memory={size_text(least * state_bytes)} or more"
        )
    return slots


def _held_and_recomputed(backend: Backend, stride: Any, n_steps: Any,
                         recomputed: Callable[[], tuple[Any, Any]]) -> tuple[Any, Any, Any]:
    """The states held at peak, the steps recomputed and the :class:`Schedule`: every step's
    state where nothing was dropped (``stride`` 1), else what ``recomputed()`` counts."""
    thinned = stride > 1
    peak, advanced = backend.cond(thinned, lambda _: recomputed(), lambda kept: kept, (n_steps, 0))
    return peak, advanced, backend.select(thinned, int(Schedule.THINNED), int(Schedule.STEPS))


class EagerStore(NamedTuple):
    """What :class:`EagerAuto` keeps: the stacked stage states of every step while they fit
    (``stacks``; ``None`` once given up), else every ``stride``-th step's state, in the first
    ``count`` slots of ``states`` in step order."""

    stacks: Any
    states: Any
    stride: int
    count: int


@dataclass(frozen=True)
class EagerAuto:
    """:class:`symadj.Auto` on an eager backend, with a budget of ``memory`` bytes: the stage
    states while they fit (where ``stage_states``), then every step's state, then every
    2nd, 4th, ... step's, thinned in place; its backward pass recomputes in the same slots."""

    memory: int
    stage_states: bool

    @property
    def keeps_stages(self) -> bool:
        return self.stage_states

    def _forward_slots(self, max_steps: int, state_bytes: int) -> int:
        """Every step's state if they fit, else the whole budget (an even number of slots)."""
        slots = _slots(self.memory, state_bytes, least=2)
        return max_steps if slots >= max_steps else slots - slots % 2

    def buffer(self, backend: Backend, max_steps: int, like: Any, stages_like: Any = None) -> EagerStore:
        xp = backend.namespace()
        slots = self._forward_slots(max_steps, bytes_of(xp, like))
        stacks = None
        if stages_like is not None:
            stacks = backend.buffer(min(self.memory // bytes_of(xp, stages_like), max_steps), stages_like)
        return EagerStore(stacks=stacks, states=backend.buffer(slots, like), stride=1, count=0)

    def store(self, backend: Backend, buffer: EagerStore, index: Any, value: Any, stages: Any = None) -> EagerStore:
        index = int(index)
        if buffer.stacks is not None:
            if index < buffer.stacks.capacity:
                return buffer._replace(stacks=buffer.stacks.write(index, stages))
            # The stage states outgrow the budget: keep each step's first stage state, y_n.
            states = buffer.states
            for n in range(index):
                states = states.write(n, buffer.stacks.read(n)[0])
            buffer = buffer._replace(stacks=None, states=states, count=index)
        if index % buffer.stride:
            return buffer
        states, stride = buffer.states, buffer.stride
        slots = states.capacity
        if index // stride >= slots:  # full: keep every other state, and every 2·stride-th step from now on
            for i in range(slots // 2):
                states = states.write(i, states.read(2 * i))
            stride *= 2
        slot = index // stride
        return buffer._replace(states=states.write(slot, value), stride=stride, count=slot + 1)

    def _checkpoints(self, backend: Backend, store: EagerStore) -> Checkpoints:
        """The kept states as revolve's checkpoints: slot i holds step i·stride, every slot in the budget."""
        slots = store.states.capacity
        return Checkpoints(store.states, store.count, stride_positions(backend, slots, store.stride), slots)

    def costs(self, backend: Backend, buffer: EagerStore, n_steps: Any, value_bytes: int, stages_bytes: int,
              scalar_bytes: int, evals_per_step: int) -> tuple[Any, Any, Any]:
        scalars = n_steps * 2 * scalar_bytes
        if buffer.stacks is not None:
            return n_steps * stages_bytes + scalars, 0, Schedule.STAGES
        slots = buffer.states.capacity

        def recomputed() -> tuple[Any, Any]:
            return revolve_counts_from(backend, n_steps, self._checkpoints(backend, buffer), peak=slots)

        peak, advanced, schedule = _held_and_recomputed(backend, buffer.stride, n_steps, recomputed)
        return peak * value_bytes + scalars, advanced * evals_per_step, schedule

    def walk(self, backend: Backend, xp: Any, trajectory: Any, outputs: Any, start: WalkState,
             steps: BackwardSteps) -> WalkState:
        store = trajectory.states
        if store.stacks is not None:
            return walk_every_step(backend, xp, trajectory, store.stacks, outputs, start,
                                   steps.taking(FromStoredStages(steps.stored)))
        if int(store.stride) == 1:  # nothing was dropped: slot n holds step n
            return walk_every_step(backend, xp, trajectory, store.states, outputs, start, steps.taking(FromState()))
        return revolve_walk(backend, xp, trajectory, self._checkpoints(backend, store), outputs, start, steps)


class StagedStore(NamedTuple):
    """What :class:`StagedAuto` keeps: every ``stride``-th step's state, each written into a
    free slot of ``states``, ``positions`` holding each slot's step (−1: free), so that
    dropping states moves no data (its last slot takes the states not kept); ``positions``
    is ``None`` where every step's state fits (known when the program compiles)."""

    states: Any
    stride: Any
    positions: Any


@dataclass(frozen=True)
class StagedAuto:
    """:class:`symadj.Auto` on a staged backend, with a budget of ``memory`` bytes: every
    step's state if they all fit, else half the budget's states, thinned as the steps come
    (the other half is the backward pass's); no stage states."""

    memory: int
    keeps_stages = False

    def _slots(self, state_bytes: int) -> int:
        # Two slots more than an eager backend: one takes the states not kept, one the
        # backward pass's recomputed states not kept.
        return _slots(self.memory, state_bytes, least=4)

    def _forward_slots(self, backend: Backend, max_steps: int, state_bytes: int) -> int:
        """Every step's state if they fit, else half the budget's slots (one of them takes
        what is not kept)."""
        slots = self._slots(state_bytes)
        if slots >= max_steps:
            return max_steps
        forward = slots // 2
        limit = backend.loop_integer_max
        # The binomial schedule's integers reach about N·(2N/K + K) for N steps in K slots.
        if limit is not None and max_steps * (2 * max_steps // forward + forward + 2) > limit:
            raise InvalidArgumentError(
                f"checkpoints=Auto(memory={size_text(self.memory)}) with backend {backend.name!r}: "
                f"{forward} states for options['max_steps']={max_steps} overflow its {limit.bit_length()}-bit loop "
                f"integers; raise memory or lower max_steps"
            )
        return forward

    def buffer(self, backend: Backend, max_steps: int, like: Any, stages_like: Any = None) -> StagedStore:
        xp = backend.namespace()
        slots = self._forward_slots(backend, max_steps, bytes_of(xp, like))
        # Known when it compiles: if every step's state fits, no position map is needed.
        positions = None if slots == max_steps else backend.buffer_of(xp.full((slots,), -1, dtype=xp.int32))
        return StagedStore(states=backend.buffer(slots, like), stride=1, positions=positions)

    def store(self, backend: Backend, buffer: StagedStore, index: Any, value: Any, stages: Any = None
              ) -> StagedStore:
        if buffer.positions is None:
            return buffer._replace(states=buffer.states.write(index, value))
        # No branch on the states: a conditional around them makes XLA copy them every step.
        xp = backend.namespace()
        positions, stride = buffer.positions.stack(buffer.positions.capacity), buffer.stride
        slots = buffer.positions.capacity - 1
        due = index % stride == 0
        full = due & (xp.sum(xp.astype(positions >= 0, xp.int32)) >= slots)
        doubled = stride * 2
        positions = xp.where(full & (positions % doubled != 0), -1, positions)
        stride = backend.select(full, doubled, stride)
        due = index % stride == 0
        slot = backend.select(due, xp.argmax(xp.astype(positions[:slots] < 0, xp.int32)), slots)
        return buffer._replace(states=buffer.states.write(slot, value),
                               positions=backend.buffer_of(positions).write(slot, backend.select(due, index, -1)),
                               stride=stride)

    def _checkpoints(self, backend: Backend, store: StagedStore, like: Any) -> Checkpoints:
        """The kept states as revolve's read-only checkpoints, in step order, with a stack
        that has room for the backward pass's entries and a budget of the backward pass's
        own slots (``slots`` left to the walk to allocate)."""
        xp = backend.namespace()
        forward = store.positions.capacity
        steps = store.positions.stack(forward)
        spare = max(min(self._slots(bytes_of(xp, like)) - forward, forward), 2) - 1
        order = xp.argsort(xp.where(steps < 0, 2**31 - 1, steps))
        positions = xp.concat([xp.take(steps, order), xp.zeros((spare + 1,), dtype=xp.int32)])
        count = xp.sum(xp.astype(steps[: forward - 1] >= 0, xp.int32))
        kept = (store.states, backend.buffer_of(order))
        return Checkpoints(None, count, backend.buffer_of(positions), spare, kept=kept)

    def costs(self, backend: Backend, buffer: StagedStore, n_steps: Any, value_bytes: int, stages_bytes: int,
              scalar_bytes: int, evals_per_step: int) -> tuple[Any, Any, Any]:
        scalars = n_steps * 2 * scalar_bytes
        if buffer.positions is None:
            return n_steps * value_bytes + scalars, 0, Schedule.STEPS
        slots = buffer.states.capacity

        def recomputed() -> tuple[Any, Any]:
            checkpoints = self._checkpoints(backend, buffer, buffer.states.read(0))
            return revolve_counts_from(backend, n_steps, checkpoints, peak=slots)

        peak, advanced, schedule = _held_and_recomputed(backend, buffer.stride, n_steps, recomputed)
        return peak * value_bytes + scalars, advanced * evals_per_step, schedule

    def walk(self, backend: Backend, xp: Any, trajectory: Any, outputs: Any, start: WalkState,
             steps: BackwardSteps) -> WalkState:
        store = trajectory.states
        if store.positions is None:
            return walk_every_step(backend, xp, trajectory, store.states, outputs, start, steps.taking(FromState()))
        # One walk for every case (a second would double the compiled program): where nothing
        # was dropped each step reverses at once from its own kept state. The kept states stay
        # read-only (a write would copy them); recomputed ones go to slots of the walk's own.
        checkpoints = self._checkpoints(backend, store, outputs.first)
        scratch = backend.buffer(checkpoints.budget + 1, outputs.first)
        return revolve_walk(backend, xp, trajectory, checkpoints._replace(slots=scratch), outputs, start, steps)
