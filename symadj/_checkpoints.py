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
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ._backend import Backend
from .errors import InvalidArgumentError

StepAdjoint = Callable[[Any, Any, Any, Any, list, Any], tuple[Any, list]]
Advance = Callable[[Any, Any, Any], Any]


class CheckpointPolicy(abc.ABC):
    """What the forward pass keeps for the backward pass of ``"symplectic"``/``"checkpoint"``.

    Pass an instance or its name as ``checkpoints=`` to :func:`symadj.solve`/:func:`symadj.odeint`,
    or to :class:`symadj.Symplectic`/:class:`symadj.Checkpoint`: :class:`AllSteps`
    (``"all"``, the default), :class:`Offload` (``"offload"``), :class:`Stages`
    (``"stages"``) and :class:`Revolve` (``"revolve:K"``). Every policy gives the same
    gradient; they trade memory for time.

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

    def validate(self, mode_name: str) -> None:
        """Raise :class:`InvalidArgumentError` if the gradient mode ``mode_name`` cannot use this policy."""

    def check(self, backend: Backend, max_steps: int) -> None:
        """Raise :class:`InvalidArgumentError` if ``backend`` cannot give this policy's storage."""

    # -- forward --------------------------------------------------------------
    @abc.abstractmethod
    def buffer(self, backend: Backend, max_steps: int, like: Any) -> Any:
        """The empty buffer of states (or stage stacks) the forward pass fills."""

    @abc.abstractmethod
    def store(self, backend: Backend, buffer: Any, index: Any, value: Any) -> Any:
        """The buffer with the ``index``-th accepted step's starting ``value`` stored (or not)."""

    @abc.abstractmethod
    def costs(self, backend: Backend, n_steps: Any, value_bytes: int, scalar_bytes: int,
              evals_per_step: int) -> tuple[Any, Any]:
        """Checkpoint bytes held at peak and the extra function evaluations of the backward pass."""

    # -- backward -------------------------------------------------------------
    @abc.abstractmethod
    def walk(self, backend: Backend, xp: Any, trajectory: Any, outputs: Any,
             params: Sequence[Any], step_adjoint: StepAdjoint, advance: Advance) -> tuple[Any, list]:
        """λ at ``t[0]`` and the parameter cotangents: the accepted steps walked in reverse.

        ``outputs`` is the outputs' cotangent (:class:`symadj._outputs.OutputsCotangent`);
        ``step_adjoint(t_n, h_n, value_n, λ_{n+1}, θ̄, outputs of step n) -> (λ_n, θ̄)``;
        ``advance(t_n, h_n, y_n)`` is y_{n+1}, recomputed exactly as the forward pass computed it.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


@dataclass(frozen=True, repr=False)
class AllSteps(CheckpointPolicy):
    """``"all"``: the state at every accepted step, in device memory (the default).

    Memory N·|y| for N accepted steps; no recomputation of states.

    Examples:
        >>> import torch, symadj
        >>> y0 = torch.ones(2, requires_grad=True)
        >>> sol = symadj.solve(lambda t, y: -y, y0, [0.0, 1.0], checkpoints=symadj.AllSteps())
        >>> int(sol.stats.extra_fevals)
        0
    """

    name = "all"

    def buffer(self, backend, max_steps, like):
        return backend.buffer(max_steps, like)

    def store(self, backend, buffer, index, value):
        return backend.buffer_write(buffer, index, value)

    def read(self, backend: Backend, buffer: Any, index: Any, like: Any) -> Any:
        return backend.buffer_read(buffer, index)

    def costs(self, backend, n_steps, value_bytes, scalar_bytes, evals_per_step):
        return n_steps * (value_bytes + 2 * scalar_bytes), 0

    def walk(self, backend, xp, trajectory, outputs, params, step_adjoint, advance):
        lam = xp.zeros_like(outputs.first)
        params_bar = [xp.zeros_like(p) for p in params]
        n_steps, states = trajectory.n_steps, trajectory.states

        def fetch(n: Any) -> Any:
            # Clamped: the last iteration fetches step 0 again rather than step -1.
            return self.read(backend, states, backend.select(n > 0, n, 0), lam)

        def body(i: Any, carry: tuple) -> tuple:
            lam, params_bar, k, y = carry
            n = n_steps - 1 - i
            # Started one step ahead, so that a transfer from host memory overlaps this step.
            y_ahead = fetch(n - 1)
            in_step, k = outputs.of_step(n, k)
            lam, params_bar = step_adjoint(backend.buffer_read(trajectory.times, n),
                                           backend.buffer_read(trajectory.steps, n), y, lam, params_bar, in_step)
            return lam, params_bar, k, y_ahead

        # An eager buffer holds exactly the recorded steps, possibly none (a failed solve).
        first = fetch(n_steps - 1) if _is_array_buffer(states) or len(states) else None
        lam, params_bar, _, _ = backend.fori_loop(0, n_steps, body, (lam, params_bar, outputs.last_index, first))
        return lam + outputs.first, params_bar


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

    def check(self, backend, max_steps):
        backend.check_host_storage()

    def buffer(self, backend, max_steps, like):
        return backend.host_buffer(max_steps, like)

    def store(self, backend, buffer, index, value):
        return backend.buffer_write(buffer, index, backend.to_host(value))

    def read(self, backend, buffer, index, like):
        return backend.to_device(backend.buffer_read(buffer, index), like)


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

    def buffer(self, backend, max_steps, like):
        return backend.buffer(self.budget, like)

    def store(self, backend, buffer, index, value):
        return backend.cond(index < self.budget, lambda b: backend.buffer_write(b, index, value),
                            lambda b: b, buffer)

    def costs(self, backend, n_steps, value_bytes, scalar_bytes, evals_per_step):
        peak, advanced = revolve_counts(backend, n_steps, self.budget)
        return peak * value_bytes + n_steps * 2 * scalar_bytes, advanced * evals_per_step

    def walk(self, backend, xp, trajectory, outputs, params, step_adjoint, advance):
        return revolve_walk(backend, xp, trajectory, outputs, params, step_adjoint, advance, self.budget)


_POLICIES: dict[str, type[CheckpointPolicy]] = {
    policy.name: policy for policy in (AllSteps, Offload, Stages)
}


def as_checkpoint_policy(policy: str | CheckpointPolicy) -> CheckpointPolicy:
    """Turn a name (``"all"``, ``"offload"``, ``"stages"``, ``"revolve:K"``) into its policy.

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
    known = "'all', 'offload', 'stages', 'revolve:K' (K a positive integer) or a CheckpointPolicy"
    if not isinstance(policy, str):
        raise InvalidArgumentError(f"checkpoints must be {known}, got {type(policy).__name__}")
    if policy in _POLICIES:
        return _POLICIES[policy]()
    name, _, budget = policy.partition(":")
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


class _Count(NamedTuple):
    end: Any
    top: Any
    peak: Any
    advanced: Any
    positions: Any


def _held_after_forward(backend: Backend, n_steps: Any, budget: int) -> Any:
    return backend.select(n_steps <= budget, n_steps, 1)


def _positions(backend: Backend, budget: int) -> Any:
    """Checkpoint slot i holds step i after the forward pass."""
    buffer = backend.buffer(budget, 0)
    return backend.fori_loop(0, budget, lambda i, b: backend.buffer_write(b, i, i), buffer)


def revolve_counts(backend: Backend, n_steps: Any, budget: int) -> tuple[Any, Any]:
    """The most states revolve holds at once and the steps it recomputes, for ``n_steps`` steps.

    Runs the schedule of :func:`revolve_walk` on step indices alone.
    """
    held = _held_after_forward(backend, n_steps, budget)
    start = _Count(end=n_steps, top=held - 1, peak=backend.select(n_steps <= budget, n_steps, budget),
                   advanced=0, positions=_positions(backend, budget))

    def body(c: _Count) -> _Count:
        p = backend.buffer_read(c.positions, c.top)
        target = revolve_target(backend, p, c.end, c.top, budget)
        c = c._replace(advanced=c.advanced + (target - p))

        def reverse(c: _Count) -> _Count:
            return c._replace(end=c.end - 1, top=backend.select(p == c.end - 1, c.top - 1, c.top))

        def push(c: _Count) -> _Count:
            top = c.top + 1
            return c._replace(top=top, peak=backend.select(top + 1 > c.peak, top + 1, c.peak),
                              positions=backend.buffer_write(c.positions, top, target))

        return backend.cond(target == c.end - 1, reverse, push, c)

    c = backend.while_loop(lambda c: c.end > 0, body, start, max_iterations=2**31 - 1)
    return c.peak, c.advanced


class _Walk(NamedTuple):
    end: Any
    top: Any
    k: Any
    lam: Any
    params_bar: list
    slots: Any
    positions: Any


def revolve_walk(backend: Backend, xp: Any, trajectory: Any, outputs: Any, params: Sequence[Any],
                 step_adjoint: StepAdjoint, advance: Advance, budget: int) -> tuple[Any, list]:
    """The backward walk of :class:`Revolve`: at most ``budget`` states, segments recomputed."""
    n_steps = trajectory.n_steps
    times, steps = trajectory.times, trajectory.steps
    start = _Walk(end=n_steps, top=_held_after_forward(backend, n_steps, budget) - 1,
                  k=outputs.last_index, lam=xp.zeros_like(outputs.first),
                  params_bar=[xp.zeros_like(p) for p in params], slots=trajectory.states,
                  positions=_positions(backend, budget))

    def body(c: _Walk) -> _Walk:
        p = backend.buffer_read(c.positions, c.top)
        target = revolve_target(backend, p, c.end, c.top, budget)

        def forward(n: Any, y: Any) -> Any:
            return advance(backend.buffer_read(times, n), backend.buffer_read(steps, n), y)

        y = backend.fori_loop(p, target, forward, backend.buffer_read(c.slots, c.top))

        def reverse(c: _Walk) -> _Walk:
            n = c.end - 1
            in_step, k = outputs.of_step(n, c.k)
            lam, params_bar = step_adjoint(backend.buffer_read(times, n), backend.buffer_read(steps, n), y,
                                           c.lam, c.params_bar, in_step)
            return c._replace(end=n, top=backend.select(p == n, c.top - 1, c.top), k=k, lam=lam,
                              params_bar=params_bar)

        def push(c: _Walk) -> _Walk:
            top = c.top + 1
            return c._replace(top=top, slots=backend.buffer_write(c.slots, top, y),
                              positions=backend.buffer_write(c.positions, top, target))

        return backend.cond(target == c.end - 1, reverse, push, c)

    c = backend.while_loop(lambda c: c.end > 0, body, start, max_iterations=2**31 - 1)
    return c.lam + outputs.first, c.params_bar


# -- helpers ---------------------------------------------------------------------------


def _is_array_buffer(buffer: Any) -> bool:
    return hasattr(buffer, "shape")
