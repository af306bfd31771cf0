"""Gradients with respect to the output times, for the gradient modes that do not give them.

An output moves along the solution as its time moves (the step sizes stay as they were):
dL/dt_k = ḡ_k · f(t_k, y(t_k)) for k ≥ 1; y0 moves against f as t_0 moves (its own output
moves back): dL/dt_0 = −(λ_0 − ḡ_0) · f(t_0, y_0). Both ride on terms of value zero, with
``shift`` = times − stop(times): y0 − f(t_0, y0) · shift_0 before the solve, and
outputs + f(t_k, y_k) · shift_k after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._backend import Backend, Field
from ._loop import Problem
from ._solution import SolveOutputs


@dataclass(frozen=True)
class TimeGradients:
    """The zero-valued terms of one solve: ``shift`` (times − their constant copy, in the
    state's dtype) and ``start_rate`` (f where the solve first calls it, a constant)."""

    shift: Any
    start_rate: Any

    @classmethod
    def of(cls, backend: Backend, times: Any, field: Field, first_time: Any, y0: Any) -> TimeGradients:
        """The terms for the caller's differentiable ``times``, ``first_time`` where the
        solve first calls ``field``."""
        xp = backend.namespace()
        shift = xp.astype(times - backend.stop_gradient(times), y0.dtype)
        return cls(shift, backend.stop_gradient(field(first_time, y0)))

    def moved_start(self, y0: Any) -> Any:
        """``y0`` (its value unchanged), moving against f as t_0 moves."""
        return y0 - self.start_rate * self.shift[0]

    def added(self, backend: Backend, problem: Problem, field: Field, outputs: SolveOutputs, record: Any,
              deferrable: bool) -> SolveOutputs:
        """``outputs`` (values unchanged), each moving along the solution as its time moves.

        Outputs held at an event state (``record``, the event record) do not move; the
        event state of a row that never fired, the last output, moves with it. With
        ``deferrable`` (a mode without forward-mode autodiff through it) the backend may
        evaluate the rates in the backward pass only (:meth:`Backend.deferred_time_terms`).
        """
        xp, count, ts = problem.xp, problem.n_outputs, problem.ts
        time_terms = backend.deferred_time_terms if deferrable else backend.time_terms

        def rates_of(fixed: Any) -> Any:
            def rate(k: Any, rates: Any) -> Any:
                return rates.write(k, backend.stop_gradient(field(ts[k], fixed[k, ...])))

            rates = backend.buffer(count, self.start_rate).write(0, self.start_rate)
            rates = backend.fori_loop(1, count, rate, rates).stack(count, self.start_rate)
            if record is None:
                return rates
            rates = problem.events.held_still(xp, record, rates, ts, xp.sign(ts[-1] - ts[0]))
            # The event state's rate is the last output's: zero on the rows that fired (held there).
            return xp.concat([rates, rates[-1:, ...]])

        if outputs.event_state is None:
            return outputs._replace(ys=outputs.ys + time_terms(rates_of, backend.stop_gradient(outputs.ys), self.shift))
        # The event state moves with the last output's time, as a row of its own: the gradient
        # of that time then adds the event state's term to the outputs', each summed on its own.
        moving = xp.concat([outputs.ys, outputs.event_state[None, ...]])
        terms = time_terms(rates_of, backend.stop_gradient(moving), xp.concat([self.shift, self.shift[-1:]]))
        return outputs._replace(ys=outputs.ys + terms[:count, ...], event_state=outputs.event_state + terms[count, ...])
