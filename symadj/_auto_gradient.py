"""``gradient="auto"``: the solve keeps its autograd graph (as backprop) while the bytes
autograd saves fit the memory budget, and from the step where they would not, the rest of
the solve is recorded as the symplectic mode records it and walked back with the
symplectic adjoint, whose cotangent at the switch flows on through the graph.

One solve, paused and resumed (``_loop.LoopRun``): the steps, outputs, events and
statistics are those of the solve run in one go, and the gradient is the same exact one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._array_api import device_of
from ._backend import Backend, Field, GraphMeter
from ._checkpoint_policies import Auto
from ._gradients import GradientMode, Symplectic, backward_interpolant
from ._loop import LoopRun, LoopState, Problem
from ._observers import Observer
from ._recorder import Recorder
from ._sizes import parse_bytes, size_text
from ._solution import SolveOutputs, Stats
from ._symplectic_step import adjoint_stages
from ._walk_checks import check_recomputation_choice
from .errors import InvalidArgumentError

#: The share of the budget the graph leaves to the symplectic part of the solve: its stage
#: states (s·|y| a step, usually far fewer bytes than a step's graph), so that the rest of
#: a solve that outgrows the graph is walked without recomputation where it can be.
WALK_SHARE = 4


class GraphBudget(Observer):
    """Pauses the loop before the step whose graph would take the bytes ``meter`` counts past
    ``limit`` (or, forced, before step ``switch_step``). A step's bytes are predicted as the
    largest an accepted step has saved so far; before the first, as ``stages`` evaluations
    of f like those the loop's start made."""

    stops = True

    def __init__(self, meter: GraphMeter, limit: int, stages: int, switch_step: int | None) -> None:
        self.meter, self.limit, self.stages, self.switch_step = meter, limit, stages, switch_step
        self.step_bytes, self.after_last, self.mark = 0, 0, None

    def start(self, state: Any) -> Any:
        self.step_bytes = self.meter.saved * self.stages // max(int(state.counts.n_fevals), 1)
        self.after_last = self.meter.saved
        return state

    def attempted(self, state: Any, h: Any) -> None:
        self.mark = self.meter.mark()

    def rejected(self, state: Any, h: Any) -> None:
        self.meter.drop(self.mark)  # its graph goes with it

    def accepted(self, state: Any, step: Any) -> Any:
        taken = self.meter.saved - self.after_last
        self.step_bytes = taken if step.index == 0 else max(self.step_bytes, taken)
        self.after_last = self.meter.saved
        return state

    def stopped(self, state: Any) -> Any:
        if self.switch_step is not None:
            return int(state.counts.n_accepted) >= self.switch_step
        return self.meter.saved + self.step_bytes > self.limit


@dataclass(frozen=True, repr=False)
class AutoGradient(GradientMode):
    """``"auto"``: the fastest exact gradient within a memory budget (backprop while its graph
    fits, the symplectic adjoint for the rest).

    The solve keeps its whole autograd graph, as :class:`Backprop`, while the bytes autograd
    saves (measured as the solve runs) fit in ``memory`` less a quarter kept for the rest;
    before the step whose graph would not fit, the rest of the solve is recorded as
    :class:`Symplectic` records it, under the budget that is left (``checkpoints="auto"``:
    stage states, then states, then thinned states). The backward pass walks the recorded
    steps with the symplectic adjoint down to the switch, and autograd takes the cotangent
    there on through the graph. Equal to :class:`Backprop` up to rounding; the graph and the
    checkpoints together stay within ``memory`` (``Stats.peak_bytes``; ``Stats.graph_steps``
    and ``Stats.walk_steps`` say how the steps were split).

    Measured on PyTorch. A backend that cannot count its autodiff's bytes (JAX, whose
    compiled loop fixes its memory when it compiles) runs :class:`Symplectic` with the same
    budget, and so do per-row events (a row may stop on either side of the switch).

    Args:
        memory: the budget, in bytes or as ``"512MiB"``, ``"2GiB"``; by default the backend's
            checkpoint budget (1 GiB with PyTorch, see :class:`Auto`).
        switch_step: switch before this accepted step, whatever the bytes (0: the whole
            solve symplectic); for tests and measurements. ``None``: by the budget.
        recomputation: as :class:`Symplectic`'s, for the recorded part.

    Raises:
        InvalidArgumentError: ``memory`` is not a size, or ``switch_step`` not an integer ≥ 0.

    Examples:
        >>> import torch, symadj
        >>> y0 = torch.ones(2, dtype=torch.float64, requires_grad=True)
        >>> sol = symadj.solve(lambda t, y: -y, y0, [0.0, 1.0], method="rk4", options={"step_size": 0.1},
        ...                    gradient=symadj.AutoGradient(switch_step=4))
        >>> sol.ys[-1].sum().backward()
        >>> [round(g, 5) for g in y0.grad.tolist()], int(sol.stats.graph_steps), int(sol.stats.walk_steps)
        ([0.36788, 0.36788], 4, 6)
    """

    memory: int | str | None = None
    switch_step: int | None = None
    recomputation: str = "raise"
    name = "auto"

    def __post_init__(self) -> None:
        if self.memory is not None:
            object.__setattr__(self, "memory", parse_bytes(self.memory, "AutoGradient(memory=...)"))
        step = self.switch_step
        if step is not None and (not isinstance(step, int) or isinstance(step, bool) or step < 0):
            raise InvalidArgumentError(
                f"AutoGradient(switch_step=...) is the accepted step to switch before, an integer >= 0 "
                f"(or None: by the memory budget); got {step!r}"
            )
        object.__setattr__(self, "recomputation", check_recomputation_choice(self.recomputation))

    def budget(self, backend: Backend) -> int:
        """The budget in bytes, for ``backend``."""
        return self.memory if self.memory is not None else backend.default_checkpoint_memory

    def walking(self, memory: int) -> Symplectic:
        """The symplectic mode that records the rest of a solve within ``memory`` bytes."""
        return Symplectic(checkpoints=Auto(memory=memory), recomputation=self.recomputation)

    def _solve(self, backend, problem, field, y0, times=None):
        budget = self.budget(backend)
        meter = backend.graph_meter()
        if meter is None or (problem.events is not None and problem.events.per_row):
            return self.walking(budget)._solve(backend, problem, field, y0)
        with meter as counted:
            watch = GraphBudget(counted, budget - budget // WALK_SHARE, problem.tableau.stages, self.switch_step)
            head = LoopRun(backend, problem, field, y0, recorder=None, differentiable=True, watchers=[watch])
            paused = head.run(head.start(y0))
            if not bool(head.unfinished(paused)):
                outputs, stats, _ = head.finish(paused, y0)
                return outputs, stats._replace(graph_steps=stats.n_accepted, graph_bytes=counted.saved)
            head_ys = head.writer.finish(paused.outputs, y0)
        # Before the first step the graph holds only the start's evaluations, let go here.
        graph_bytes = counted.saved if int(paused.counts.n_accepted) else 0
        paused = paused._replace(dy=backend.stop_gradient(paused.dy))
        return self._walked_rest(backend, problem, field, paused, head_ys, graph_bytes)

    def _walked_rest(self, backend: Backend, problem: Problem, field: Field, paused: LoopState, head_ys: Any,
                     graph_bytes: int) -> tuple[SolveOutputs, Stats]:
        """The solve from ``paused`` on, recorded and walked back as :class:`Symplectic`, within
        the budget the graph's ``graph_bytes`` left; its outputs after those of the graph
        (``head_ys``), and the whole solve's statistics."""
        xp, budget = problem.xp, self.budget(backend)
        left = budget - graph_bytes
        if left <= 0:  # a forced switch past the budget
            raise InvalidArgumentError(
                f"AutoGradient(switch_step={self.switch_step}) kept {size_text(graph_bytes)} of graph, past its "
                f"memory={size_text(budget)}: switch earlier or give more memory"
            )
        # Rounded down to 1/64 of the budget: the checkpoint policy's storage strategy is made
        # once per budget (a cache), which would otherwise grow with every solve's own figure.
        quantum = max(budget // 64, 1)
        walking = self.walking(left // quantum * quantum or left)
        walking.checkpoints.check(backend, problem.options.max_steps)
        stored = adjoint_stages(problem.tableau, backward_interpolant(problem))
        first_step = int(paused.counts.n_accepted)

        def forward(y_switch, params):
            recorder = Recorder(backend, problem, walking.checkpoints, stored)
            rest = LoopRun(backend, problem, field.with_params(params), y_switch, recorder=recorder, params=params,
                           first_step=first_step)
            state = rest.run(rest.resume(paused._replace(y=y_switch)))
            outputs, stats, trajectory = rest.finish(state, y_switch)
            return outputs, stats, (trajectory, params)

        def backward(residuals, cotangents):
            trajectory, params = residuals
            return walking._walk_back(backend, problem, field.with_params(params), params, trajectory, cotangents)

        outputs, stats = backend.custom_vjp(forward, backward, paused.y, field.params)
        before = xp.arange(problem.n_outputs, device=device_of(head_ys)) < paused.outputs.next_output
        before = xp.reshape(before, (-1, *(1,) * (head_ys.ndim - 1)))
        return (outputs._replace(ys=xp.where(before, head_ys, outputs.ys)),
                stats._replace(graph_steps=first_step, graph_bytes=graph_bytes))
