"""The outputs writer of the integration loop: it evaluates every output time inside the
accepted step that reaches it (interpolated with a continuous extension, else the step's
end state, see ``_interpolant.py`` and ``_landing.py``), and records where each output
lies for the backward pass. One of three ways, chosen once for the backend: eager,
staged, or deferred to after the loop."""

from __future__ import annotations

from typing import Any, NamedTuple

from ._backend import Backend
from ._interpolant import Interpolant
from ._landing import count_reached
from ._observers import Observer
from ._rk_step import AcceptedStep


class OutputsState(NamedTuple):
    """The writer's part of the loop state: output k (k ≥ 1) lies in step ``steps[k]`` at
    θ = ``thetas[k]``; ``history`` holds what a deferred writer evaluates them from."""

    next_output: Any
    values: Any
    steps: Any
    thetas: Any
    history: Any


def _theta(xp: Any, times: Any, step: AcceptedStep) -> Any:
    """Where ``times`` lie in ``step``, as fractions of it; 1 for a time at its end or past it
    (an output at a jump, which the step ends one ulp before)."""
    theta = (times - step.t) / step.h
    return xp.minimum(theta, xp.ones_like(theta))


class StagedOutputs(Observer):
    """Outputs evaluated as soon as their step is accepted, while its stages are alive: one
    at a time, in a loop whose length the compiled program learns at run time."""

    def __init__(self, backend: Backend, xp: Any, ts: Any, direction: Any, interpolant: Interpolant | None,
                 max_steps: int) -> None:
        self.backend, self.xp, self.ts, self.direction, self.interpolant = backend, xp, ts, direction, interpolant

    def start(self, state: Any) -> Any:
        backend, xp, t0, y0 = self.backend, self.xp, self.ts[0], state.y
        n_outputs, zero_index = self.ts.shape[0], xp.asarray(0)
        return state._replace(outputs=OutputsState(
            next_output=1,
            values=backend.buffer(n_outputs, y0).write(0, y0),
            steps=backend.buffer(n_outputs, zero_index).write(0, zero_index),
            thetas=backend.buffer(n_outputs, t0).write(0, xp.zeros_like(t0)),
            history=self.history(y0, state.dy),
        ))

    def history(self, y0: Any, dy0: Any) -> Any:
        return None

    def resumed(self, state: Any) -> Any:
        # The outputs written so far lie before the resumed run's steps, which it numbers from 0.
        outputs = state.outputs
        steps = outputs.steps
        for k in range(1, int(outputs.next_output)):
            steps = steps.write(k, self.xp.asarray(-1))
        return state._replace(outputs=outputs._replace(steps=steps))

    def accepted(self, state: Any, step: AcceptedStep) -> Any:
        backend, xp, ts, interpolant = self.backend, self.xp, self.ts, self.interpolant
        n_outputs = ts.shape[0]

        def more(carry: tuple) -> Any:
            k = carry[0]
            inside = backend.select(k < n_outputs, k, n_outputs - 1)
            return (k < n_outputs) & (self.direction * (ts[inside] - step.reached) <= 0)

        def one(carry: tuple) -> tuple:
            k, values, steps, thetas = carry
            theta = _theta(xp, ts[k], step)
            value = step.y_new
            if interpolant is not None:
                value = xp.where(theta == 1, step.y_new,
                                 interpolant.evaluate(xp, theta, step.h, step.y, step.derivatives))
            return (k + 1, values.write(k, value),
                    steps.write(k, xp.asarray(step.index)), thetas.write(k, theta))

        outputs = state.outputs
        k, values, steps, thetas = backend.while_loop(
            more, one, (outputs.next_output, outputs.values, outputs.steps, outputs.thetas), max_iterations=n_outputs)
        return state._replace(outputs=outputs._replace(next_output=k, values=values, steps=steps, thetas=thetas))

    def finish(self, outputs: OutputsState, y0: Any) -> Any:
        """The outputs stacked along a leading axis, NaN where not reached."""
        return outputs.values.stack(outputs.next_output, self.xp.full_like(y0, self.xp.nan))


class EagerOutputs(StagedOutputs):
    """:class:`StagedOutputs` for eager backends: the outputs of a step are counted first,
    then evaluated together."""

    def accepted(self, state: Any, step: AcceptedStep) -> Any:
        xp, ts, outputs = self.xp, self.ts, state.outputs
        first, end = int(outputs.next_output), int(count_reached(xp, ts, self.direction, step.reached))
        if end <= first:
            return state
        theta = _theta(xp, ts[first:end], step)
        values = xp.broadcast_to(step.y_new, (end - first, *step.y_new.shape))
        if self.interpolant is not None:
            at_end = xp.reshape(theta == 1, (-1, *(1,) * step.y.ndim))
            values = xp.where(at_end, step.y_new,
                              self.interpolant.evaluate(xp, theta, step.h, step.y, step.derivatives))
        written, steps, thetas = outputs.values, outputs.steps, outputs.thetas
        index = xp.asarray(step.index)
        for k in range(first, end):
            written = written.write(k, values[k - first, ...])
            steps = steps.write(k, index)
            thetas = thetas.write(k, theta[k - first])
        return state._replace(outputs=outputs._replace(next_output=end, values=written, steps=steps, thetas=thetas))


class DeferredOutputs(StagedOutputs):
    """Outputs evaluated after the loop, for a differentiable staged loop (JAX's reversible
    loop cannot hold another loop): each step's state, size and interpolated stage
    derivatives are kept (as reverse mode keeps them anyway), and every output is
    gathered from its step at the end, one vectorised evaluation."""

    def __init__(self, backend: Backend, xp: Any, ts: Any, direction: Any, interpolant: Interpolant,
                 max_steps: int) -> None:
        super().__init__(backend, xp, ts, direction, interpolant, max_steps)
        self.max_steps = max_steps

    def history(self, y0: Any, dy0: Any) -> Any:
        backend, xp = self.backend, self.xp
        stacked = xp.stack([dy0] * len(self.interpolant.stages))
        return (backend.buffer(self.max_steps + 1, y0), backend.buffer(self.max_steps, self.ts[0]),
                backend.buffer(self.max_steps, stacked))

    def accepted(self, state: Any, step: AcceptedStep) -> Any:
        backend, xp, ts, outputs = self.backend, self.xp, self.ts, state.outputs
        ys, hs, ks = outputs.history
        ys = ys.write(step.index, step.y).write(step.index + 1, step.y_new)
        hs = hs.write(step.index, step.h)
        ks = ks.write(step.index, xp.stack([step.derivatives[i] for i in self.interpolant.stages]))
        positions = xp.arange(ts.shape[0])
        inside = (positions >= outputs.next_output) & (self.direction * (ts - step.reached) <= 0)
        steps, thetas = outputs.steps.stack(ts.shape[0]), outputs.thetas.stack(ts.shape[0])
        return state._replace(outputs=outputs._replace(
            next_output=outputs.next_output + xp.sum(xp.astype(inside, xp.int32)),
            steps=backend.buffer_of(xp.where(inside, step.index, steps)),
            thetas=backend.buffer_of(xp.where(inside, _theta(xp, ts, step), thetas)),
            history=(ys, hs, ks),
        ))

    def finish(self, outputs: OutputsState, y0: Any) -> Any:
        xp = self.xp
        ys, hs, ks = (buffer.stack(buffer.capacity) for buffer in outputs.history)
        n, theta = outputs.steps.stack(self.ts.shape[0]), outputs.thetas.stack(self.ts.shape[0])
        start, end = xp.take(ys, n, axis=0), xp.take(ys, n + 1, axis=0)
        h, k = xp.take(hs, n, axis=0), xp.take(ks, n, axis=0)
        weights = self.interpolant.weights(xp, theta, self.interpolant.stages, y0.dtype)  # (outputs, stages)
        expand = (1,) * y0.ndim
        values = start + xp.reshape(xp.astype(h, y0.dtype), (-1, *expand)) * self.interpolant.combine(
            xp, weights, k, y0.ndim)
        values = xp.where(xp.reshape(theta == 1, (-1, *expand)), end, values)
        positions = xp.reshape(xp.arange(self.ts.shape[0]), (-1, *expand))
        values = xp.where(positions == 0, y0, values)
        return xp.where(positions < outputs.next_output, values, xp.full_like(values, xp.nan))


def outputs_writer(backend: Backend, problem: Any, direction: Any, differentiable: bool) -> StagedOutputs:
    """The writer for a solve of ``problem``: eager for an eager backend; for a staged one,
    deferred in a differentiable loop with interpolated outputs, else staged."""
    interpolant = problem.interpolant
    if not backend.staged_loops:
        kind = EagerOutputs
    else:
        kind = DeferredOutputs if interpolant is not None and differentiable else StagedOutputs
    return kind(backend, problem.xp, problem.ts, direction, interpolant, problem.options.max_steps)
