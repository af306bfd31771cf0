"""The exact modes' backward walk: NaN or infinite cotangents and steps recomputed
differently from the forward pass are reported, never passed on as a gradient."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import symadj
from symadj import NonFiniteError, RecomputationError, RecomputationWarning

torch = pytest.importorskip("torch")

EXACT = ["symplectic", "checkpoint"]
FIXED = {"method": "rk4", "options": {"step_size": 0.1}}
T = torch.linspace(0.0, 1.0, 5, dtype=torch.float64)


def dropout_net(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(2, 32), torch.nn.Tanh(), torch.nn.Dropout(0.3),
                               torch.nn.Linear(32, 2)).double()


def gradient_of(func, y0, mode, **kwargs):
    y0 = y0.clone().requires_grad_(True)
    symadj.odeint(func, y0, T, gradient=mode, **kwargs).pow(2).sum().backward()
    return y0.grad


# -- recomputation ---------------------------------------------------------------------

@pytest.mark.parametrize("mode", EXACT)
@pytest.mark.parametrize("solver", [FIXED, {"method": "dopri5", "options": {"step_size": 0.1}},
                                    {"method": "bosh3", "options": {"step_size": 0.05}}])
def test_dropout_in_training_mode_is_refused_in_the_backward_pass(mode, solver):
    net = dropout_net()
    y0 = torch.ones(8, 2, dtype=torch.float64)
    with pytest.raises(RecomputationError, match=rf"gradient='{mode}': the backward pass recomputed \d+ of the \d+ "
                       r"steps it compared differently .* from t=0\.9\d* to t=1; .*dropout.*model\.eval\(\)"
                       r".*gradient='backprop'"):
        gradient_of(lambda t, y: net(y), y0, mode, **solver)


@pytest.mark.parametrize("policy", ["all", "stages", "revolve:3", "offload"])
def test_every_checkpoint_policy_compares(policy):
    net = dropout_net()
    y0 = torch.ones(8, 2, dtype=torch.float64)
    with pytest.raises(RecomputationError):
        gradient_of(lambda t, y: net(y), y0, symadj.Symplectic(checkpoints=policy), **FIXED)


def test_a_field_with_hidden_state_is_refused():
    calls = []

    def drifting(t, y):
        calls.append(1)
        return -y * (1.0 + 1e-3 * len(calls))

    with pytest.raises(RecomputationError, match="hidden state"):
        gradient_of(drifting, torch.ones(3, dtype=torch.float64), "symplectic", **FIXED)


ONE_STEP = torch.tensor([0.0, 1.0], dtype=torch.float64)
POLICIES = ["auto", "all", "stages", "revolve:1", "revolve:3", "offload"]
#: Every exact mode with every checkpoint policy it takes.
EXACT_POLICIES = [symadj.Symplectic(checkpoints=p) for p in POLICIES] + [
    symadj.CheckpointedBackprop(checkpoints=p) for p in POLICIES if p != "stages"]


@pytest.mark.parametrize("mode", EXACT_POLICIES, ids=repr)
def test_a_one_step_solve_with_dropout_is_refused(mode):
    """An "ODE block": one rk4 step from 0 to 1. Its only step is the last one walked."""
    net = dropout_net()
    y0 = torch.ones(8, 2, dtype=torch.float64, requires_grad=True)
    ys = symadj.odeint(lambda t, y: net(y), y0, ONE_STEP, method="rk4", gradient=mode)
    with pytest.raises(RecomputationError, match=r"recomputed 1 of the 1 steps it compared differently .* from t=0 "
                       r"to t=1;"):
        ys.pow(2).sum().backward()


@pytest.mark.parametrize("mode", EXACT_POLICIES, ids=repr)
def test_randomness_in_the_last_step_only_is_refused(mode):
    generator = torch.Generator().manual_seed(0)

    def noisy_at_the_end(t, y):
        noise = 1e-3 * torch.rand(y.shape, generator=generator, dtype=y.dtype) if t > 0.9 else 0.0
        return -y + noise

    y0 = torch.ones(3, dtype=torch.float64)
    with pytest.raises(RecomputationError, match=r"recomputed 1 of the 10 steps .* from t=0\.9 to t=1;"):
        gradient_of(noisy_at_the_end, y0, mode, **FIXED)


@pytest.mark.parametrize("mode", EXACT)
@pytest.mark.parametrize("method", ["rk4", "dopri5", "midpoint", "dopri8"])
def test_a_deterministic_one_step_solve_gives_backprops_gradient(mode, method):
    net = dropout_net().eval()
    y0 = torch.ones(8, 2, dtype=torch.float64)

    def gradient(mode):
        y = y0.clone().requires_grad_(True)
        symadj.odeint(lambda t, y: net(y), y, ONE_STEP, method=method, gradient=mode,
                      options={"step_size": 1.0}).pow(2).sum().backward()
        return y.grad

    assert torch.allclose(gradient(mode), gradient("backprop"), rtol=1e-10, atol=0)


@pytest.mark.parametrize("mode", EXACT)
def test_eval_mode_gives_backprops_gradient(mode):
    net = dropout_net().eval()
    y0 = torch.ones(8, 2, dtype=torch.float64)
    reference = gradient_of(lambda t, y: net(y), y0, "backprop")
    assert torch.allclose(gradient_of(lambda t, y: net(y), y0, mode), reference, rtol=1e-10, atol=0)


def test_warn_and_off_choose_what_happens():
    net = dropout_net()
    y0 = torch.ones(8, 2, dtype=torch.float64)
    with pytest.warns(RecomputationWarning, match="recomputed 10 of the 10 steps"):
        grad = gradient_of(lambda t, y: net(y), y0, symadj.CheckpointedBackprop(recomputation="warn"), **FIXED)
    assert torch.isfinite(grad).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gradient_of(lambda t, y: net(y), y0, symadj.Symplectic(recomputation="off"), **FIXED)
    assert symadj.Symplectic(recomputation="warn") != symadj.Symplectic()
    assert repr(symadj.CheckpointedBackprop(checkpoints="all", recomputation="off")) == (
        "CheckpointedBackprop(checkpoints=AllSteps(), recomputation='off')")
    with pytest.raises(symadj.InvalidArgumentError, match="recomputation must be one of 'raise', 'warn', 'off'"):
        symadj.Symplectic(recomputation="ignore")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", ["dopri5", "tsit5", "dopri8", "rk4", "midpoint"])
def test_no_false_alarm_on_long_deterministic_solves(dtype, method):
    """A stiff-ish MLP field over many steps and outputs, in both precisions: the rounding of
    a recomputation stays below the threshold."""
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(4, 64), torch.nn.Tanh(), torch.nn.Linear(64, 4)).to(dtype)
    y0 = torch.randn(32, 4, dtype=dtype) * 3
    t = torch.linspace(0.0, 5.0, 60)
    kwargs = {"options": {"step_size": 0.1}} if method in ("rk4", "midpoint") else {"rtol": 1e-7, "atol": 1e-7}
    for policy in ("all", "stages", "revolve:4"):
        y = y0.clone().requires_grad_(True)
        sol = symadj.solve(lambda t, y: net(y) - 0.5 * y, y, t, method=method, checkpoints=policy, **kwargs)
        sol.ys.square().sum().backward()
        assert int(sol.stats.n_accepted) >= 5


# -- non-finite cotangents ------------------------------------------------------------


def kinked(t, y):
    """Finite values everywhere; below 1 the derivative is that of sqrt(0·y): 0·inf = NaN."""
    return -torch.sqrt(torch.where(y > 1.0, y - 1.0, 0.0 * y)) - 0.1 * y


@pytest.mark.parametrize("mode", EXACT)
def test_nonfinite_cotangents_in_the_walk_name_the_step(mode):
    y0 = torch.tensor([3.0, 0.5], dtype=torch.float64)
    with pytest.raises(NonFiniteError, match=rf"the backward pass of gradient='{mode}' made NaN or infinite "
                       r"cotangents in the step from t=0\.9 to t=1 .*sqrt or log at 0"):
        gradient_of(kinked, y0, mode, **FIXED)


@pytest.mark.parametrize("mode", EXACT)
def test_nonfinite_cotangents_from_the_caller_pass_through_as_in_backprop(mode):
    y0 = torch.ones(2, dtype=torch.float64, requires_grad=True)
    ys = symadj.odeint(lambda t, y: -y, y0, T, gradient=mode, **FIXED)
    (ys * torch.tensor(float("nan"), dtype=torch.float64)).sum().backward()
    assert torch.isnan(y0.grad).all()


def test_nonfinite_parameter_cotangents_are_reported():
    weight = torch.tensor([0.0, 1.0], dtype=torch.float64, requires_grad=True)

    def field(t, y):
        return -torch.sqrt(weight) * y  # d sqrt(w)/dw is infinite at w = 0; y's cotangents stay finite

    y0 = torch.ones(2, dtype=torch.float64)
    ys = symadj.odeint(field, y0, T, adjoint_params=[weight], gradient="symplectic", **FIXED)
    with pytest.raises(NonFiniteError, match="in the parameters' cotangents"):
        ys.sum().backward()


# -- JAX: the same reports at run time under jit ----------------------------------------


def test_jax_reports_both_at_run_time():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    ts = jnp.linspace(0.0, 1.0, 5)
    counter = [0]

    def drift():
        counter[0] += 1
        return np.float64(1.0 + 1e-3 * counter[0])

    def hidden_state(t, y):  # a host call with its own state: not a function of (t, y)
        return -y * jax.pure_callback(drift, jax.ShapeDtypeStruct((), jnp.float64))

    def loss(func, mode):
        return lambda y0: jnp.sum(symadj.odeint(func, y0, ts, gradient=mode, **FIXED_JAX) ** 2)

    for mode in EXACT:
        with pytest.raises(Exception, match="RecomputationError: gradient="):
            jax.block_until_ready(jax.jit(jax.grad(loss(hidden_state, mode)))(jnp.ones(2)))
        with pytest.raises(Exception, match="NonFiniteError: the backward pass"):
            kinked_jax = lambda t, y: -jnp.sqrt(jnp.where(y > 1.0, y - 1.0, 0.0 * y)) - 0.1 * y  # noqa: E731
            jax.block_until_ready(jax.jit(jax.grad(loss(kinked_jax, mode)))(jnp.array([3.0, 0.5])))
    reference = jax.grad(loss(lambda t, y: -jnp.sin(y), "backprop"))(jnp.ones(2))
    for mode in ("symplectic", "checkpoint", symadj.Symplectic(recomputation="off")):
        deterministic = jax.jit(jax.grad(loss(lambda t, y: -jnp.sin(y), mode)))(jnp.ones(2))
        assert np.allclose(deterministic, reference, rtol=1e-10, atol=0)


FIXED_JAX = {"method": "rk4", "options": {"step_size": 0.1, "max_steps": 16}}


# One policy in the default run (each case compiles its own programs), the rest in the slow step.
@pytest.mark.parametrize("mode", [m if i == 0 else pytest.param(m, marks=pytest.mark.slow)
                                  for i, m in enumerate(m for m in EXACT_POLICIES if "Offload" not in repr(m))],
                         ids=repr)
def test_jax_compares_the_last_step_under_jit(mode):
    """One step, and randomness in the last of ten: a traced check that fails at run time;
    the deterministic field passes and equals backprop."""
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    counter = [0]

    def drift():
        counter[0] += 1
        return np.float64(1.0 + 1e-3 * counter[0])

    def hidden_state(t, y):
        return -y * jax.pure_callback(drift, jax.ShapeDtypeStruct((), jnp.float64))

    def last_step_only(t, y):
        return jnp.where(t > 0.9, hidden_state(t, y), -y)

    def loss(func, mode, ts, step_size):
        options = {"step_size": step_size, "max_steps": 16}
        return lambda y0: jnp.sum(symadj.odeint(func, y0, ts, method="rk4", gradient=mode, options=options) ** 2)

    one_step, ten_steps = (jnp.array([0.0, 1.0]), 1.0), (jnp.linspace(0.0, 1.0, 5), 0.1)
    for func, (ts, step_size), where in ((hidden_state, one_step, "1 of the 1 steps"),
                                         (last_step_only, ten_steps, "1 of the 10 steps")):
        with pytest.raises(Exception, match=f"RecomputationError: gradient=.*recomputed {where}"):
            jax.block_until_ready(jax.jit(jax.grad(loss(func, mode, ts, step_size)))(jnp.ones(2)))
    reference = jax.grad(loss(lambda t, y: -jnp.sin(y), "backprop", *one_step))(jnp.ones(2))
    exact = jax.jit(jax.grad(loss(lambda t, y: -jnp.sin(y), mode, *one_step)))(jnp.ones(2))
    assert np.allclose(exact, reference, rtol=1e-10, atol=0)
