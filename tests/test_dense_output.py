"""Dense output: outputs interpolated inside steps, steps independent of the outputs, and
gradients through the interpolant equal to backpropagation through the same discrete solve."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from conftest import SHIPPED, jax_rotating_problem, torch_rotating_field

import symadj

torch = pytest.importorskip("torch")

END = 2.0
FIXED_STEP = {"euler", "midpoint", "heun2", "ralston2", "rk4", "rk38", "ssprk3", "heun3"}
# Loose enough that each adaptive scheme takes a handful of steps on [0, END].
TOLERANCE = {"heun_euler": 1e-1, "fehlberg2": 1e-2, "bosh3": 1e-2, "cash_karp": 1e-3, "dopri5": 1e-3,
             "tsit5": 1e-3, "dopri8": 1e-5}
MOST_STEPS = 12  # ~100 outputs in at most this many steps: several outputs inside every step
WEIGHTS_SEED = 1


def _times(n: int = 101) -> np.ndarray:
    """``n`` outputs on [0, END], with 0.5 and 1.0 among them (step ends, see ``_options``)."""
    return np.unique(np.concatenate([np.linspace(0.0, END, n), [0.5, 1.0]]))


def _options(name: str) -> dict:
    # Fixed-step schemes: steps of 0.25 (0.5 and 1.0 are step ends); adaptive ones land on
    # 0.5 and 1.0 through step_t. Either way some outputs sit exactly at a step's end.
    return {"step_size": 0.25} if name in FIXED_STEP else {"step_t": [0.5, 1.0]}


def _torch_gradients(name: str, mode, t, checkpoints=None):
    func = torch_rotating_field()
    y0 = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    weights = torch.randn(len(t), 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(WEIGHTS_SEED))
    sol = symadj.solve(func, y0, torch.as_tensor(t), method=name, rtol=TOLERANCE.get(name, 1e-6),
                       atol=TOLERANCE.get(name, 1e-6), gradient=mode, options=_options(name), checkpoints=checkpoints)
    (weights * torch.sin(sol.ys)).sum().backward()
    return sol, [y0.grad, *(p.grad for p in func.parameters())]


def _relative(got, want):
    return max(float((g - w).norm() / w.norm()) for g, w in zip(got, want))


@pytest.mark.parametrize("name", SHIPPED)
def test_torch_exact_modes_equal_backprop_with_many_outputs_per_step(name):
    t = _times()
    reference, want = _torch_gradients(name, "backprop", t)
    steps = int(reference.stats.n_accepted)
    assert steps <= MOST_STEPS, f"{name} took {steps} steps for {len(t)} outputs"
    for mode, checkpoints in (("symplectic", None), ("checkpoint", None), ("symplectic", "stages"),
                              ("symplectic", "revolve:2")):
        sol, got = _torch_gradients(name, mode, t, checkpoints)
        assert int(sol.stats.n_accepted) == steps
        torch.testing.assert_close(sol.ys, reference.ys, rtol=0, atol=0)
        assert _relative(got, want) <= 1e-10, (mode, checkpoints)


def _reference_solve(name: str, func, y0, t: np.ndarray, h: float):
    """An independent fixed-step RK loop with the tableau's continuous extension, in plain
    torch autograd: steps of ``h`` from t[0], the last one shortened to end at t[-1]."""
    tab = symadj.get_tableau(name)
    a = [[float(x) for x in row] for row in tab.a]
    b = [float(x) for x in tab.b]
    c = [float(x) for x in tab.c]
    dense = [[float(p) for p in row] for row in tab.dense.coefficients]
    outputs, start, y, k_out = [y0], float(t[0]), y0, 1
    while k_out < len(t):
        step = min(h, float(t[-1]) - start)
        if float(t[-1]) - start <= h * (1 + 64 * np.finfo(float).eps):
            step = float(t[-1]) - start
        time = torch.tensor(start, dtype=torch.float64)
        k = []
        for i in range(tab.stages):
            stage = y + step * sum((a[i][j] * k[j] for j in range(i) if a[i][j]), torch.zeros_like(y))
            k.append(func(time + c[i] * step, stage))
        y_next = y + step * sum(bi * ki for bi, ki in zip(b, k))
        end = start + step
        while k_out < len(t) and t[k_out] <= end:
            theta = (t[k_out] - start) / step
            weights = [sum(p * theta ** (e + 1) for e, p in enumerate(row)) for row in dense]
            outputs.append(y + step * sum(w * ki for w, ki in zip(weights, k)))
            k_out += 1
        start, y = end, y_next
    return torch.stack(outputs)


@pytest.mark.parametrize("name", sorted(FIXED_STEP))
def test_torch_fixed_steps_match_an_independent_interpolating_loop(name):
    func = torch_rotating_field()
    y0 = torch.randn(4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    t = np.linspace(0.0, 1.9, 40)  # steps of 0.3: the last one shortened; no output at a step end but the last
    params = list(func.parameters())
    want_ys = _reference_solve(name, func, y0, t, 0.3)
    want = torch.autograd.grad((want_ys ** 2).sum(), [y0, *params])
    sol = symadj.solve(func, y0, torch.as_tensor(t), method=name, options={"step_size": 0.3})
    got = torch.autograd.grad((sol.ys ** 2).sum(), [y0, *params])
    assert int(sol.stats.n_accepted) == 7
    torch.testing.assert_close(sol.ys, want_ys, rtol=1e-13, atol=1e-13)
    assert _relative(got, want) <= 1e-10


def _rotation_problem():
    matrix = np.array([[-0.1, 2.0, 0.0], [-2.0, -0.1, 0.3], [0.0, -0.3, -0.2]])
    y0 = np.array([1.0, 0.5, -0.2])
    eigenvalues, vectors = np.linalg.eig(matrix)
    coefficients = np.linalg.solve(vectors, y0)

    def exact(t):
        return np.real(vectors @ (coefficients[:, None] * np.exp(np.outer(eigenvalues, t)))).T

    return matrix, y0, exact


@pytest.mark.parametrize(("name", "tol", "bound"), [("dopri5", 1e-10, 1e-8), ("tsit5", 1e-10, 1e-8),
                                                     ("dopri8", 1e-12, 1e-9), ("bosh3", 1e-8, 1e-5)])
def test_interpolated_outputs_match_the_exact_solution(name, tol, bound):
    matrix, y0, exact = _rotation_problem()
    t = np.linspace(0.0, 10.0, 400)
    sol = symadj.solve(lambda t, y: matrix @ y, y0, t, method=name, rtol=tol, atol=tol)
    ends_only = symadj.solve(lambda t, y: matrix @ y, y0, t[[0, -1]], method=name, rtol=tol, atol=tol)
    assert int(sol.stats.n_accepted) == int(ends_only.stats.n_accepted)  # interpolated, not stepped to
    assert np.max(np.abs(sol.ys - exact(t))) <= bound


def test_interpolated_outputs_agree_with_scipys_dense_output():
    scipy_integrate = pytest.importorskip("scipy.integrate")
    matrix, y0, exact = _rotation_problem()
    t = np.linspace(0.0, 10.0, 333)
    ours = symadj.solve(lambda t, y: matrix @ y, y0, t, method="dopri5", rtol=1e-11, atol=1e-12).ys
    theirs = scipy_integrate.solve_ivp(lambda t, y: matrix @ y, (0.0, 10.0), y0, method="DOP853", t_eval=t,
                                       rtol=1e-12, atol=1e-13).y.T
    assert np.max(np.abs(ours - theirs)) <= 1e-8


def test_steps_do_not_depend_on_the_number_of_outputs():
    matrix, y0, _ = _rotation_problem()
    counts = {n: symadj.solve(lambda t, y: matrix @ y, y0, np.linspace(0.0, 10.0, n), rtol=1e-6).stats
              for n in (2, 20, 200, 2000)}
    assert len({int(s.n_accepted) for s in counts.values()}) == 1
    assert len({int(s.n_fevals) for s in counts.values()}) == 1


def test_land_on_outputs_keeps_the_old_behaviour():
    matrix, y0, exact = _rotation_problem()
    t = np.linspace(0.0, 10.0, 200)
    interpolated = symadj.solve(lambda t, y: matrix @ y, y0, t, rtol=1e-5)
    landed = symadj.solve(lambda t, y: matrix @ y, y0, t, rtol=1e-5, options={"land_on_outputs": True})
    assert int(landed.stats.n_accepted) >= 199 > int(interpolated.stats.n_accepted)
    assert np.max(np.abs(landed.ys - exact(t))) <= 1e-4
    with pytest.raises(symadj.InvalidArgumentError, match="land_on_outputs"):
        symadj.solve(lambda t, y: -y, y0, t, options={"land_on_outputs": "yes"})


def test_a_tableau_without_continuous_extension_lands_on_every_output():
    heun = symadj.get_tableau("heun_euler")
    plain = symadj.Tableau("heun_euler_plain", c=heun.c, a=heun.a, b=heun.b, order=heun.order,
                           embedded=heun.embedded)
    assert plain.dense is None
    matrix, y0, _ = _rotation_problem()
    t = np.linspace(0.0, 1.0, 50)
    sol = symadj.solve(lambda t, y: matrix @ y, y0, t, method=plain, rtol=1e-3)
    assert int(sol.stats.n_accepted) >= 49


def test_fixed_step_solves_no_longer_shorten_steps_at_outputs():
    matrix, y0, exact = _rotation_problem()
    sol = symadj.solve(lambda t, y: matrix @ y, y0, np.linspace(0.0, 1.0, 77), method="rk4",
                       options={"step_size": 0.1})
    assert int(sol.stats.n_accepted) == 10
    assert int(sol.stats.n_fevals) == 41
    assert np.max(np.abs(sol.ys - exact(np.linspace(0.0, 1.0, 77)))) <= 1e-4


def test_decreasing_times_interpolate_and_stay_exact():
    t = np.linspace(1.5, -0.5, 60)
    func = torch_rotating_field()

    def gradients(mode):
        func.zero_grad()
        y0 = torch.ones(2, 3, dtype=torch.float64, requires_grad=True)
        sol = symadj.solve(func, y0, torch.as_tensor(t), rtol=1e-5, atol=1e-5, gradient=mode)
        (sol.ys ** 2).sum().backward()
        return sol, [y0.grad, *(p.grad for p in func.parameters())]

    reference, want = gradients("backprop")
    assert int(reference.stats.n_accepted) < 30
    for mode in ("symplectic", "checkpoint"):
        _, got = gradients(mode)
        assert _relative(got, want) <= 1e-10


def test_step_t_lands_steps_and_jump_t_restarts_past_a_discontinuity():
    def switch(t, y):
        return np.where(t < 1.0, np.ones_like(y), -np.ones_like(y))  # y(t) = 1 - |t - 1| from y(0) = 0

    t = np.linspace(0.0, 2.0, 41)
    exact = 1.0 - np.abs(t - 1.0)
    y0 = np.zeros(1)
    free = symadj.solve(switch, y0, t, rtol=1e-9, atol=1e-9)
    jumped = symadj.solve(switch, y0, t, rtol=1e-9, atol=1e-9, options={"jump_t": [1.0]})
    assert np.max(np.abs(jumped.ys[:, 0] - exact)) <= 1e-13
    assert int(jumped.stats.n_accepted) < int(free.stats.n_accepted)
    landed = symadj.solve(lambda t, y: -y, y0 + 1, t, rtol=1e-3, options={"step_t": np.array([0.35, 0.7])})
    unlanded = symadj.solve(lambda t, y: -y, y0 + 1, t, rtol=1e-3)
    assert int(landed.stats.n_accepted) > int(unlanded.stats.n_accepted)
    with pytest.raises(symadj.InvalidArgumentError, match="step_t"):
        symadj.solve(lambda t, y: -y, y0, t, options={"step_t": ["soon"]})
    with pytest.raises(symadj.InvalidArgumentError, match="jump_t"):
        symadj.solve(lambda t, y: -y, y0, t, options={"jump_t": [math.nan]})


@pytest.mark.parametrize("jump", [0.1, 0.5])
def test_a_float32_state_sees_each_side_of_a_jump_in_its_own_dtype(jump):
    # func gets t in float32: a float64 ulp beside the jump would round back onto it, and the
    # step before the jump would see the value after it (rejections, a wrong solution).
    seen = []

    def switch(t, y):
        seen.append(t.item())
        return torch.where(t < jump, 1.0, -1.0) * torch.ones_like(y)

    t = torch.tensor([0.0, 2 * jump], dtype=torch.float32)
    sol = symadj.solve(switch, torch.zeros(1), t, method="bosh3", rtol=1e-6, atol=1e-6,
                       options={"jump_t": [jump]})
    assert sol.stats.n_rejected == 0
    assert abs(sol.ys[-1, 0].item()) <= 1e-6  # y(t) = jump - |t - jump|
    at_jump = torch.tensor(jump, dtype=torch.float32).item()
    assert at_jump not in seen and any(s < at_jump for s in seen) and any(s > at_jump for s in seen)


def test_gradients_through_a_jump_are_exact():
    func = torch_rotating_field()
    t = torch.linspace(0.0, 2.0, 30, dtype=torch.float64)

    def gradients(mode):
        func.zero_grad()
        y0 = torch.ones(2, 3, dtype=torch.float64, requires_grad=True)

        def field(t, y):
            return func(t, y) * torch.where(t < 0.8, 1.0, -0.5)

        sol = symadj.solve(field, y0, t, rtol=1e-6, gradient=mode, adjoint_params=list(func.parameters()),
                           options={"jump_t": [0.8], "step_t": [1.3]})
        (sol.ys ** 2).sum().backward()
        return [y0.grad, *(p.grad for p in func.parameters())]

    want = gradients("backprop")
    for mode in ("symplectic", "checkpoint"):
        assert _relative(gradients(mode), want) <= 1e-10


def test_a_failed_solve_keeps_the_outputs_it_interpolated():
    t = np.linspace(0.0, 10.0, 101)
    sol = symadj.solve(lambda t, y: -y, np.ones(2), t, options={"max_steps": 4}, throw=False)
    reached = int(sol.stats.n_outputs)
    assert 1 < reached < 101
    assert np.all(np.isfinite(sol.ys[:reached])) and np.all(np.isnan(sol.ys[reached:]))
    np.testing.assert_allclose(sol.ys[:reached, 0], np.exp(-t[:reached]), rtol=1e-5)


def test_the_interpolant_is_used_where_outputs_fall_inside_steps():
    """The interpolant's values at θ are y_n + h Σ b_i(θ) k_i with the tableau's own
    coefficients: checked by hand on one dopri5 step."""
    tab = symadj.get_tableau("dopri5")
    y0 = np.array([1.0])
    sol = symadj.solve(lambda t, y: -y, y0, [0.0, 0.3, 1.0], options={"first_step": 1.0}, rtol=1.0, atol=1.0)
    assert int(sol.stats.n_accepted) == 1
    k = []
    a = [[Fraction(x) for x in row] for row in tab.a]
    for i in range(tab.stages):
        k.append(-(1.0 + sum(float(a[i][j]) * k[j] for j in range(i))))
    theta = 0.3
    weights = [sum(float(p) * theta ** (e + 1) for e, p in enumerate(row)) for row in tab.dense.coefficients]
    assert sol.ys[1, 0] == pytest.approx(1.0 + sum(w * ki for w, ki in zip(weights, k)), abs=1e-15)


# -- JAX ---------------------------------------------------------------------------------

JAX_DEFAULT = ["dopri5"]  # the others in the slow step (one compilation per mode and tableau)


def _jax_gradients(name: str):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    func, y0, params = jax_rotating_problem()
    t = jnp.asarray(_times())
    weights = jax.random.normal(jax.random.PRNGKey(WEIGHTS_SEED), (t.shape[0], *y0.shape), dtype=jnp.float64)
    results = {}
    for mode in ("backprop", "symplectic", "checkpoint", symadj.Symplectic(checkpoints="stages")):
        @jax.jit
        def loss(params, y0, mode=mode):
            sol = symadj.solve(func, y0, t, args=params, method=name, rtol=TOLERANCE.get(name, 1e-6),
                               atol=TOLERANCE.get(name, 1e-6), gradient=mode, options=_options(name))
            return jnp.sum(weights * jnp.sin(sol.ys)), sol

        (_, sol), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(params, y0)
        results[str(mode)] = (sol, jnp.concatenate([g.ravel() for g in jax.tree_util.tree_leaves(grads)]))
    return results


def _check_jax(name: str):
    import jax.numpy as jnp

    results = _jax_gradients(name)
    reference, want = results["backprop"]
    assert int(reference.stats.n_accepted) <= MOST_STEPS
    for mode, (sol, got) in results.items():
        assert int(sol.stats.n_accepted) == int(reference.stats.n_accepted)
        assert float(jnp.max(jnp.abs(sol.ys - reference.ys))) <= 1e-14, mode
        assert float(jnp.linalg.norm(got - want) / jnp.linalg.norm(want)) <= 1e-10, mode


@pytest.mark.parametrize("name", JAX_DEFAULT)
def test_jax_exact_modes_equal_backprop_with_many_outputs_per_step(name):
    _check_jax(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(SHIPPED) - set(JAX_DEFAULT)))
def test_jax_exact_modes_equal_backprop_with_many_outputs_per_step_other_tableaux(name):
    _check_jax(name)


@pytest.mark.slow
def test_jax_outputs_do_not_recompile_and_vectorise():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    func, y0, params = jax_rotating_problem()
    traces = []

    @jax.jit
    def loss(params, t):
        traces.append(1)
        ys = symadj.odeint(func, y0, t, args=params, rtol=1e-6, atol=1e-6)
        return jnp.sum(ys ** 2)

    grad = jax.grad(loss)
    first = grad(params, jnp.linspace(0.0, 2.0, 50))
    second = grad(params, jnp.linspace(0.0, 3.0, 50))
    assert len(traces) == 1
    assert not np.allclose(first["w1"], second["w1"])

    batched = jax.vmap(lambda y: symadj.odeint(func, y, jnp.linspace(0.0, 2.0, 50), args=params, rtol=1e-6,
                                               atol=1e-6))(jnp.stack([y0, 2 * y0]))
    single = symadj.odeint(func, 2 * y0, jnp.linspace(0.0, 2.0, 50), args=params, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(batched[1], single, rtol=1e-12, atol=1e-12)


# -- jump_t at an output time and at t[0] ------------------------------------------------


def _switching(xp_where=np.where):
    """dy/dt = -y before t = 0.5, -3y from it on: y(t) = e^{-t}, then e^{-0.5 - 3(t - 0.5)}."""
    return lambda t, y: -y * (1 + 2 * xp_where(t >= 0.5, 1.0, 0.0))


def _switching_exact(t):
    t = np.asarray(t)
    return np.where(t <= 0.5, np.exp(-t), np.exp(-0.5 - 3 * (t - 0.5)))


def _split_at_jump(method, options, ts=(0.0, 0.5, 1.0)):
    """The same solve in two pieces that meet at the jump, each piece with its own side's field."""
    before = symadj.solve(lambda t, y: -y, np.ones(1), np.array(ts[:2]), method=method, options=options)
    after = symadj.solve(lambda t, y: -3 * y, before.ys[-1], np.array(ts[1:]), method=method, options=options)
    return np.concatenate([before.ys, after.ys[1:]])


@pytest.mark.parametrize("method", ["rk4", "midpoint", "dopri5", "bosh3"])
@pytest.mark.parametrize("land_on_outputs", [True, False])
def test_a_jump_at_an_output_time_is_honoured_under_every_landing_rule(method, land_on_outputs):
    ts = np.array([0.0, 0.5, 1.0])
    options = {"step_size": 0.1, "land_on_outputs": land_on_outputs}
    sol = symadj.solve(_switching(), np.ones(1), ts, method=method, options={**options, "jump_t": [0.5]})
    assert np.allclose(sol.ys, _split_at_jump(method, options), rtol=1e-12, atol=0)
    if method in FIXED_STEP:
        return
    adaptive = symadj.solve(_switching(), np.ones(1), ts, method=method, rtol=1e-10, atol=1e-10,
                            options={"land_on_outputs": land_on_outputs, "jump_t": [0.5]})
    assert np.allclose(adaptive.ys[:, 0], _switching_exact(ts), rtol=1e-7, atol=0)


@pytest.mark.parametrize("ts", [[0.0, 0.3, 0.5, 0.8, 1.0], [0.0, 0.25, 0.5, 0.75, 1.0]])
@pytest.mark.parametrize("step_t", [[], [0.5], [0.5, 0.8]])
def test_outputs_at_and_around_a_jump_take_the_solution_there(ts, step_t):
    ts = np.array(ts)
    for method, options in (("rk4", {"step_size": 0.01}), ("dopri5", {})):
        sol = symadj.solve(_switching(), np.ones(1), ts, method=method, rtol=1e-10, atol=1e-10,
                           options={"jump_t": [0.5], "step_t": step_t, "land_on_outputs": True, **options})
        assert np.allclose(sol.ys[:, 0], _switching_exact(ts), rtol=1e-7, atol=0)


@pytest.mark.parametrize("direction", [1, -1])
@pytest.mark.parametrize("method", ["rk4", "dopri5"])
def test_a_jump_at_the_first_time_is_honoured(direction, method):
    """func is -y at t[0] exactly and -3y past it: the solve sees the side it goes to."""
    t0 = 0.25

    def field(t, y):
        return -y * (1 + 2 * np.where(direction * (t - t0) > 0, 1.0, 0.0))

    ts = np.array([t0, t0 + direction * 0.5, t0 + direction * 1.0])
    options = {"step_size": 0.1}
    got = symadj.solve(field, np.ones(1), ts, method=method, options={**options, "jump_t": [t0]}).ys
    want = symadj.solve(lambda t, y: -3 * y, np.ones(1), ts, method=method, options=options).ys
    assert np.allclose(got, want, rtol=1e-12, atol=0)


@pytest.mark.parametrize("mode", ["symplectic", "checkpoint", "adjoint"])
@pytest.mark.parametrize("land_on_outputs", [True, False])
def test_gradients_through_a_jump_at_an_output_time(mode, land_on_outputs):
    """Exact modes equal backprop; every mode approaches the exact gradient at the scheme's order."""
    def gradient(mode, h, adjoint_options=None):
        w = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)

        def field(t, y):
            return -w * y * (1 + 2 * (t >= 0.5))

        ys = symadj.odeint(field, torch.ones(1, dtype=torch.float64), torch.tensor([0.0, 0.5, 1.0]), method="rk4",
                           adjoint_params=[w], gradient=mode, adjoint_options=adjoint_options,
                           options={"step_size": h, "jump_t": [0.5], "land_on_outputs": land_on_outputs})
        ys[-1].sum().backward()
        return w.grad.item()

    exact = -2 * math.exp(-2)  # y(1) = e^{-2w}
    for h in (1 / 16, 1 / 32, 1 / 64):
        assert abs(gradient(mode, h) - exact) <= h ** 4
        if mode != "adjoint":
            assert gradient(mode, h) == pytest.approx(gradient("backprop", h), rel=1e-10, abs=0)
    if mode == "adjoint":  # the backward solves keep the jump when they have options of their own
        assert abs(gradient(mode, 1 / 32, {"step_size": 1 / 32}) - exact) <= (1 / 32) ** 4


def test_jax_honours_a_jump_at_an_output_time_and_at_the_first_time():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    options = {"step_size": 0.1, "land_on_outputs": True}

    @jax.jit
    def solve(ts):
        return symadj.odeint(_switching(jnp.where), jnp.ones(1), ts, method="rk4",
                             options={**options, "jump_t": [0.0, 0.5]})

    assert np.allclose(solve(jnp.array([0.0, 0.5, 1.0])), _split_at_jump("rk4", options), rtol=1e-12, atol=0)
    late = jax.jit(lambda ts: symadj.odeint(lambda t, y: -y * (1 + 2 * jnp.where(t > 0.5, 1.0, 0.0)), jnp.ones(1),
                                            ts, method="rk4", options={**options, "jump_t": [0.5]}))
    got = late(jnp.array([0.5, 1.0]))
    want = symadj.solve(lambda t, y: -3 * y, np.ones(1), np.array([0.5, 1.0]), method="rk4", options=options).ys
    assert np.allclose(got, want, rtol=1e-12, atol=0)
