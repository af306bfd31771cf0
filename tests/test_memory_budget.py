"""checkpoints="auto": the fastest exact schedule within a memory budget, the same gradient
whatever it picks, and JAX storage sized by the budget rather than by max_steps."""

from __future__ import annotations

import pytest
from conftest import jax_rotating_problem, torch_rotating_field

import symadj
from symadj import Auto, InvalidArgumentError, Schedule

END = 10.0
TOL = 1e-7
PROBLEMS = [("dopri5", None), ("rk4", {"step_size": 0.05})]


def test_sizes_parse_and_name_the_argument():
    assert symadj.parse_bytes("512MiB") == 512 * 2**20
    assert symadj.parse_bytes("2GiB") == 2 * 2**30
    assert symadj.parse_bytes("100MB") == 10**8
    assert symadj.parse_bytes("1.5 KiB") == 1536
    assert symadj.parse_bytes(4096) == 4096
    for bad in ("lots", "-1MiB", "12 parsecs", -5, 1.5, True):
        with pytest.raises(InvalidArgumentError, match=r"Auto\(memory=\.\.\.\)=.* is not a size"):
            Auto(memory=bad)


def test_auto_is_the_default_of_the_exact_modes():
    assert symadj.Symplectic().checkpoints == Auto()
    # stage states serve the symplectic adjoint only
    assert symadj.CheckpointedBackprop().checkpoints == Auto(stage_states=False)
    assert repr(symadj.Symplectic()) == "Symplectic()"
    assert symadj.Symplectic(memory="2GiB").checkpoints == Auto(memory=2 * 2**30)
    assert symadj.as_checkpoint_policy("auto:64MiB") == Auto(memory="64MiB")
    with pytest.raises(InvalidArgumentError, match="memory= is the budget of checkpoints='auto'"):
        symadj.Symplectic(checkpoints="all", memory="1GiB")


def _torch_run(policy, method, options):
    torch = pytest.importorskip("torch")
    func = torch_rotating_field()
    y0 = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    sol = symadj.solve(func, y0, torch.linspace(0.0, END, 7, dtype=torch.float64), method=method, rtol=TOL,
                       atol=TOL, options=options, checkpoints=policy)
    forward_calls = func.calls
    (sol.ys ** 2 + sol.ys).sum().backward()
    return [y0.grad, *(p.grad for p in func.parameters())], sol.stats, func.calls - forward_calls


@pytest.mark.parametrize(("method", "options"), PROBLEMS, ids=[m for m, _ in PROBLEMS])
def test_torch_every_regime_gives_the_same_gradient_to_the_bit(method, options):
    reference, stats, plain_calls = _torch_run("all", method, options)
    steps, state = int(stats.n_accepted), 4 * 3 * 8
    stage_states = 7 if method == "dopri5" else 4
    budgets = {
        Schedule.STAGES: None,
        Schedule.STEPS: stage_states * state * steps // 2,  # the stage states outgrow it mid-solve
        Schedule.THINNED: state * 16,
    }
    for expected, memory in [*budgets.items(), (Schedule.THINNED, state * 2)]:
        grads, stats, calls = _torch_run(Auto(memory=memory), method, options)
        assert Schedule(int(stats.schedule)) is expected, memory
        assert all(got.equal(want) for got, want in zip(grads, reference)), memory
        held = int(stats.checkpoint_bytes) - steps * 2 * 8  # the per-step time and step size are not budgeted
        assert held <= (memory or 2**30)
        if expected is Schedule.STAGES:
            assert calls < plain_calls and int(stats.extra_fevals) == 0  # no recomputation at all
        elif expected is Schedule.STEPS:
            assert calls == plain_calls and int(stats.extra_fevals) == 0
        else:
            assert calls - plain_calls == int(stats.extra_fevals) > 0
    # 16 states for about 200 steps: the recomputation stays about one forward pass.
    _, thinned, _ = _torch_run(Auto(memory=state * 16), method, options)
    per_step = 6 if method == "dopri5" else 4
    assert int(thinned.extra_fevals) <= 2 * steps * per_step


def test_a_budget_below_two_states_is_refused_with_the_smallest_that_works():
    torch = pytest.importorskip("torch")
    y0 = torch.ones(1000, dtype=torch.float64, requires_grad=True)  # 8000 bytes
    with pytest.raises(InvalidArgumentError, match=r"holds 1 state\(s\) of 7.81KiB.*give memory=15.6KiB or more"):
        symadj.odeint(lambda t, y: -y, y0, [0.0, 1.0], checkpoints=Auto(memory=10_000))


def _jax_run(policy, method, options, max_steps=4096):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    func, y0, params = jax_rotating_problem()
    t = jnp.linspace(0.0, END, 7)

    @jax.jit
    def loss(params, y0):
        sol = symadj.solve(func, y0, t, args=params, method=method, rtol=TOL, atol=TOL, checkpoints=policy,
                           options={**(options or {}), "max_steps": max_steps})
        return jnp.sum(sol.ys ** 2 + sol.ys), sol.stats

    (_, stats), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, y0)
    return jnp.concatenate([g.ravel() for g in jax.tree_util.tree_leaves(grads)]), stats


@pytest.mark.slow  # one compilation per budget; the torch test above covers the same regimes in the default run
@pytest.mark.parametrize(("method", "options"), PROBLEMS, ids=[m for m, _ in PROBLEMS])
def test_jax_every_regime_gives_the_same_gradient(method, options):
    import jax.numpy as jnp

    reference, stats = _jax_run("all", method, options)
    state = 4 * 3 * 8
    for expected, memory in [(Schedule.STEPS, None), (Schedule.THINNED, state * 16), (Schedule.THINNED, state * 4)]:
        grads, stats = _jax_run(Auto(memory=memory), method, options)
        assert Schedule(int(stats.schedule)) is expected
        assert float(jnp.max(jnp.abs(grads - reference)) / jnp.max(jnp.abs(reference))) <= 1e-13
        assert (int(stats.extra_fevals) > 0) == (expected is Schedule.THINNED)


@pytest.mark.slow
def test_jax_memory_is_sized_by_the_budget_not_by_max_steps():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    func, _, params = jax_rotating_problem()
    y0 = jnp.ones((64, 3))
    t = jnp.linspace(0.0, 1.0, 3)

    def temp(max_steps, policy):
        def loss(params, y0):
            return jnp.sum(symadj.odeint(func, y0, t, args=params, checkpoints=policy,
                                         options={"max_steps": max_steps}) ** 2)

        compiled = jax.jit(jax.grad(loss)).lower(params, y0).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    state = 64 * 3 * 8
    budget = Auto(memory=32 * state)
    small, large = temp(1000, budget), temp(20_000, budget)
    # Only the two per-step scalars (time and step size) grow with max_steps.
    assert large - small <= (20_000 - 1000) * 2 * 8 * 1.1
    assert temp(20_000, "all") - temp(1000, "all") >= (20_000 - 1000) * state


def test_jax_needs_four_states_in_its_budget():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    y0 = jnp.ones(100)  # 800 bytes
    with pytest.raises(InvalidArgumentError, match=r"holds 3 state\(s\) of 800B.*at least 4: give memory=3.12KiB"):
        jax.grad(lambda y: jnp.sum(symadj.odeint(lambda t, y, a: -y, y, jnp.array([0.0, 1.0]), args=(),
                                                 checkpoints=Auto(memory=2400))))(y0)


def test_jax_symplectic_keeps_no_copy_of_the_parameter_cotangent_between_two_output_times():
    # With t = [t0, t1] no output lies inside a step, so the step adjoint has no branch on
    # interpolated outputs: compiled, that branch copied θ̄ in and out of it at every step,
    # which cost a copy of every parameter (the 8 × 512 MLP: 10.4 MiB of temporary memory,
    # diffrax's RecursiveCheckpointAdjoint 9.6 MiB; without the branch 4.2 MiB).
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    params = [jax.random.normal(keys[0], (4, 256)) / 2, jax.random.normal(keys[1], (256, 256)) / 16,
              jax.random.normal(keys[2], (256, 256)) / 16, jax.random.normal(keys[3], (256, 4)) / 16]

    def field(t, y, p):
        for weight in p[:-1]:
            y = jnp.tanh(y @ weight)
        return y @ p[-1]

    def loss(p, y0):
        return jnp.sum(symadj.odeint(field, y0, jnp.array([0.0, 1.0]), args=p, options={"max_steps": 64})[-1] ** 2)

    y0 = jnp.ones((8, 4), dtype=params[0].dtype)
    temp = jax.jit(jax.grad(loss)).lower(params, y0).compile().memory_analysis().temp_size_in_bytes
    assert temp < sum(weight.size * weight.dtype.itemsize for weight in params)
