"""Checkpoint policies: what the forward pass keeps for the backward pass, and how the
backward pass gets each step's state back.

The recording gradient modes (``"symplectic"``, ``"checkpoint"``) walk the accepted
steps in reverse; a policy decides where the states of those steps live (device memory,
host memory), whether the stage states are kept too, or whether only a bounded number
of states is kept and the others are recomputed (binomial checkpointing, Griewank's
revolve). The schedules are generic (the walks in :mod:`symadj._walks`, the revolve schedule
in :mod:`symadj._revolve`, :class:`Auto`'s two storage strategies in :mod:`symadj._auto_storage`);
the storage comes from the backend (:meth:`Backend.host_buffer`, :meth:`Backend.to_host`,
:meth:`Backend.to_device`).

Times and step sizes of every accepted step are always recorded (two scalars a step):
recomputation reuses them, so a recomputed step is the forward step bit for bit and
the step-size controller is never run again.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any

from ._auto_storage import EagerAuto, StagedAuto
from ._backend import Backend
from ._revolve import revolve_counts, revolve_start
from ._sizes import parse_bytes, size_text
from ._solution import Schedule
from ._walk import BackwardSteps, FromState, FromStoredStages, WalkState
from ._walks import revolve_walk, walk_every_step
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
        return walk_every_step(backend, xp, trajectory, trajectory.states, outputs, start, steps.taking(source),
                               lambda buffer, n: self.read(backend, buffer, n, outputs.first))


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
        checkpoints = revolve_start(backend, trajectory.n_steps, self.budget, trajectory.states)
        return revolve_walk(backend, xp, trajectory, checkpoints, outputs, start, steps)


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

    def _storage(self, backend: Backend) -> EagerAuto | StagedAuto:
        """The strategy that keeps this policy's states on ``backend``."""
        return _auto_storage(backend.staged_loops, self.budget(backend), self.stage_states)

    def keeps_stages(self, backend):
        return self._storage(backend).keeps_stages

    def buffer(self, backend, max_steps, like, stages_like=None):
        return self._storage(backend).buffer(backend, max_steps, like, stages_like)

    def store(self, backend, buffer, index, value, stages=None):
        return self._storage(backend).store(backend, buffer, index, value, stages)

    def costs(self, backend, buffer, n_steps, value_bytes, stages_bytes, scalar_bytes, evals_per_step):
        return self._storage(backend).costs(backend, buffer, n_steps, value_bytes, stages_bytes, scalar_bytes,
                                           evals_per_step)

    def walk(self, backend, xp, trajectory, outputs, start, steps):
        return self._storage(backend).walk(backend, xp, trajectory, outputs, start, steps)

    def __repr__(self) -> str:
        return "Auto()" if self.memory is None else f"Auto(memory={size_text(self.memory)!r})"


@functools.cache
def _auto_storage(staged: bool, memory: int, stage_states: bool) -> EagerAuto | StagedAuto:
    """:class:`Auto`'s strategy, made once for each kind of backend and budget: the one place
    that tells an eager backend from a staged one."""
    return StagedAuto(memory) if staged else EagerAuto(memory, stage_states)


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
