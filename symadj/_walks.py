"""The backward walks of the checkpoint policies: over every step's stored value
(:func:`walk_every_step`), or from a few checkpoints, recomputing the steps in between by
the revolve schedule (:func:`revolve_walk`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._backend import Backend, Buffer
from ._revolve import Checkpoints, RevolveActions, revolve
from ._walk import BackwardStep, BackwardSteps, FromState, WalkState


def read_entry(buffer: Buffer, index: Any) -> Any:
    """Entry ``index`` of ``buffer``, as it was stored."""
    return buffer.read(index)


def walk_every_step(backend: Backend, xp: Any, trajectory: Any, states: Any, outputs: Any, start: WalkState,
                    step_adjoint: BackwardStep, read: Callable[[Any, Any], Any] = read_entry) -> WalkState:
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


def revolve_walk(backend: Backend, xp: Any, trajectory: Any, checkpoints: Checkpoints, outputs: Any,
                 start: WalkState, steps: BackwardSteps) -> WalkState:
    """The backward walk from ``checkpoints``: at most their ``budget`` states held, the
    segments between them recomputed by :func:`symadj._revolve.revolve`."""
    times, sizes = trajectory.times, trajectory.steps
    step_adjoint = steps.taking(FromState())
    kept = checkpoints.kept

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

    _, (_, walked) = revolve(backend, trajectory.n_steps, checkpoints, checkpoints.slots,
                             (outputs.last_index, start), RevolveActions(forward, push, reverse))
    return walked._replace(lam=walked.lam + outputs.first)
