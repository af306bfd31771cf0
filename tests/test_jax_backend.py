"""JAX backend: every gradient mode against backprop, diffrax, vmap, recompilation, memory, errors."""

from __future__ import annotations

import pytest
from conftest import SHIPPED

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import symadj  # noqa: E402

FIXED_STEP = ["euler", "midpoint", "heun2", "ralston2", "rk4", "rk38", "ssprk3", "heun3"]
TOLERANCE = {"heun_euler": 1e-5, "fehlberg2": 1e-4, "bosh3": 1e-7, "dopri8": 1e-11, "dopri87": 1e-11}
CHECKPOINT_FAST = ["euler", "heun_euler", "bosh3", "rk4", "dopri5", "dopri8"]
END = 4.0
WEIGHTS = jnp.array([0.0, 0.3, -1.0, 2.0])
# These tests compile many small programs: XLA's cheapest optimisation level keeps them fast
# and changes no result beyond rounding.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True,
                "xla_cpu_parallel_codegen_split_count": 1}


def linear(t, y, matrix):
    return y @ matrix.T


def mlp(t, y, params):
    hidden = jnp.tanh(y @ params["w1"].T + params["b1"])
    hidden = jnp.tanh(hidden @ params["w2"].T + params["b2"])
    rotation = jnp.array([[0.0, 3.0, 0.0], [-3.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    return y @ rotation.T + (hidden @ params["w3"].T + params["b3"]) * jnp.cos(t)


def pendulum(t, state, params):
    """A dict state holding a tuple, with a parameter tuple holding a Python float."""
    stiffness, damping, scale = params
    angle, (velocity, decay) = state["angle"], state["velocity"]
    return {"angle": velocity,
            "velocity": (scale * (-stiffness * jnp.sin(angle) - damping * velocity), -damping * decay)}


def problem(name):
    """(func, y0, args) with the numbers of the torch tests."""
    rng = np.random.default_rng(0)
    if name == "linear":
        matrix = jnp.array([[-0.1, 2.0, 0.0], [-2.0, -0.1, 0.3], [0.0, -0.3, -0.2]])
        return linear, jnp.array([[1.0, 0.5, -0.2]]), matrix
    if name == "mlp":
        shapes = {"w1": (16, 3), "b1": (16,), "w2": (16, 16), "b2": (16,), "w3": (3, 16), "b3": (3,)}
        params = {k: jnp.asarray(rng.uniform(-0.5, 0.5, shape)) for k, shape in shapes.items()}
        return mlp, jnp.asarray(rng.normal(size=(4, 3))), params
    state = {"angle": jnp.array([1.0, -0.5]), "velocity": (jnp.array([0.0, 0.3]), jnp.array([0.7]))}
    return pendulum, state, (jnp.array([9.0, 4.0]), jnp.array(0.1), 1.0)


def solver_kwargs(method):
    if method in FIXED_STEP:
        return {"options": {"step_size": END / 25, "max_steps": 64}}
    tol = TOLERANCE.get(method, 1e-6)
    return {"rtol": tol, "atol": tol, "options": {"max_steps": 4096}}


def loss_fn(func, method, mode, ts):
    def loss(y0, args):
        sol = symadj.solve(func, y0, ts, args=args, method=method, gradient=mode, **solver_kwargs(method))
        value = sum(jnp.sum(WEIGHTS * jnp.sum(ys ** 2 + ys, axis=tuple(range(1, ys.ndim))))
                    for ys in jax.tree_util.tree_leaves(sol.ys))
        return value, sol.stats.n_accepted

    return loss


def relative_error(a, b):
    return float(jnp.linalg.norm(jnp.ravel(a - b)) / max(float(jnp.linalg.norm(jnp.ravel(b))), 1e-300))


def max_relative_error(grads, reference):
    """The worst relative error over every leaf of (y0, args) gradients."""
    return max(relative_error(g, r) for g, r in zip(jax.tree_util.tree_leaves(grads),
                                                     jax.tree_util.tree_leaves(reference)))


def combined(t, state, args):
    """The three problems in one solve (one compilation per tableau): a dict state holding
    the linear system, the MLP batch and the pendulum's nested dict/tuple."""
    return {"linear": linear(t, state["linear"], args["linear"]), "mlp": mlp(t, state["mlp"], args["mlp"]),
            "pytree": pendulum(t, state["pytree"], args["pytree"])}


def problems(names):
    parts = {name: problem(name) for name in names}
    if len(names) == 1:
        return parts[names[0]]
    return (combined, {name: part[1] for name, part in parts.items()},
            {name: part[2] for name, part in parts.items()})


def compare_modes(method, names, modes=("symplectic", "checkpoint")):
    func, y0, args = problems(names)
    ts = jnp.linspace(0.0, END, 4)

    def all_modes(y0, args):
        return {mode: jax.grad(loss_fn(func, method, mode, ts), argnums=(0, 1), has_aux=True)(y0, args)
                for mode in ("backprop", *modes)}

    results = jax.jit(all_modes, compiler_options=FAST_COMPILE)(y0, args)
    reference, steps = results["backprop"]
    assert int(steps) >= 20
    assert len(jax.tree_util.tree_leaves(reference)) == len(jax.tree_util.tree_leaves((y0, args)))
    assert all(float(jnp.linalg.norm(g)) > 0 for g in jax.tree_util.tree_leaves(reference))
    errors = {}
    for mode in modes:
        grads, mode_steps = results[mode]
        assert int(mode_steps) == int(steps)
        errors[mode] = max_relative_error(grads, reference)
        assert errors[mode] <= 1e-10, mode
    return errors


# One compilation per mode and tableau: the default run takes the schemes of distinct kinds
# (FSAL, high order, fixed step); the slow step takes the rest.
JAX_DEFAULT = {"bosh3", "dopri5"}


@pytest.mark.parametrize("method", [m if m in JAX_DEFAULT else pytest.param(m, marks=pytest.mark.slow)
                                    for m in SHIPPED])
def test_symplectic_and_checkpoint_match_backprop(method):
    """Linear, MLP-with-args and pytree problems, solved together; y0 and every args leaf.

    ``checkpoint`` on a representative set here (each mode costs a compilation); on every
    tableau in the slow test below.
    """
    modes = ("symplectic", "checkpoint") if method in CHECKPOINT_FAST else ("symplectic",)
    compare_modes(method, ["linear", "mlp", "pytree"], modes)


# Each problem on its own, for schemes of distinct kinds (FSAL with a zero weight, high order,
# fixed step, a zero first weight, a low-order pair): every tableau is in the combined test above.
PROBLEM_BY_PROBLEM = ["dopri5", "dopri8", "rk4", "midpoint", "heun_euler", "bosh3"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["linear", "mlp", "pytree"])
@pytest.mark.parametrize("method", PROBLEM_BY_PROBLEM)
def test_symplectic_and_checkpoint_match_backprop_problem_by_problem(method, name):
    """Each problem with its own step sizes (three times the compilations of the test above)."""
    compare_modes(method, [name])


def test_linear_gradient_matches_the_matrix_exponential():
    func, y0, matrix = problem("linear")
    weights = jnp.array([1.0, -2.0, 0.5])

    def loss(y0, matrix, end):
        ys = symadj.odeint(func, y0, jnp.array([0.0, end]), args=matrix, rtol=1e-11, atol=1e-12)
        return jnp.sum(ys[-1] * weights)

    def exact(y0, matrix, end):
        return jnp.sum((y0 @ jax.scipy.linalg.expm(end * matrix).T) * weights)

    grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(y0, matrix, 2.0)
    expected = jax.grad(exact, argnums=(0, 1))(y0, matrix, 2.0)
    assert max_relative_error(grads, expected) < 1e-8


@pytest.mark.parametrize("method, solver", [("dopri5", "Dopri5"), ("dopri8", "Dopri8"), ("tsit5", "Tsit5"),
                                            ("bosh3", "Bosh3")])
def test_forward_solution_agrees_with_diffrax(method, solver):
    diffrax = pytest.importorskip("diffrax")
    func, y0, matrix = problem("linear")
    ts = jnp.linspace(0.0, END, 5)
    rtol, atol = 1e-6, 1e-9
    exact = jnp.stack([y0 @ jax.scipy.linalg.expm(t * matrix).T for t in ts])
    ours = jax.jit(lambda y0, m: symadj.odeint(func, y0, ts, args=m, method=method, rtol=rtol, atol=atol))(y0, matrix)
    theirs = diffrax.diffeqsolve(
        diffrax.ODETerm(func), getattr(diffrax, solver)(), ts[0], ts[-1], None, y0, args=matrix,
        saveat=diffrax.SaveAt(ts=ts), stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol)).ys
    scale = float(jnp.max(jnp.abs(exact)))
    ours_error = float(jnp.max(jnp.abs(ours - exact)))
    theirs_error = float(jnp.max(jnp.abs(theirs - exact)))
    # Global error over a few dozen steps: within a small multiple of the tolerance asked,
    # and of the same size as diffrax's at the same tolerances.
    assert ours_error <= 20 * (rtol * scale + atol)
    assert ours_error <= 10 * theirs_error + 1e-3 * rtol * scale
    assert float(jnp.max(jnp.abs(ours - theirs))) <= 20 * (rtol * scale + atol)


@pytest.mark.slow
def test_vmap_over_initial_conditions_equals_a_loop():
    func, _, params = problem("mlp")
    batch = jnp.asarray(np.random.default_rng(1).normal(size=(3, 2, 3)))
    ts = jnp.linspace(0.0, 2.0, 3)

    def loss(y0, params):
        return jnp.sum(symadj.odeint(func, y0, ts, args=params, rtol=1e-8, atol=1e-8) ** 2)

    value_and_grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    values, (y0_grads, param_grads) = jax.vmap(value_and_grad, in_axes=(0, None))(batch, params)
    for i in range(batch.shape[0]):
        value, (y0_grad, param_grad) = value_and_grad(batch[i], params)
        assert relative_error(values[i], value) < 1e-12
        assert relative_error(y0_grads[i], y0_grad) < 1e-12
        assert max_relative_error(jax.tree_util.tree_map(lambda g, i=i: g[i], param_grads), param_grad) < 1e-12


def test_tolerances_times_and_args_do_not_recompile():
    traces = []

    def func(t, y, params):
        traces.append(1)  # runs at trace time only
        return mlp(t, y, params)

    _, y0, params = problem("mlp")

    @jax.jit
    def grad_fn(y0, ts, params, rtol, atol):
        return jax.grad(lambda y0, params: jnp.sum(symadj.odeint(func, y0, ts, args=params, rtol=rtol,
                                                                  atol=atol) ** 2), argnums=(0, 1))(y0, params)

    first = grad_fn(y0, jnp.array([0.0, 0.5, 1.0]), params, 1e-6, 1e-8)
    traced = len(traces)
    assert traced > 0
    other_params = jax.tree_util.tree_map(lambda p: 1.1 * p, params)
    second = grad_fn(y0, jnp.array([0.0, 0.7, 1.5]), other_params, 1e-9, 1e-10)
    third = grad_fn(y0 + 1, jnp.array([0.0, 0.2, 0.3]), params, 1e-4, 1e-4)
    assert len(traces) == traced
    assert grad_fn._cache_size() == 1
    assert relative_error(first[0], second[0]) > 1e-3 and relative_error(first[0], third[0]) > 1e-3


@pytest.mark.parametrize("mode", ["symplectic", "checkpoint", "adjoint", "backprop"])
def test_grad_of_a_jitted_solve_with_traced_times_tolerances_and_integer_args(mode):
    """``jax.grad(jax.jit(f))``: the custom gradient must not capture jit's tracers."""

    def func(t, y, args):
        rate, power = args
        return -rate * y ** power

    def loss(y0, rate, power, ts, rtol):
        ys = symadj.odeint(func, y0, ts, args=(rate, power), rtol=rtol, atol=1e-10, gradient=mode)
        return jnp.sum(ys[1:] * jnp.array([[1.0], [2.0]]))

    inputs = (jnp.array([1.0, 0.5]), jnp.array(0.7), jnp.array(2), jnp.array([0.0, 0.6, 1.5]), 1e-9)
    outside = jax.grad(jax.jit(loss), argnums=(0, 1))(*inputs)
    inside = jax.jit(jax.grad(loss, argnums=(0, 1)))(*inputs)
    assert max_relative_error(outside, inside) < 1e-13
    # y' = -r y² has y(t) = y0 / (1 + r t y0): the exact gradient, to the tolerance asked.
    exact = jax.grad(lambda y0, r: jnp.sum((y0 / (1 + r * jnp.array([[0.6], [1.5]]) * y0))
                                           * jnp.array([[1.0], [2.0]])), argnums=(0, 1))(*inputs[:2])
    assert max_relative_error(outside, exact) < 1e-6


@pytest.mark.slow  # a dozen compilations
def test_every_mode_gives_time_gradients():
    def loss(ts, mode):
        return jnp.sum(symadj.odeint(lambda t, y, a: -a * y, jnp.array([1.0, 2.0]), ts, args=jnp.array(0.5),
                                     rtol=1e-10, atol=1e-12, gradient=mode)[1:] * jnp.array([[1.0], [3.0]]))

    ts = jnp.array([0.0, 0.4, 1.0])
    # L = Σ_k w_k Σ y0 exp(-a (t_k - t_0)): dL/dt_k = -a w_k Σ y(t_k), dL/dt_0 = minus their sum.
    later = -0.5 * jnp.array([1.0, 3.0]) * 3.0 * jnp.exp(-0.5 * (ts[1:] - ts[0]))
    want = jnp.concatenate([-jnp.sum(later, keepdims=True), later])
    for mode in ("symplectic", "checkpoint", "backprop", "adjoint"):
        for differentiate in (jax.grad(loss), jax.grad(jax.jit(loss, static_argnums=1))):
            assert relative_error(differentiate(ts, mode), want) < 1e-8, mode


def test_compiled_memory_grows_with_steps_times_state_for_symplectic_only():
    _, _, params = problem("mlp")
    rng = np.random.default_rng(2)
    width = 64
    params = {"w1": jnp.asarray(rng.uniform(-0.3, 0.3, (width, 3))), "b1": jnp.zeros(width),
              "w2": jnp.asarray(rng.uniform(-0.3, 0.3, (width, width))), "b2": jnp.zeros(width),
              "w3": jnp.asarray(rng.uniform(-0.3, 0.3, (3, width))), "b3": jnp.zeros(3)}
    y0 = jnp.asarray(rng.normal(size=(32, 3)))
    state_bytes = y0.size * 8

    def temp_bytes(mode, steps):
        def loss(y0, params):
            # checkpoints="all": one state per step, the schedule "auto" takes while they fit.
            policy = "all" if mode == "symplectic" else None
            ys = symadj.odeint(mlp, y0, jnp.array([0.0, 1.0]), args=params, method="dopri5", gradient=mode,
                               options={"step_size": 1.0 / steps, "max_steps": steps + 2}, checkpoints=policy)
            return jnp.sum(ys ** 2)

        compiled = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(y0, params).compile(FAST_COMPILE)
        return compiled.memory_analysis().temp_size_in_bytes

    symplectic = {n: temp_bytes("symplectic", n) for n in (20, 80)}
    backprop = {n: temp_bytes("backprop", n) for n in (20, 80)}
    symplectic_growth = symplectic[80] - symplectic[20]
    backprop_growth = backprop[80] - backprop[20]
    # Symplectic keeps one state (plus its time and step) per step: 60 more steps, 60 more
    # states (XLA's buffer assignment shares a little of it with other temporaries).
    assert 0.5 * 60 * state_bytes <= symplectic_growth <= 2 * 60 * (state_bytes + 16)
    # Backprop keeps every stage's activations (two hidden layers of width 64 per stage).
    assert backprop_growth > 100 * symplectic_growth
    assert backprop[80] > 10 * symplectic[80]


def test_max_steps_raises_our_error_eagerly_and_under_jit():
    func, y0, params = problem("mlp")
    ts = jnp.array([0.0, 4.0])
    with pytest.raises(symadj.MaxStepsError, match="max_steps=5 step attempts were not enough"):
        symadj.odeint(func, y0, ts, args=params, options={"max_steps": 5})
    jitted = jax.jit(lambda y0: symadj.odeint(func, y0, ts, args=params, options={"max_steps": 5}))
    with pytest.raises(Exception, match="MaxStepsError: max_steps=5 step attempts were not enough"):
        jax.block_until_ready(jitted(y0))
    sol = jax.jit(lambda y0: symadj.solve(func, y0, ts, args=params, options={"max_steps": 5}, throw=False))(y0)
    assert sol.status is symadj.Status.MAX_STEPS and bool(jnp.all(jnp.isnan(sol.ys[-1])))


def test_state_leaves_of_wrong_dtype_are_refused():
    ts = jnp.array([0.0, 1.0])
    with pytest.raises(symadj.InvalidArgumentError, match="pass a real or complex floating dtype"):
        symadj.odeint(lambda t, y, a: y, {"a": jnp.ones(2), "n": jnp.arange(2)}, ts, args=())
    with pytest.raises(symadj.InvalidArgumentError, match="must share one dtype"):
        symadj.odeint(lambda t, y, a: y, (jnp.ones(2), jnp.ones(2, dtype=jnp.float32)), ts, args=())
    with pytest.raises(symadj.InvalidArgumentError, match="no backend handles arrays of type builtins.float"):
        symadj.odeint(lambda t, y, a: y, {"a": jnp.ones(2), "b": 1.0}, ts, args=())
    with pytest.raises(symadj.InvalidArgumentError, match="structure differs from y0"):
        symadj.odeint(lambda t, y, a: (y["a"],), {"a": jnp.ones(2), "b": jnp.ones(1)}, ts, args=())
    with pytest.raises(symadj.InvalidArgumentError, match="expected float32"):
        symadj.odeint(lambda t, y, a: y * jnp.ones(2, dtype=jnp.float64), jnp.ones(2, dtype=jnp.float32), ts,
                      args=())
    with pytest.raises(symadj.InvalidArgumentError, match="drop adjoint_params"):
        symadj.odeint(lambda t, y: -y, jnp.ones(2), ts, adjoint_params=[jnp.ones(1)])


def test_float32_state_is_not_promoted_by_float64_times():
    y0 = jnp.ones(3, dtype=jnp.float32)
    ys = symadj.odeint(lambda t, y, a: -a * y * t, y0, jnp.array([0.0, 1.0]), args=jnp.float32(2.0),
                       rtol=1e-5, atol=1e-6)
    assert ys.dtype == jnp.float32
    assert float(jnp.max(jnp.abs(ys[-1] - jnp.exp(-1.0)))) < 1e-4
    grad = jax.grad(lambda a: jnp.sum(symadj.odeint(lambda t, y, a: -a * y * t, y0, jnp.array([0.0, 1.0]),
                                                    args=a, rtol=1e-5, atol=1e-6)[-1]))(jnp.float32(2.0))
    assert grad.dtype == jnp.float32 and abs(float(grad) + 3 * 0.5 * np.exp(-1.0)) < 1e-4


def test_plugin_registers_without_importing_jax():
    import subprocess
    import sys

    code = ("import sys, symadj; names = [b.name for b in symadj.list_backends()]; "
            "assert 'jax' in names, names; assert 'jax' not in sys.modules, 'jax imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_check_under_jit_calls_the_host_only_where_it_fails(monkeypatch):
    # A host call costs up to a millisecond: the continuous adjoint checks each backward
    # segment, so a passing check must not make one.
    backend = symadj.get_backend("jax")
    executed = []
    staged = jax.debug.callback

    def counting(fn, *args, **kwargs):
        def counted(*values):
            executed.append(1)
            return fn(*values)

        return staged(counted, *args, **kwargs)

    monkeypatch.setattr(jax.debug, "callback", counting)

    @jax.jit
    def checked(x):
        backend.check(x > 0, lambda x: symadj.InvalidArgumentError(f"x={float(x)} is not positive"), x)
        return x * 2

    for _ in range(3):
        checked(jnp.asarray(1.0)).block_until_ready()
    assert executed == []
    with pytest.raises(Exception, match="x=-1.0 is not positive"):
        checked(jnp.asarray(-1.0)).block_until_ready()
    assert executed == [1]
    # Under vmap the branch is a select: the host judges each element.
    with pytest.raises(Exception, match="x=-2.0 is not positive"):
        jax.vmap(checked)(jnp.asarray([1.0, -2.0])).block_until_ready()



@pytest.mark.slow  # five compiled programs, ~13 s on 2 cores
def test_output_times_cost_field_evaluations_only_where_they_are_differentiated():
    # dL/dt_k = g_k . f(t_k, y_k) takes f at every output: evaluated in the backward pass, and
    # only where the times are differentiated (concrete times never are).
    calls = []

    def decay(t, y, rate):
        jax.debug.callback(lambda: calls.append(1))
        return -rate * y

    ts = jnp.linspace(0.0, 1.0, 50)

    def loss(rate, ts):
        sol = symadj.solve(decay, jnp.ones(3), ts, args=rate, rtol=1e-6, atol=1e-8)
        return jnp.sum(sol.ys ** 2), sol.stats.n_fevals

    def count(fn, *args):
        calls.clear()
        jax.block_until_ready(fn(*args))
        return len(calls)

    n_fevals = int(loss(1.0, ts)[1])
    assert count(jax.jit(lambda rate: loss(rate, ts)), 1.0) == n_fevals
    assert count(jax.jit(loss), 1.0, ts) == n_fevals + 1  # the start's rate, for dL/dt_0
    by_rate = jax.jit(jax.grad(loss, has_aux=True))
    walked = count(jax.jit(jax.grad(lambda rate: loss(rate, ts), has_aux=True)), 1.0)
    assert count(by_rate, 1.0, ts) == walked + 1
    by_times = jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True))
    assert count(by_times, 1.0, ts) == walked + len(ts)
    (_, time_grads), _ = by_times(1.0, ts)

    def backprop_loss(ts):
        sol = symadj.solve(decay, jnp.ones(3), ts, args=1.0, rtol=1e-6, atol=1e-8, gradient="backprop")
        return jnp.sum(sol.ys**2)

    want = jax.jit(jax.grad(backprop_loss))(ts)
    np.testing.assert_allclose(np.asarray(time_grads), np.asarray(want), rtol=1e-10, atol=1e-12)


@pytest.mark.slow  # three compiled programs, ~20 s on 2 cores
def test_backprop_keeps_forward_mode_autodiff_with_traced_times():
    ts = jnp.linspace(0.0, 1.0, 5)

    def loss(rate, ts):
        sol = symadj.solve(lambda t, y, r: -r * y, jnp.ones(2), ts, args=rate, gradient="backprop",
                           options={"max_steps": 64}, rtol=1e-10, atol=1e-12)
        return jnp.sum(sol.ys**2)

    # L = 2 sum_k exp(-2 r t_k): dL/dr = -4 sum_k t_k exp(-2 r t_k), d2L/dr2 = 8 sum_k t_k^2 exp(-2 r t_k)
    weights = np.exp(-2.0 * np.asarray(ts))
    np.testing.assert_allclose(float(jax.jacfwd(loss)(1.0, ts)), -4 * np.sum(np.asarray(ts) * weights), rtol=1e-8)
    np.testing.assert_allclose(float(jax.hessian(loss)(1.0, ts)), 8 * np.sum(np.asarray(ts) ** 2 * weights),
                               rtol=1e-6)
    np.testing.assert_allclose(np.asarray(jax.jacfwd(loss, argnums=1)(1.0, ts))[1:], -4 * weights[1:], rtol=1e-8)
