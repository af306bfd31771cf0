"""Solver statistics as loggers and people read them."""

from __future__ import annotations

import json

import numpy as np
import pytest

import symadj


def test_as_dict_holds_plain_numbers_and_names():
    torch = pytest.importorskip("torch")
    sol = symadj.solve(lambda t, y: -y, torch.ones(3, requires_grad=True), [0.0, 1.0, 2.0], gradient="symplectic")
    numbers = sol.stats.as_dict()
    assert json.loads(json.dumps(numbers)) == numbers  # a logger can take it as it is
    assert numbers["status"] == "SUCCESS" and numbers["schedule"] == "STAGES"
    assert type(numbers["n_accepted"]) is int and numbers["n_accepted"] == int(sol.stats.n_accepted)
    assert type(numbers["t_final"]) is float and numbers["t_final"] == 2.0
    assert set(numbers) == {"n_attempts", "n_accepted", "n_rejected", "n_fevals", "n_outputs", "checkpoint_bytes",
                            "extra_fevals", "graph_steps", "walk_steps", "graph_bytes", "t_final", "status", "schedule"}


def test_stats_show_status_and_schedule_by_name():
    stats = symadj.solve(lambda t, y: -y, np.ones(1), [0.0, 10.0], options={"max_steps": 2}, throw=False).stats
    assert "status=MAX_STEPS" in repr(stats) and "schedule=NONE" in repr(stats)
    assert stats.as_dict()["status"] == "MAX_STEPS"


def test_stats_print_under_jit():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    shown = []

    @jax.jit
    def solve(y0):
        stats = symadj.solve(lambda t, y: -y, y0, jnp.array([0.0, 1.0])).stats
        shown.append(repr(stats))
        return stats

    assert solve(jnp.ones(1)).as_dict()["status"] == "SUCCESS"
    assert "status=" in shown[0]


def test_attempts_are_named_as_such_and_the_old_name_warns():
    stats = symadj.solve(lambda t, y: -y, np.ones(1), [0.0, 3.0], rtol=1e-3, atol=1e-3,
                         options={"first_step": 2.0}).stats
    assert int(stats.n_rejected) > 0  # the first step is too long: attempts and accepted steps differ
    assert int(stats.n_attempts) == int(stats.n_accepted) + int(stats.n_rejected)
    with pytest.warns(DeprecationWarning, match=r"Stats\.n_steps is deprecated.*Stats\.n_attempts"):
        assert stats.n_steps is stats.n_attempts
    assert "n_steps" not in stats._fields and "n_steps" not in stats.as_dict()


def test_the_old_name_reads_under_jit():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    @jax.jit
    def attempts(y0):
        with pytest.warns(DeprecationWarning):
            old = symadj.solve(lambda t, y: -y, y0, jnp.array([0.0, 1.0])).stats.n_steps
        return old, symadj.solve(lambda t, y: -y, y0, jnp.array([0.0, 1.0])).stats.n_attempts

    old, new = attempts(jnp.ones(1))
    assert int(old) == int(new) > 0
