"""The revolve schedule, run once (symadj._revolve.revolve) for both its counts and its
walk: its actions, replayed on step indices, reverse every step once in reverse order from
states that are really held, within the budget, with the fewest forward steps there are."""

from __future__ import annotations

import pytest

# The independent counts: the dynamic programme behind revolve (brute force) and Griewank's closed form.
from test_checkpoints import binomial_advances, least_advances

import symadj
from symadj._revolve import Checkpoints, RevolveActions, revolve, revolve_counts, revolve_counts_from, stride_positions


def replay(steps: int, slots: int) -> tuple[int, int, list[int]]:
    """Runs the schedule with actions whose "states" are step indices, checking each action;
    returns the forward steps taken, the most states held, and the steps reversed in order."""
    backend = symadj.get_backend("numpy")
    held: dict[int, int] = {0: 0}  # slot -> the step whose state it holds
    log = {"advanced": 0, "peak": 1, "reversed": []}

    def advance(store, p, target, entry, base):
        assert held[int(entry)] == int(p), "a segment starts from a state that is not held"
        assert int(p) <= int(target) < steps
        log["advanced"] += int(target) - int(p)
        return store, int(target)

    def push(store, entry, base, slot, value, reverses):
        assert not reverses
        for stale in [s for s in held if s >= int(entry)]:
            del held[stale]  # entries above the top were dropped when their steps were reversed
        held[int(entry)] = value
        log["peak"] = max(log["peak"], len(held))
        return store

    def reverse(state, n, value):
        assert value == int(n), "a step is reversed from another step's state"
        log["reversed"].append(int(n))
        return state

    revolve(backend, steps, Checkpoints(None, 1, stride_positions(backend, slots, 1), slots), None, (),
            RevolveActions(advance, push, reverse))
    return log["advanced"], log["peak"], log["reversed"]


@pytest.mark.parametrize("slots", [1, 2, 3, 4, 6])
def test_the_schedule_reverses_every_step_once_with_the_fewest_advances(slots):
    for steps in range(1, 45):
        advanced, peak, reversed_ = replay(steps, slots)
        assert reversed_ == list(range(steps - 1, -1, -1)), (steps, slots)
        assert peak <= slots, (steps, slots)
        assert advanced == least_advances(steps, slots) == binomial_advances(steps, slots), (steps, slots)


@pytest.mark.parametrize("slots", [1, 2, 3, 5])
def test_counts_are_the_replayed_schedule(slots):
    backend = symadj.get_backend("numpy")
    for steps in range(slots + 1, 45):
        # Revolve with more steps than slots: only the initial state is kept forward.
        advanced, peak, _ = replay(steps, slots)
        assert tuple(int(x) for x in revolve_counts(backend, steps, slots)) == (slots, advanced)
        start = Checkpoints(None, 1, stride_positions(backend, slots, 1), slots)
        held, counted = revolve_counts_from(backend, steps, start, peak=1)
        assert (int(held), int(counted)) == (peak, advanced), (steps, slots)
