"""Checkpoint policies: every policy gives the gradient of "all", revolve's schedule is
optimal and bounded, and misuse is refused with a clear error."""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pytest
from conftest import jax_rotating_problem, torch_rotating_field

import symadj
from symadj._revolve import revolve_counts

END = 10.0
TOL = 1e-8  # about 270 accepted dopri5 steps on [0, END] for the problems below


@cache
def least_advances(steps: int, budget: int) -> int:
    """Fewest forward steps that reverse ``steps`` steps holding ``budget`` states at once
    (the initial one included): the dynamic programme behind revolve, solved directly."""
    if steps == 1:
        return 0
    if budget == 1:
        return steps * (steps - 1) // 2
    return min(m + least_advances(steps - m, budget - 1) + least_advances(m, budget) for m in range(1, steps))


def binomial_advances(steps: int, budget: int) -> int:
    """Griewank's closed form t·N − C(K+t, t−1), t the least with C(K+t, t) ≥ N."""
    t = 0
    while math.comb(budget + t, t) < steps:
        t += 1
    return t * steps - math.comb(budget + t, t - 1) if t else 0


def expected_extra_evaluations(steps: int, budget: int, evals_per_step: int) -> int:
    # With N <= K the forward pass kept every state: nothing to recompute.
    return 0 if steps <= budget else binomial_advances(steps, budget) * evals_per_step


def test_binomial_formula_is_the_optimum():
    for steps in range(1, 60):
        for budget in range(1, 7):
            assert binomial_advances(steps, budget) == least_advances(steps, budget), (steps, budget)


def test_schedule_is_optimal_and_within_budget():
    backend = symadj.get_backend("numpy")
    for steps in [*range(1, 40), 97, 256, 1000]:
        for budget in (1, 2, 3, 5, 8, 64):
            peak, advanced = revolve_counts(backend, steps, budget)
            assert peak <= budget
            assert advanced == (0 if steps <= budget else binomial_advances(steps, budget)), (steps, budget)


# -- PyTorch -----------------------------------------------------------------------------


def _torch_problem():
    torch = pytest.importorskip("torch")
    return torch_rotating_field(), torch.randn(4, 3, dtype=torch.float64)


def _torch_gradients(func, y0, checkpoints, gradient="symplectic"):
    torch = pytest.importorskip("torch")
    y0 = y0.clone().requires_grad_(True)
    func.zero_grad()
    ts = torch.linspace(0.0, END, 5, dtype=torch.float64)
    sol = symadj.solve(func, y0, ts, rtol=TOL, atol=TOL, gradient=gradient, checkpoints=checkpoints)
    calls = func.calls
    (sol.ys ** 2 + sol.ys).sum().backward()
    backward_calls = func.calls - calls
    return [y0.grad, *(p.grad for p in func.parameters())], sol.stats, backward_calls


def test_torch_policies_give_identical_gradients():
    func, y0 = _torch_problem()
    reference, stats, backward_calls = _torch_gradients(func, y0, "all")
    steps = int(stats.n_accepted)
    assert steps >= 200
    state_bytes, scalar_bytes = y0.numel() * 8, 8
    assert int(stats.checkpoint_bytes) == steps * (state_bytes + 2 * scalar_bytes)
    budgets = (2, 3, 16, steps - 1, steps, steps + 5)
    policies = ["offload", symadj.Offload(), "stages"] + [f"revolve:{k}" for k in budgets]
    for policy in policies:
        grads, policy_stats, calls = _torch_gradients(func, y0, policy)
        for got, want in zip(grads, reference):
            assert got.equal(want), policy  # bitwise: the same steps, the same products
        extra = int(policy_stats.extra_fevals)
        # 'stages' recomputes nothing: 5 stage evaluations a step fewer, and one more in each of the
        # 3 steps holding an interpolated output (the FSAL stage, which only the interpolant weighs).
        assert calls - backward_calls == (extra if policy != "stages" else -5 * steps - 3), policy
        budget = symadj.as_checkpoint_policy(policy)
        if isinstance(budget, symadj.Revolve):
            # dopri5 recomputes a step with 6 evaluations (7 stages, the last one shared).
            assert extra == expected_extra_evaluations(steps, budget.budget, 6)
            held = min(steps, budget.budget)
            assert int(policy_stats.checkpoint_bytes) == held * state_bytes + steps * 2 * scalar_bytes
        elif policy == "stages":
            # dopri5's 6 stages with products, and its FSAL stage, which the interpolant weighs.
            assert int(policy_stats.checkpoint_bytes) == steps * (7 * state_bytes + 2 * scalar_bytes)


def test_torch_checkpoint_mode_with_revolve():
    func, y0 = _torch_problem()
    reference, stats, _ = _torch_gradients(func, y0, "all", gradient="checkpoint")
    grads, revolve_stats, _ = _torch_gradients(func, y0, "revolve:4", gradient="checkpoint")
    assert all(got.equal(want) for got, want in zip(grads, reference))
    assert int(revolve_stats.extra_fevals) == expected_extra_evaluations(int(stats.n_accepted), 4, 6)


def test_torch_revolve_on_fixed_steps_non_fsal():
    torch = pytest.importorskip("torch")
    func, y0 = _torch_problem()
    results = {}
    for policy in ("all", "revolve:3"):
        y = y0.clone().requires_grad_(True)
        sol = symadj.solve(func, y, torch.linspace(0.0, 2.0, 4, dtype=torch.float64), method="rk4",
                           options={"step_size": 0.05}, checkpoints=policy)
        sol.ys.sum().backward()
        results[policy] = (y.grad, sol.stats)
    assert results["all"][0].equal(results["revolve:3"][0])
    steps = int(results["all"][1].n_accepted)
    assert int(results["revolve:3"][1].extra_fevals) == expected_extra_evaluations(steps, 3, 4)


# -- JAX -----------------------------------------------------------------------------


def test_jax_policies_give_identical_gradients():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    func, y0, params = jax_rotating_problem()
    ts = jnp.linspace(0.0, END, 5)
    budgets = (2, 17, 400)
    # "offload" needs a host memory space, which JAX's CPU platform lacks up to 0.6.0 at least
    # (the solve then raises, naming the policies that work).
    host = any(memory.kind == "pinned_host" for memory in jax.devices()[0].addressable_memories())
    policies = ["all", *(["offload"] if host else []), "stages", *(f"revolve:{k}" for k in budgets)]

    def gradients(y0, p):
        results = {}
        for policy in policies:
            def loss(y0, p, policy=policy):
                sol = symadj.solve(func, y0, ts, args=p, rtol=TOL, atol=TOL, checkpoints=policy,
                                   options={"max_steps": 400})
                return jnp.sum(sol.ys ** 2 + sol.ys), sol.stats

            results[policy] = jax.grad(loss, argnums=(0, 1), has_aux=True)(y0, p)
        return results

    fast = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
    results = jax.jit(gradients, compiler_options=fast)(y0, params)
    reference, stats = results["all"]
    steps = int(stats.n_accepted)
    assert steps >= 200
    want = jax.tree_util.tree_leaves(reference)
    for policy in policies[1:]:
        grads, policy_stats = results[policy]
        for got, expected in zip(jax.tree_util.tree_leaves(grads), want):
            error = float(jnp.linalg.norm(jnp.ravel(got - expected)) / jnp.linalg.norm(jnp.ravel(expected)))
            assert error <= 1e-13, policy
        budget = symadj.as_checkpoint_policy(policy)
        if isinstance(budget, symadj.Revolve):
            assert int(policy_stats.extra_fevals) == expected_extra_evaluations(steps, budget.budget, 6)
            held = min(steps, budget.budget)
            assert int(policy_stats.checkpoint_bytes) == held * 12 * 8 + steps * 2 * 8


def test_jax_revolve_refuses_step_counts_its_integers_cannot_schedule():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    with pytest.raises(symadj.InvalidArgumentError, match="max_steps'\\] <= 32767"):
        jax.grad(lambda y0: symadj.odeint(lambda t, y: -y, y0, jnp.array([0.0, 1.0]), checkpoints="revolve:4",
                                          options={"max_steps": 40000})[-1].sum())(jnp.ones(2))


def test_jax_offload_without_host_memory_is_refused(monkeypatch):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    class Memory:
        kind = "device"

    class Device:
        platform = "fancy"

        def addressable_memories(self):
            return [Memory()]

    monkeypatch.setattr(jax, "devices", lambda *args: [Device()])
    with pytest.raises(symadj.InvalidArgumentError, match="host memory space.*'fancy'"):
        symadj.odeint(lambda t, y: -y, jnp.ones(2), jnp.array([0.0, 1.0]), checkpoints="offload")


# -- arguments -------------------------------------------------------------------------


def test_policy_names_become_objects():
    assert symadj.as_checkpoint_policy("all") == symadj.AllSteps()
    assert symadj.as_checkpoint_policy("offload") == symadj.Offload()
    assert symadj.as_checkpoint_policy("stages") == symadj.Stages()
    assert symadj.as_checkpoint_policy("revolve:12") == symadj.Revolve(budget=12)
    assert repr(symadj.Symplectic(checkpoints="revolve:3")) == "Symplectic(checkpoints=Revolve(budget=3))"
    assert symadj.as_checkpoint_policy("auto") == symadj.Auto()
    assert symadj.Symplectic() == symadj.Symplectic("auto")


@pytest.mark.parametrize("value, match", [
    ("everything", "not a checkpoint policy"),
    ("revolve", "give the most states to hold"),
    ("revolve:-2", "give the most states to hold"),
    (3, "checkpoints must be"),
])
def test_bad_policies_are_refused(value, match):
    with pytest.raises(symadj.InvalidArgumentError, match=match):
        symadj.as_checkpoint_policy(value)


def test_revolve_budget_must_be_positive():
    with pytest.raises(symadj.InvalidArgumentError, match="positive integer; got 0"):
        symadj.Revolve(budget=0)


@pytest.mark.parametrize("gradient", ["backprop", "adjoint"])
def test_checkpoints_need_a_recording_mode(gradient):
    with pytest.raises(symadj.InvalidArgumentError, match=f"not gradient='{gradient}'"):
        symadj.solve(lambda t, y: -y, np.ones(1), [0.0, 1.0], gradient=gradient, checkpoints="offload")


def test_stages_need_the_symplectic_mode():
    with pytest.raises(symadj.InvalidArgumentError, match="gradient='checkpoint'"):
        symadj.solve(lambda t, y: -y, np.ones(1), [0.0, 1.0], gradient="checkpoint", checkpoints="stages")


def test_checkpoints_next_to_a_mode_object_is_refused():
    with pytest.raises(symadj.InvalidArgumentError, match="set it on the object"):
        symadj.solve(lambda t, y: -y, np.ones(1), [0.0, 1.0], gradient=symadj.Symplectic(), checkpoints="all")
