"""Griewank's binomial checkpointing schedule (revolve), generic over what its actions do:
the same run counts the states held and the steps recomputed (:func:`revolve_counts`) and
walks the steps back (:func:`symadj._walks.revolve_walk`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from ._backend import Backend

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


class Checkpoints(NamedTuple):
    """The checkpoints a run of :func:`revolve` starts from: ``held`` of them, a stack whose
    entry i is at step ``positions[i]`` (a buffer with room for the entries pushed above),
    at most ``budget`` held at once; ``slots`` holds their states, entry i in slot i (``None``
    where the run only counts).

    With ``kept = (states, order)`` the ``held`` checkpoints are instead read-only states
    (entry i is ``states[order[i]]``), the entries pushed above them go to ``slots`` (entry i
    in slot i − the entries still held below it), and ``budget`` counts the slots of
    ``slots`` but its last, which takes the pushes a step does not need, as the stack's last
    entry takes their positions: a staged backend then runs no branch around the stored
    states, which would copy them at every step.
    """

    slots: Any
    held: Any
    positions: Any
    budget: Any
    kept: tuple[Any, Any] | None = None

    @property
    def read_only(self) -> bool:
        """Whether the held checkpoints are read-only (``kept``)."""
        return self.kept is not None


def stride_positions(backend: Backend, slots: int, stride: Any) -> Any:
    """The positions of ``slots`` checkpoints where slot i holds step i·stride."""
    buffer = backend.buffer(slots, 0)
    return backend.fori_loop(0, slots, lambda i, b: b.write(i, i * stride), buffer)


def revolve_start(backend: Backend, n_steps: Any, budget: int, slots: Any = None) -> Checkpoints:
    """What :class:`symadj.Revolve`'s forward pass leaves for ``n_steps`` steps: the states
    of the first ``budget`` steps in ``slots``, of which only step 0's is used where the
    steps outnumber them."""
    held = backend.select(n_steps <= budget, n_steps, 1)
    return Checkpoints(slots, held, stride_positions(backend, budget, 1), budget)


class RevolveActions(NamedTuple):
    """What a run of :func:`revolve` does at each action of the schedule, on two parts of its
    carry: ``store`` (what advancing and pushing change: the states held, or the counts)
    and ``state`` (what reversing a step changes: the adjoint, or nothing).

    ``advance(store, p, target, entry, base) -> (store, value)``: a forward segment from the
    stack's ``entry``, a checkpoint at step ``p``, to step ``target``; ``value`` is what it
    leaves at ``target`` (the state, or ``None`` where only counted).
    ``push(store, entry, base, slot, value, reverses) -> store``: ``value`` becomes the
    stack's ``entry``, in ``slot``. A run from read-only checkpoints calls it at every action
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


def revolve(backend: Backend, n_steps: Any, start: Checkpoints, store: Any, state: Any,
            actions: RevolveActions) -> tuple[Any, Any]:
    """Griewank's schedule over ``n_steps`` steps from the checkpoints ``start``; ``actions``
    says what each action does. Returns the final ``store`` and ``state``."""
    kept, budget = start.read_only, start.budget
    first = _Revolve(end=n_steps, top=start.held - 1, base=start.held if kept else 0, positions=start.positions,
                     store=store, state=state)

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

    c = backend.while_loop(lambda c: c.end > 0, body, first, max_iterations=2**31 - 1)
    return c.store, c.state


def revolve_counts(backend: Backend, n_steps: Any, budget: int) -> tuple[Any, Any]:
    """The most states :class:`symadj.Revolve` with ``budget`` holds at once, and the steps
    it recomputes, for ``n_steps`` steps (see :func:`revolve_counts_from`)."""
    peak = backend.select(n_steps <= budget, n_steps, budget)
    return revolve_counts_from(backend, n_steps, revolve_start(backend, n_steps, budget), peak)


def revolve_counts_from(backend: Backend, n_steps: Any, start: Checkpoints, peak: Any) -> tuple[Any, Any]:
    """The most states revolve holds at once and the steps it recomputes, for ``n_steps``
    steps from the checkpoints ``start`` (whose ``slots`` it does not read), the forward pass
    having held ``peak``.

    Runs :func:`revolve`, the schedule of :func:`symadj._walks.revolve_walk`, on step indices alone.
    """
    kept, held_by_forward = start.read_only, peak

    def advance(store: tuple, p: Any, target: Any, entry: Any, base: Any) -> tuple[tuple, None]:
        peak, advanced = store
        return (peak, advanced + (target - p)), None

    def push(store: tuple, entry: Any, base: Any, slot: Any, value: None, reverses: Any) -> tuple:
        peak, advanced = store
        held = held_by_forward + entry + 1 - base if kept else entry + 1
        return backend.select(reverses, peak, backend.select(held > peak, held, peak)), advanced

    (peak, advanced), _ = revolve(backend, n_steps, start, (peak, 0), (),
                                  RevolveActions(advance, push, lambda state, n, value: state))
    return peak, advanced
