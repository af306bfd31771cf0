"""Checkpoint policies: what the forward pass keeps for the backward pass, and how the
backward pass gets each step's state back.

The recording gradient modes (``"symplectic"``, ``"checkpoint"``) walk the accepted
steps in reverse; a policy decides where the states of those steps live (device memory,
host memory), whether the stage states are kept too, or whether only a bounded number
of states is kept and the others are recomputed (binomial checkpointing, Griewank's
revolve). The schedules are generic; the storage comes from the backend
(:meth:`Backend.host_buffer`, :meth:`Backend.to_host`, :meth:`Backend.to_device`).

Times and step sizes of every accepted step are always recorded (two scalars a step):
recomputation reuses them, so a recomputed step is the forward step bit for bit and
the step-size controller is never run again.
"""

from __future__ import annotations

import abc
import dataclasses
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from ._backend import Backend, Buffer
from ._complex import itemsize
from ._solution import Schedule
from ._walk import BackwardStep, BackwardSteps, FromState, FromStoredStages, WalkState
from .errors import InvalidArgumentError


class CheckpointPolicy(abc.ABC):
    """What the forward pass keeps for the backward pass of ``"symplectic"``/``"checkpoint"``.

    Pass an instance or its name as ``checkpoints=`` to :func:`symadj.solve`/:func:`symadj.odeint`,
    or to :class:`symadj.Symplectic`/:class:`symadj.CheckpointedBackprop`: :class:`Auto` (``"auto"``,
    the default, a memory budget), :class:`AllSteps` (``"all"``), :class:`Offload`
    (``"offload"``), :class:`Stages` (``"stages"``) and :class:`Revolve` (``"revolve:K"``).
    Every policy gives the same gradient; they trade memory for time.

    Examples:
        >>> import symadj
        >>> symadj.as_checkpoint_policy("revolve:8")
        Revolve(budget=8)
        >>> symadj.as_checkpoint_policy(symadj.Offload())
        Offload()
    """

    name: str
    #: Whether the stage states of each step are kept (only ``"symplectic"`` uses them).
    stages: bool = False
    #: What :attr:`Stats.schedule` reports for this policy.
    schedule: Schedule = Schedule.STEPS

    def validate(self, mode_name: str) -> None:
        """Raise :class:`InvalidArgumentError` if the gradient mode ``mode_name`` cannot use this policy."""

    def for_mode(self, mode_name: str) -> CheckpointPolicy:
        """This policy as the gradient mode ``mode_name`` uses it (validated)."""
        self.validate(mode_name)
        return self

    def check(self, backend: Backend, max_steps: int) -> None:
        """Raise :class:`InvalidArgumentError` if ``backend`` cannot give this policy's storage."""

    def keeps_stages(self, backend: Backend) -> bool:
        """Whether the forward pass hands :meth:`store` each step's stacked stage states."""
        return self.stages

    # -- forward --------------------------------------------------------------
    @abc.abstractmethod
    def buffer(self, backend: Backend, max_steps: int, like: Any, stages_like: Any = None) -> Any:
        """The empty storage the forward pass fills, for states like ``like`` (and stage
        stacks like ``stages_like`` where :meth:`keeps_stages`)."""

    @abc.abstractmethod
    def store(self, backend: Backend, buffer: Any, index: Any, value: Any, stages: Any = None) -> Any:
        """The storage with the ``index``-th accepted step's starting state ``value`` (and
        its stacked stage states ``stages``) stored, or not."""

    @abc.abstractmethod
    def costs(self, backend: Backend, buffer: Any, n_steps: Any, value_bytes: int, stages_bytes: int,
              scalar_bytes: int, evals_per_step: int) -> tuple[Any, Any, Any]:
        """Checkpoint bytes held at peak, the extra function evaluations of the backward
        pass, and the :class:`Schedule` that ran, for the filled storage ``buffer``."""

    # -- backward -------------------------------------------------------------
    @abc.abstractmethod
    def walk(self, backend: Backend, xp: Any, trajectory: Any, outputs: Any, start: WalkState,
             steps: BackwardSteps) -> WalkState:
        """The walk's state at ``t[0]`` (λ there, the parameters' cotangents): the accepted
        steps walked in reverse from ``start``.

        ``outputs`` is the outputs' cotangent (:class:`symadj._output_cotangents.OutputsCotangent`);
        ``steps.taking(source)`` reverses one step, its stage states coming from ``source``
        (:class:`FromState` where the walk reads the step's state, :class:`FromStoredStages`
        where it reads the stage states this policy stored); ``steps.advance`` recomputes a step.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


@dataclass(frozen=True, repr=False)
class AllSteps(CheckpointPolicy):
    """``"all"``: the state at every accepted step, in device memory.

    Memory N·|y| for N accepted steps; no recomputation of states.

    Examples:
        >>> import torch, symadj
        >>> y0 = torch.ones(2, requires_grad=True)
        >>> sol = symadj.solve(lambda t, y: -y, y0, [0.0, 1.0], checkpoints=symadj.AllSteps())
        >>> int(sol.stats.extra_fevals)
        0
    """

    name = "all"

    def buffer(self, backend, max_steps, like, stages_like=None):
        return backend.buffer(max_steps, stages_like if self.stages else like)

    def store(self, backend, buffer, index, value, stages=None):
        return buffer.write(index, stages if self.stages else value)

    def read(self, backend: Backend, buffer: Any, index: Any, like: Any) -> Any:
        return buffer.read(index)

    def costs(self, backend, buffer, n_steps, value_bytes, stages_bytes, scalar_bytes, evals_per_step):
        return n_steps * ((stages_bytes if self.stages else value_bytes) + 2 * scalar_bytes), 0, self.schedule

    def walk(self, backend, xp, trajectory, outputs, start, steps):
        source = FromStoredStages(steps.stored) if self.stages else FromState()
        return walk_every_step(backend, xp, trajectory, trajectory.states,
                               lambda buffer, n: self.read(backend, buffer, n, outputs.first), outputs, start,
                               steps.taking(source))

@dataclass(frozen=True, repr=False)
class Offload(AllSteps):
    """``"offload"``: the state at every accepted step, in host memory.

    Device memory for checkpoints becomes O(1) steps. PyTorch copies each state to pinned
    host memory asynchronously (pinned only when CUDA is available) and brings it back one
    step ahead of the backward walk; JAX keeps the buffer in the host memory space
    (``jax.memory.Space.Host``) and raises where the platform has none. Where the device
    is the host (the CPU) the states stay where they are.

    Examples:
        >>> import torch, symadj
        >>> y0 = torch.ones(2, requires_grad=True)
        >>> symadj.odeint(lambda t, y: -y, y0, [0.0, 1.0], checkpoints="offload")[-1].sum().backward()
        >>> [round(g, 5) for g in y0.grad.tolist()]
        [0.36788, 0.36788]
    """

    name = "offload"
    schedule = Schedule.OFFLOAD

    def check(self, backend, max_steps):
        backend.check_host_storage()

    def buffer(self, backend, max_steps, like, stages_like=None):
        return backend.host_buffer(max_steps, like)

    def store(self, backend, buffer, index, value, stages=None):
        return buffer.write(index, backend.to_host(value))

    def read(self, backend, buffer, index, like):
        return backend.to_device(buffer.read(index), like)


@dataclass(frozen=True, repr=False)
class Stages(AllSteps):
    """``"stages"``: every accepted step's stage states too, for ``gradient="symplectic"``.

    Memory N·s·|y| instead of N·|y| (still independent of the network's size); the
    backward pass takes each step's vector–Jacobian products without recomputing its
    stages first, the fastest exact mode when the state is small next to the network's
    activations. Only the stages that receive a cotangent are kept.

    Raises:
        InvalidArgumentError: (from :func:`symadj.solve`) with a mode other than ``"symplectic"``.

    Examples:
        >>> import torch, symadj
        >>> y0 = torch.ones(2, requires_grad=True)
        >>> symadj.odeint(lambda t, y: -y, y0, [0.0, 1.0], checkpoints="stages")[-1].sum().backward()
        >>> [round(g, 5) for g in y0.grad.tolist()]
        [0.36788, 0.36788]
    """

    name = "stages"
    stages = True
    schedule = Schedule.STAGES

    def validate(self, mode_name):
        if mode_name != "symplectic":
            raise InvalidArgumentError(
                f"checkpoints='stages' keeps the stage states the symplectic adjoint uses; it does not "
                f"apply to gradient={mode_name!r}: use gradient='symplectic', or checkpoints='all'"
            )


@dataclass(frozen=True)
class Revolve(CheckpointPolicy):
    """``"revolve:K"``: binomial checkpointing, at most ``budget`` states held at once.

    The forward pass records the time and step size of every accepted step (two scalars
    each) and the states of the first ``budget`` steps only. When the solve took N >
    ``budget`` steps, the backward pass runs Griewank's revolve schedule over the now
    known N steps from the initial state: it recomputes forward segments with the
    recorded step sizes (bit for bit the forward steps; the controller is not run again),
    keeps at most ``budget`` states, and advances a minimal number of steps,
    t·N − C(K+t, t−1) for K = ``budget`` and the least t with C(K+t, t) ≥ N. When N ≤
    ``budget`` every state was kept and nothing is recomputed. ``Stats.extra_fevals``
    reports the function evaluations of those recomputations.

    Args:
        budget: the most states held at once (K ≥ 1), the initial state included.

    Raises:
        InvalidArgumentError: ``budget`` is not a positive integer.

    Examples:
        >>> import torch, symadj
        >>> y0 = torch.ones(2, requires_grad=True)
        >>> sol = symadj.solve(lambda t, y: -y, y0, [0.0, 4.0], method="rk4",
        ...                    options={"step_size": 0.5}, checkpoints=symadj.Revolve(budget=3))
        >>> sol.ys[-1].sum().backward()
        >>> int(sol.stats.n_accepted), int(sol.stats.extra_fevals)  # 8 steps, 11 recomputed
        (8, 44)
    """

    budget: int
    name = "revolve"
    schedule = Schedule.REVOLVE

    def __post_init__(self) -> None:
        if not isinstance(self.budget, int) or isinstance(self.budget, bool) or self.budget < 1:
            raise InvalidArgumentError(
                f"Revolve(budget=...) is the most states held at once, a positive integer; got {self.budget!r}"
            )

    def check(self, backend, max_steps):
        limit = backend.loop_integer_max
        # The schedule's binomials reach about 2·N² before they are compared with N.
        if limit is not None and 2 * max_steps * max_steps > limit:
            bound = math.isqrt(limit // 2)
            raise InvalidArgumentError(
                f"checkpoints='revolve:{self.budget}' with backend {backend.name!r} computes its schedule "
                f"in {limit.bit_length()}-bit loop integers, enough for options['max_steps'] <= {bound}, "
                f"got {max_steps}; lower max_steps or split the time interval into several solves"
            )

    def buffer(self, backend, max_steps, like, stages_like=None):
        return backend.buffer(self.budget, like)

    def store(self, backend, buffer, index, value, stages=None):
        return backend.cond(index < self.budget, lambda b: b.write(index, value),
                            lambda b: b, buffer)

    def costs(self, backend, buffer, n_steps, value_bytes, stages_bytes, scalar_bytes, evals_per_step):
        peak, advanced = revolve_counts(backend, n_steps, self.budget)
        return peak * value_bytes + n_steps * 2 * scalar_bytes, advanced * evals_per_step, self.schedule

    def walk(self, backend, xp, trajectory, outputs, start, steps):
        held = _held_after_forward(backend, trajectory.n_steps, self.budget)
        return revolve_walk(backend, xp, trajectory, trajectory.states, held,
                            _positions(backend, self.budget, 1), outputs, start, steps, self.budget)


_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_bytes(value: int | str, what: str = "memory") -> int:
    """A size in bytes from an integer or a string such as ``"512MiB"``, ``"2GiB"``, ``"100MB"``.

    Args:
        value: bytes, or a number with a unit (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB).
        what: the argument's name, for the error message.

    Returns:
        The size in bytes.

    Raises:
        InvalidArgumentError: not a non-negative size, naming ``what``.

    Examples:
        >>> import symadj
        >>> symadj.parse_bytes("1.5GiB"), symadj.parse_bytes("64 MiB"), symadj.parse_bytes(4096)
        (1610612736, 67108864, 4096)
    """
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", value)
        if match and match.group(2).upper() in _UNITS:
            return int(float(match.group(1)) * _UNITS[match.group(2).upper()])
    raise InvalidArgumentError(
        f"{what}={value!r} is not a size: give bytes as an integer or a string such as '512MiB', '2GiB' or '100MB'"
    )


def _size(bytes_: int) -> str:
    for unit in ("GiB", "MiB", "KiB"):
        if bytes_ >= _UNITS[unit.upper()]:
            return f"{bytes_ / _UNITS[unit.upper()]:.3g}{unit}"
    return f"{bytes_}B"


class _AutoStore(NamedTuple):
    """What :class:`Auto` keeps: the stacked stage states of every step while they fit
    (eager backends, ``stacks``; ``None`` once given up), else every ``stride``-th state in
    ``states``. An eager backend fills ``count`` slots in step order; a staged one writes each
    kept state into a free slot, ``positions`` holding each slot's step (−1: free), so that
    dropping states moves no data (its last slot takes the states not kept)."""

    stacks: Any
    states: Any
    stride: Any
    count: Any
    positions: Any


@dataclass(frozen=True)
class Auto(CheckpointPolicy):
    """``"auto"`` (the default): the fastest exact schedule that keeps at most ``memory`` bytes.

    Decided as the steps come, since their number is known only at the end: with
    ``gradient="symplectic"`` on an eager backend (PyTorch) it keeps every step's stage
    states while they fit (no recomputation at all, as ``"stages"``); then the state at
    every step (as ``"all"``); when those fill the budget too it keeps every other one and
    from then on every 2nd, 4th, ... step (the stride doubles each time the budget fills),
    and the backward pass recomputes the steps in between from the nearest kept state,
    with the budget's free slots, by Griewank's binomial schedule. Recomputation stays
    about one forward pass while the steps number fewer than about the square of the
    states that fit. The gradient is the same whatever it picks, to the bit.

    A staged backend (JAX) fixes its storage when it compiles: it allocates
    ``min(memory // state bytes, max_steps)`` states, never ``max_steps`` states of a large
    state, and keeps no stage states. ``Stats.schedule`` says which schedule ran,
    ``Stats.checkpoint_bytes`` the bytes held at peak and ``Stats.extra_fevals`` the
    evaluations recomputed.

    Args:
        memory: the budget, in bytes or as a string (``"512MiB"``, ``"2GiB"``); ``None``
            takes the backend's default (1 GiB with PyTorch, allocated only as needed;
            48 MiB with JAX, allocated in full).

    Raises:
        InvalidArgumentError: ``memory`` is not a size, or (from :func:`symadj.solve`) it
            holds fewer than two states, naming the smallest budget that works.

    Examples:
        >>> import torch, symadj
        >>> y0 = torch.ones(1000, requires_grad=True)
        >>> sol = symadj.solve(lambda t, y: -y, y0, [0.0, 4.0], method="rk4", options={"step_size": 0.1},
        ...                    checkpoints=symadj.Auto(memory="40KB"))
        >>> sol.ys[-1].sum().backward()
        >>> symadj.Schedule(int(sol.stats.schedule)).name, int(sol.stats.extra_fevals) > 0
        ('THINNED', True)
    """

    memory: int | str | None = None
    stage_states: bool = True
    name = "auto"

    def __post_init__(self) -> None:
        if self.memory is not None:
            object.__setattr__(self, "memory", parse_bytes(self.memory, "Auto(memory=...)"))

    def for_mode(self, mode_name):
        # Stage states serve only the symplectic adjoint's products.
        return self if mode_name == "symplectic" else dataclasses.replace(self, stage_states=False)

    def budget(self, backend: Backend) -> int:
        """The budget in bytes, for ``backend``."""
        return self.memory if self.memory is not None else backend.default_checkpoint_memory

    def keeps_stages(self, backend):
        return self.stage_states and not backend.staged_loops

    def _slots(self, backend: Backend, state_bytes: int) -> int:
        """The states the budget holds, refused below what a backward pass needs."""
        budget = self.budget(backend)
        slots = budget // state_bytes
        # A staged backend needs two slots more: one takes the states not kept, one the
        # backward pass's recomputed states not kept.
        least = 4 if backend.staged_loops else 2
        if slots < least:
            raise InvalidArgumentError(
                f"checkpoints=Auto(memory={_size(budget)}) holds {slots} state(s) of {_size(state_bytes)}; the "
                f"backward pass needs at least {least}: give memory={_size(least * state_bytes)} or more"
            )
        return slots

    def _forward_slots(self, backend: Backend, max_steps: int, state_bytes: int) -> int:
        """The slots the forward pass fills: every step's state if they fit; else an eager
        backend's whole budget (its backward pass recomputes in place), a staged backend's half
        (the other half is the backward pass's; one slot of each takes what is not kept)."""
        slots = self._slots(backend, state_bytes)
        if not backend.staged_loops:
            return max_steps if slots >= max_steps else slots - slots % 2
        if slots >= max_steps:
            return max_steps
        forward = slots // 2
        limit = backend.loop_integer_max
        # The binomial schedule's integers reach about N·(2N/K + K) for N steps in K slots.
        if limit is not None and max_steps * (2 * max_steps // forward + forward + 2) > limit:
            raise InvalidArgumentError(
                f"checkpoints=Auto(memory={_size(self.budget(backend))}) with backend {backend.name!r}: "
                f"{forward} states for options['max_steps']={max_steps} overflow its {limit.bit_length()}-bit loop "
                f"integers; raise memory or lower max_steps"
            )
        return forward

    def buffer(self, backend, max_steps, like, stages_like=None):
        slots = self._forward_slots(backend, max_steps, _bytes_of(backend, like))
        if backend.staged_loops:
            xp = backend.namespace()
            # Known when it compiles: if every step's state fits, no position map is needed.
            positions = None if slots == max_steps else backend.buffer_of(xp.full((slots,), -1, dtype=xp.int32))
            return _AutoStore(stacks=None, states=backend.buffer(slots, like), stride=1, count=0, positions=positions)
        stacks = None
        if stages_like is not None:
            stacks = backend.buffer(min(self.budget(backend) // _bytes_of(backend, stages_like), max_steps),
                                    stages_like)
        return _AutoStore(stacks=stacks, states=backend.buffer(slots, like), stride=1, count=0, positions=None)

    def store(self, backend, buffer, index, value, stages=None):
        if backend.staged_loops:
            if buffer.positions is None:
                return buffer._replace(states=buffer.states.write(index, value))
            return self._store_staged(backend, buffer, index, value)
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

    def _store_staged(self, backend: Backend, buffer: _AutoStore, index: Any, value: Any) -> _AutoStore:
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

    def _staged_stack(self, backend: Backend, buffer: _AutoStore, like: Any) -> tuple[Any, Any, Any, int]:
        """For a staged backend's backward pass: the order of the kept slots by step, the stack
        of their steps (with room for the backward pass's), their number, and its own slots."""
        xp = backend.namespace()
        forward = buffer.positions.capacity
        steps = buffer.positions.stack(forward)
        spare = max(min(self._slots(backend, _bytes_of(backend, like)) - forward, forward), 2) - 1
        order = xp.argsort(xp.where(steps < 0, 2**31 - 1, steps))
        positions = xp.concat([xp.take(steps, order), xp.zeros((spare + 1,), dtype=xp.int32)])
        count = xp.sum(xp.astype(steps[: forward - 1] >= 0, xp.int32))
        return backend.buffer_of(order), backend.buffer_of(positions), count, spare

    def costs(self, backend, buffer, n_steps, value_bytes, stages_bytes, scalar_bytes, evals_per_step):
        scalars = n_steps * 2 * scalar_bytes
        if buffer.stacks is not None:
            return n_steps * stages_bytes + scalars, 0, Schedule.STAGES
        if backend.staged_loops and buffer.positions is None:
            return n_steps * value_bytes + scalars, 0, Schedule.STEPS
        slots = buffer.states.capacity
        thinned = buffer.stride > 1

        def recomputed(_: Any) -> tuple:
            if not backend.staged_loops:
                positions = _positions(backend, slots, buffer.stride)
                return revolve_counts(backend, n_steps, slots, buffer.count, positions, peak=slots)
            _, positions, count, spare = self._staged_stack(backend, buffer, buffer.states.read(0))
            return revolve_counts(backend, n_steps, spare, count, positions, peak=slots, kept=True)

        peak, advanced = backend.cond(thinned, recomputed, lambda kept: kept, (n_steps, 0))
        schedule = backend.select(thinned, int(Schedule.THINNED), int(Schedule.STEPS))
        return peak * value_bytes + scalars, advanced * evals_per_step, schedule

    def walk(self, backend, xp, trajectory, outputs, start, steps):
        store = trajectory.states
        if store.stacks is not None:
            return walk_every_step(backend, xp, trajectory, store.stacks, _read, outputs, start,
                                   steps.taking(FromStoredStages(steps.stored)))

        if backend.staged_loops and store.positions is None:
            return walk_every_step(backend, xp, trajectory, store.states, _read, outputs, start,
                                   steps.taking(FromState()))
        if backend.staged_loops:
            # One walk for every case (a second would double the compiled program): where nothing
            # was dropped each step reverses at once from its own kept state. The kept states stay
            # read-only (a write would copy them); recomputed ones go to slots of the walk's own.
            order, positions, count, spare = self._staged_stack(backend, store, outputs.first)
            scratch = backend.buffer(spare + 1, outputs.first)
            return revolve_walk(backend, xp, trajectory, scratch, count, positions, outputs, start, steps, spare,
                                kept=(store.states, order))
        if int(store.stride) == 1:  # nothing was dropped: slot n holds step n
            return walk_every_step(backend, xp, trajectory, store.states, _read, outputs, start,
                                   steps.taking(FromState()))
        slots = store.states.capacity
        return revolve_walk(backend, xp, trajectory, store.states, store.count,
                            _positions(backend, slots, store.stride), outputs, start, steps, slots)

    def __repr__(self) -> str:
        return "Auto()" if self.memory is None else f"Auto(memory={_size(self.memory)!r})"


_POLICIES: dict[str, type[CheckpointPolicy]] = {
    policy.name: policy for policy in (AllSteps, Offload, Stages, Auto)
}


def as_checkpoint_policy(policy: str | CheckpointPolicy) -> CheckpointPolicy:
    """Turn a name (``"auto"``, ``"auto:<memory>"``, ``"all"``, ``"offload"``, ``"stages"``,
    ``"revolve:K"``) into its policy.

    Args:
        policy: a :class:`CheckpointPolicy` (returned as it is) or its name.

    Returns:
        The policy object.

    Raises:
        InvalidArgumentError: an unknown name, or ``"revolve"`` without a budget.

    Examples:
        >>> import symadj
        >>> symadj.as_checkpoint_policy("stages"), symadj.as_checkpoint_policy("revolve:16")
        (Stages(), Revolve(budget=16))
    """
    if isinstance(policy, CheckpointPolicy):
        return policy
    known = ("'auto', 'auto:<memory>' (e.g. 'auto:2GiB'), 'all', 'offload', 'stages', 'revolve:K' "
             "(K a positive integer) or a CheckpointPolicy")
    if not isinstance(policy, str):
        raise InvalidArgumentError(f"checkpoints must be {known}, got {type(policy).__name__}")
    if policy in _POLICIES:
        return _POLICIES[policy]()
    name, _, budget = policy.partition(":")
    if name == "auto" and budget:
        return Auto(memory=budget.strip())
    if name == "revolve":
        if budget.strip().isdigit():
            return Revolve(budget=int(budget))
        raise InvalidArgumentError(
            f"checkpoints={policy!r}: give the most states to hold, e.g. 'revolve:16' (a positive integer)"
        )
    raise InvalidArgumentError(f"checkpoints={policy!r} is not a checkpoint policy; use {known}")


# -- the revolve schedule ------------------------------------------------------------
#
# The backward pass holds a stack of checkpoints at steps p_0 = 0 < p_1 < ... < p_top and
# has reversed every step from `end` on. With p = p_top, L = end − p steps left above it and
# s = K − top checkpoints available (the one at p included), it advances a copy of the state
# at p to the target of `revolve_target`. A target of end − 1 means the step end − 1 is
# reversed at once (and the checkpoint at p dropped when p = end − 1); any other target is
# pushed as a new checkpoint. This is Griewank's recursive binomial schedule unrolled: with
# t the least integer such that C(s+t, t) ≥ L, the first split
# m = max(1, L − C(s−1+t, t), C(s+t−2, t−2)) leaves at most t sweeps to the part above m (with
# s − 1 checkpoints) and t − 1 to the part below it, which is optimal: the schedule advances
# t·L − C(s+t, t−1) steps (Griewank & Walther 2000, "Algorithm 799: revolve").


def revolve_target(backend: Backend, p: Any, end: Any, top: Any, budget: int) -> Any:
    """The step the next forward segment from the checkpoint at ``p`` stops at."""
    length = end - p
    available = budget - top
    available = backend.select(available < length, available, length)

    def more(carry: tuple) -> Any:
        return carry[1] < length

    def grow(carry: tuple) -> tuple:
        t, reach, previous, _, below = carry
        t = t + 1
        # Exact integer recurrences: C(s+t, t) = C(s+t−1, t−1)·(s+t)/t, and the same for s−1.
        return t, reach * (available + t) // t, reach, previous, below * (available - 1 + t) // t

    # (t, C(s+t, t), C(s+t−1, t−1), C(s+t−2, t−2), C(s−1+t, t)), binomials of negative t being 0.
    _, _, _, two_below, below = backend.while_loop(more, grow, (0, 1, 0, 0, 1), max_iterations=2**31 - 1)
    first = length - below
    first = backend.select(first < two_below, two_below, first)
    # One step left: it is reversed from the checkpoint itself.
    return backend.select(length == 1, p, p + backend.select(first < 1, 1, first))


def _held_after_forward(backend: Backend, n_steps: Any, budget: int) -> Any:
    return backend.select(n_steps <= budget, n_steps, 1)


def _positions(backend: Backend, budget: int, stride: Any) -> Any:
    """Checkpoint slot i holds step i·stride after the forward pass."""
    buffer = backend.buffer(budget, 0)
    return backend.fori_loop(0, budget, lambda i, b: b.write(i, i * stride), buffer)


class RevolveActions(NamedTuple):
    """What a run of :func:`revolve` does at each action of the schedule, on two parts of its
    carry: ``store`` (what advancing and pushing change: the states held, or the counts)
    and ``state`` (what reversing a step changes: the adjoint, or nothing).

    ``advance(store, p, target, entry, base) -> (store, value)``: a forward segment from the
    stack's ``entry``, a checkpoint at step ``p``, to step ``target``; ``value`` is what it
    leaves at ``target`` (the state, or ``None`` where only counted).
    ``push(store, entry, base, slot, value, reverses) -> store``: ``value`` becomes the
    stack's ``entry``, in ``slot``. A run with ``kept`` checkpoints calls it at every action
    (``reverses`` then says the step is reversed instead and ``slot`` is the spare one).
    ``reverse(state, n, value) -> state``: step ``n`` reversed from its starting state ``value``.
    ``base`` is the number of read-only checkpoints still held at the bottom of the stack.
    """

    advance: Callable[[Any, Any, Any, Any, Any], tuple[Any, Any]]
    push: Callable[[Any, Any, Any, Any, Any, Any], Any]
    reverse: Callable[[Any, Any, Any], Any]


class _Revolve(NamedTuple):
    end: Any
    top: Any
    base: Any
    positions: Any
    store: Any
    state: Any


def revolve(backend: Backend, n_steps: Any, held: Any, positions: Any, budget: Any, kept: bool, store: Any,
            state: Any, actions: RevolveActions) -> tuple[Any, Any]:
    """Griewank's schedule over ``n_steps`` steps, from the ``held`` checkpoints at steps
    ``positions`` (a stack: entry i at step ``positions[i]``), with at most ``budget``
    checkpoints; ``actions`` says what each action does. Returns the final ``store`` and ``state``.

    With ``kept``, the ``held`` checkpoints are read-only and ``budget`` counts the further
    slots, the last of which (``budget``) takes the pushes a step does not need, and the
    stack's last entry their positions: a staged backend then runs no branch around the
    store, which would copy it at every step.
    """
    start = _Revolve(end=n_steps, top=held - 1, base=held if kept else 0, positions=positions, store=store,
                     state=state)

    def body(c: _Revolve) -> _Revolve:
        p = c.positions.read(c.top)
        target = revolve_target(backend, p, c.end, c.top, c.base + budget if kept else budget)
        store, value = actions.advance(c.store, p, target, c.top, c.base)
        n = c.end - 1
        reverses = target == n
        # The checkpoint at p is dropped once its own step is reversed.
        top_reversed = backend.select(p == n, c.top - 1, c.top)
        if not kept:
            def reverse(c: _Revolve) -> _Revolve:
                return c._replace(end=n, top=top_reversed, state=actions.reverse(c.state, n, value))

            def push(c: _Revolve) -> _Revolve:
                top = c.top + 1
                return c._replace(top=top, positions=c.positions.write(top, target),
                                  store=actions.push(c.store, top, c.base, top, value, False))

            return backend.cond(reverses, reverse, push, c._replace(store=store))
        # Branch-free push (to the spare slot and entry when the step reverses instead).
        slot = backend.select(reverses, budget, c.top + 1 - c.base)
        entry = backend.select(reverses, c.positions.capacity - 1, c.top + 1)
        store = actions.push(store, c.top + 1, c.base, slot, value, reverses)
        positions = c.positions.write(entry, target)

        def reversed_(small: tuple) -> tuple:
            return n, top_reversed, actions.reverse(small[2], n, value)

        end, top, state = backend.cond(reverses, reversed_, lambda small: small, (c.end, c.top, c.state))
        top = backend.select(reverses, top, c.top + 1)
        return _Revolve(end=end, top=top, base=backend.select(top + 1 < c.base, top + 1, c.base),
                        positions=positions, store=store, state=state)

    c = backend.while_loop(lambda c: c.end > 0, body, start, max_iterations=2**31 - 1)
    return c.store, c.state


def revolve_counts(backend: Backend, n_steps: Any, budget: Any, held: Any = None, positions: Any = None,
                   peak: Any = None, kept: bool = False) -> tuple[Any, Any]:
    """The most states revolve holds at once and the steps it recomputes, for ``n_steps`` steps
    from the ``held`` checkpoints at steps ``positions`` (by default :class:`Revolve`'s: the
    first ``budget`` steps kept, only step 0 used where the steps outnumber them); ``peak``
    is what the forward pass held (by default ``budget``, or every step where fewer). With
    ``kept``, the held checkpoints are read-only and ``budget`` counts the further slots, as
    in :func:`revolve_walk`.

    Runs :func:`revolve`, the schedule of :func:`revolve_walk`, on step indices alone.
    """
    if held is None:
        held, positions = _held_after_forward(backend, n_steps, budget), _positions(backend, budget, 1)
    if peak is None:
        peak = backend.select(n_steps <= budget, n_steps, budget)
    held_by_forward = peak

    def advance(store: tuple, p: Any, target: Any, entry: Any, base: Any) -> tuple[tuple, None]:
        peak, advanced = store
        return (peak, advanced + (target - p)), None

    def push(store: tuple, entry: Any, base: Any, slot: Any, value: None, reverses: Any) -> tuple:
        peak, advanced = store
        held = held_by_forward + entry + 1 - base if kept else entry + 1
        return backend.select(reverses, peak, backend.select(held > peak, held, peak)), advanced

    (peak, advanced), _ = revolve(backend, n_steps, held, positions, budget, kept, (peak, 0), (),
                                  RevolveActions(advance, push, lambda state, n, value: state))
    return peak, advanced


def revolve_walk(backend: Backend, xp: Any, trajectory: Any, slots: Any, held: Any, positions: Any, outputs: Any,
                 start: WalkState, steps: BackwardSteps, budget: Any, kept: tuple[Any, Any] | None = None
                 ) -> WalkState:
    """The backward walk of :class:`Revolve`: at most ``budget`` states, segments recomputed,
    starting from ``held`` checkpoints at steps ``positions`` (a stack: entry i at step
    ``positions[i]``), whose states are in ``slots`` (entry i in slot i).

    With ``kept = (states, order)``, the ``held`` checkpoints are instead read-only states
    (entry i is ``states[order[i]]``), and the entries pushed above them go to ``slots``
    (entry i in slot i − the entries still held below it); ``budget`` then counts the slots
    of ``slots`` but its last, which takes the writes a step does not need (see :func:`revolve`).
    """
    times, sizes = trajectory.times, trajectory.steps
    step_adjoint = steps.taking(FromState())

    def read(slots: Any, entry: Any, base: Any) -> Any:
        if kept is None:
            return slots.read(entry)
        states, order = kept
        below = backend.select(entry < base, entry, 0)
        above = backend.select(entry < base, 0, entry - base)
        return xp.where(entry < base, states.read(order.read(below)),
                        slots.read(above))

    def forward(slots: Any, p: Any, target: Any, entry: Any, base: Any) -> tuple[Any, Any]:
        def step(n: Any, y: Any) -> Any:
            return steps.advance(times.read(n), sizes.read(n), y)

        return slots, backend.fori_loop(p, target, step, read(slots, entry, base))

    def push(slots: Any, entry: Any, base: Any, slot: Any, y: Any, reverses: Any) -> Any:
        return slots.write(slot, y)

    def reverse(state: tuple, n: Any, y: Any) -> tuple:
        k, walk = state
        in_step, k = outputs.of_step(n, k)
        return k, step_adjoint(times.read(n), sizes.read(n), y, walk, in_step)

    _, (_, walked) = revolve(backend, trajectory.n_steps, held, positions, budget, kept is not None, slots,
                             (outputs.last_index, start), RevolveActions(forward, push, reverse))
    return walked._replace(lam=walked.lam + outputs.first)


# -- helpers ---------------------------------------------------------------------------


def _read(buffer: Buffer, index: Any) -> Any:
    return buffer.read(index)


def walk_every_step(backend: Backend, xp: Any, trajectory: Any, states: Any, read: Callable[[Any, Any], Any],
                    outputs: Any, start: WalkState, step_adjoint: BackwardStep) -> WalkState:
    """The backward walk over ``states``, which holds every accepted step's value
    (``read(states, n)`` gives step n's)."""
    n_steps = trajectory.n_steps

    def fetch(n: Any) -> Any:
        # Clamped: the last iteration fetches step 0 again rather than step -1.
        return read(states, backend.select(n > 0, n, 0))

    def body(i: Any, carry: tuple) -> tuple:
        walk, k, y = carry
        n = n_steps - 1 - i
        # Started one step ahead, so that a transfer from host memory overlaps this step.
        y_ahead = fetch(n - 1)
        in_step, k = outputs.of_step(n, k)
        walk = step_adjoint(trajectory.times.read(n), trajectory.steps.read(n), y, walk, in_step)
        return walk, k, y_ahead

    # An eager buffer holds exactly the recorded steps, possibly none (a failed solve); a
    # staged one has every slot, and the loop carries a value of the entries' shape.
    first = fetch(n_steps - 1) if backend.staged_loops or bool(n_steps > 0) else None
    walked, _, _ = backend.fori_loop(0, n_steps, body, (start, outputs.last_index, first))
    return walked._replace(lam=walked.lam + outputs.first)


def _bytes_of(backend: Backend, x: Any) -> int:
    return math.prod(x.shape) * itemsize(backend.namespace(), x.dtype)
