"""Events: a solve stops where an event function crosses zero, located on the continuous
extension, with event times and states whose gradients equal those of the discrete solve
and the converged root (implicit function theorem), checked against an independent loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import torch_rotating_field

import symadj

torch = pytest.importorskip("torch")

EXACT = ["symplectic", "checkpoint", "backprop", symadj.Symplectic(checkpoints="revolve:2"),
         symadj.Symplectic(checkpoints="stages")]


def _relative(got, want):
    got = torch.cat([g.reshape(-1) for g in got])
    want = torch.cat([w.reshape(-1) for w in want])
    return float((got - want).norm() / want.norm())


# -- where and when ------------------------------------------------------------------


def test_linear_decay_stops_at_its_threshold_time():
    rate, start, threshold = 0.7, 2.0, 0.3
    sol = symadj.solve(lambda t, y: -rate * y, np.array([start]), np.linspace(0.0, 10.0, 11), rtol=1e-10,
                       atol=1e-12, event=lambda t, y: y[0] - threshold)
    want = math.log(start / threshold) / rate
    assert sol.success and bool(sol.event.fired) and int(sol.event.index) == 0
    assert abs(float(sol.event.t) - want) <= 1e-8
    assert abs(float(sol.event.y[0]) - threshold) <= 1e-12  # the root is converged on the extension
    # Outputs at and after the event hold the event state; those before it the solution.
    after = sol.ts >= want
    np.testing.assert_array_equal(sol.ys[after, 0], np.full(after.sum(), float(sol.event.y[0])))
    np.testing.assert_allclose(sol.ys[~after, 0], start * np.exp(-rate * sol.ts[~after]), rtol=1e-8)
    assert float(sol.stats.t_final) < 10.0


def test_free_fall_lands_at_the_analytic_time():
    gravity, height, speed = 9.81, 10.0, 3.0
    sol = symadj.solve(lambda t, y: np.array([y[1], -gravity]), np.array([height, speed]), [0.0, 5.0],
                       rtol=1e-9, atol=1e-12, event=lambda t, y: y[0])
    want = (speed + math.sqrt(speed**2 + 2 * gravity * height)) / gravity
    assert abs(float(sol.event.t) - want) <= 1e-10  # the solution is quadratic: dopri5 is exact on it
    assert abs(float(sol.event.y[1]) - (speed - gravity * want)) <= 1e-9


def test_a_time_dependent_event_and_decreasing_times():
    sol = symadj.solve(lambda t, y: -y, np.array([1.0]), [2.0, 0.0], event=lambda t, y: t - 0.7)
    assert abs(float(sol.event.t) - 0.7) <= 1e-12
    assert abs(float(sol.event.y[0]) - math.exp(1.3)) <= 1e-6


def test_no_crossing_runs_to_the_end_and_says_so():
    sol = symadj.solve(lambda t, y: -y, np.array([1.0]), [0.0, 1.0], event=lambda t, y: y[0] + 1.0)
    assert sol.success and not bool(sol.event.fired) and int(sol.event.index) == -1
    assert float(sol.event.t) == 1.0
    np.testing.assert_array_equal(sol.event.y, sol.ys[-1])


def test_several_event_functions_report_which_fired():
    events = [lambda t, y: y[0] - 0.1, lambda t, y: y[0] - 0.5, lambda t, y: t - 5.0]
    sol = symadj.solve(lambda t, y: -y, np.array([1.0]), [0.0, 10.0], rtol=1e-10, atol=1e-12, event=events)
    assert int(sol.event.index) == 1
    assert abs(float(sol.event.t) - math.log(2.0)) <= 1e-8


def test_a_direction_picks_rising_or_falling_crossings():
    def sine(direction):
        return symadj.solve(lambda t, y: np.cos(t) * np.ones(1), np.zeros(1), [0.0, 6.0], rtol=1e-10, atol=1e-12,
                            event=symadj.Event(lambda t, y: y[0] - 0.5, direction=direction)).event.t

    assert abs(float(sine(1)) - math.pi / 6) <= 1e-8
    assert abs(float(sine(0)) - math.pi / 6) <= 1e-8
    assert abs(float(sine(-1)) - 5 * math.pi / 6) <= 1e-8
    with pytest.raises(symadj.InvalidArgumentError, match="direction=2"):
        symadj.Event(lambda t, y: y, direction=2)


def test_an_event_on_a_tuple_state_and_in_odeint():
    def fall(t, state):
        x, v = state
        return v, -np.ones_like(v)

    ys = symadj.odeint(fall, (np.array([1.0]), np.array([0.0])), np.linspace(0.0, 3.0, 7),
                       event=lambda t, state: state[0][0])
    landing = math.sqrt(2.0)
    assert np.all(ys[0][np.linspace(0.0, 3.0, 7) >= landing] == ys[0][-1])
    assert abs(float(ys[1][-1, 0]) + landing) <= 1e-6


def test_per_row_events_stop_each_row_at_its_own_time():
    rates = np.array([0.5, 1.0, 2.0, 0.01])
    y0 = np.ones((4, 2))
    t = np.linspace(0.0, 3.0, 31)
    sol = symadj.solve(lambda t, y: -rates[:, None] * y, y0, t, rtol=1e-10, atol=1e-12,
                       event=lambda t, y: y[:, 0] - 0.5)
    want = np.log(2.0) / rates
    fired = want <= 3.0
    np.testing.assert_array_equal(sol.event.fired, fired)
    np.testing.assert_allclose(sol.event.t[fired], want[fired], rtol=1e-8)
    assert sol.event.t[~fired][0] == 3.0
    for row in range(4):
        after = t >= sol.event.t[row]
        np.testing.assert_array_equal(sol.ys[after, row], np.broadcast_to(sol.event.y[row], (after.sum(), 2)))
        np.testing.assert_allclose(sol.ys[~after, row, 0], np.exp(-rates[row] * t[~after]), rtol=1e-8)


def test_the_solve_ends_once_every_row_has_stopped():
    y0 = np.ones((2, 1))
    sol = symadj.solve(lambda t, y: -y, y0, [0.0, 100.0], event=lambda t, y: y[:, 0] - np.array([0.5, 0.25]))
    assert bool(np.all(sol.event.fired)) and sol.success
    assert float(sol.stats.t_final) < 2.0
    np.testing.assert_allclose(sol.event.t, np.log([2.0, 4.0]), rtol=1e-6)


# -- bad input -----------------------------------------------------------------------


def test_bad_events_are_refused_with_the_fix():
    y0, t = np.ones(2), [0.0, 1.0]
    with pytest.raises(symadj.InvalidArgumentError, match="event must be a function g.*or a symadj.Event"):
        symadj.solve(lambda t, y: -y, y0, t, event=3.0)
    with pytest.raises(symadj.InvalidArgumentError, match=r"returned shape \(2, 1\)"):
        symadj.solve(lambda t, y: -y, y0, t, event=lambda t, y: y[:, None])
    with pytest.raises(symadj.InvalidArgumentError, match="different shapes"):
        symadj.solve(lambda t, y: -y, y0, t, event=[lambda t, y: y[0], lambda t, y: y])
    with pytest.raises(symadj.InvalidArgumentError, match="land_on_outputs"):
        symadj.solve(lambda t, y: -y, y0, t, event=lambda t, y: y[0], options={"land_on_outputs": True})
    with pytest.raises(symadj.InvalidArgumentError, match="step_size"):
        symadj.solve(lambda t, y: -y, y0, t, method="rk4", event=lambda t, y: y[0])
    heun = symadj.get_tableau("heun_euler")
    plain = symadj.Tableau("heun_euler_plain", c=heun.c, a=heun.a, b=heun.b, order=heun.order,
                           embedded=heun.embedded)
    with pytest.raises(symadj.InvalidArgumentError, match="continuous extension.*dopri5"):
        symadj.solve(lambda t, y: -y, y0, t, method=plain, event=lambda t, y: y[0])
    with pytest.raises(symadj.GradientNotSupportedError, match="per-row events"):
        symadj.solve(lambda t, y: -y, torch.ones(2, 1), t, gradient="adjoint", event=lambda t, y: y[:, 0] - 0.5)


# -- exact gradients -----------------------------------------------------------------


def _reference(func, y0, t0: float, h: float, steps: int, event, tab_name: str = "dopri5"):
    """An independent fixed-step solve in plain torch autograd: RK steps of ``h`` with the
    tableau's continuous extension, rows frozen after their event; each event located by
    bisection on the detached extension, then made differentiable by one Newton step
    θ − (g(θ) − stop g(θ)) / stop g'(θ) (value unchanged, derivative by the implicit
    function theorem). Returns the event times and states (per row)."""
    tab = symadj.get_tableau(tab_name)
    a = [[float(x) for x in row] for row in tab.a]
    b = [float(x) for x in tab.b]
    c = [float(x) for x in tab.c]
    dense = [[float(p) for p in row] for row in tab.dense.coefficients]

    def weights(theta, derivative=False):
        if derivative:
            return [sum((e + 1) * p * theta ** e for e, p in enumerate(row)) for row in dense]
        return [sum(p * theta ** (e + 1) for e, p in enumerate(row)) for row in dense]

    y = y0
    rows = y0.shape[0]
    times = [None] * rows
    states = [None] * rows
    g_before = event(torch.tensor(t0, dtype=torch.float64), y0).detach()
    for n in range(steps):
        start = t0 + n * h
        k = []
        for i in range(tab.stages):
            stage = y + h * sum((a[i][j] * k[j] for j in range(i) if a[i][j]), torch.zeros_like(y))
            k.append(func(torch.tensor(start + c[i] * h, dtype=torch.float64), stage))
        frozen = torch.tensor([times[r] is not None for r in range(rows)])[:, None]
        k = [torch.where(frozen, torch.zeros_like(ki), ki) for ki in k]
        y_next = y + h * sum(bi * ki for bi, ki in zip(b, k))
        g_after = event(torch.tensor(start + h, dtype=torch.float64), y_next).detach()
        for r in range(rows):
            if times[r] is not None or not (g_before[r] * g_after[r] < 0 or (g_after[r] == 0 != g_before[r])):
                continue

            def g_row(theta, y=y, k=k, r=r, start=start):
                u = y + h * sum(w * ki for w, ki in zip(weights(theta), k))
                return event(torch.tensor(start + theta * h, dtype=torch.float64), u)[r]

            lo, hi = 0.0, 1.0
            for _ in range(200):
                mid = 0.5 * (lo + hi)
                if (float(g_row(mid).detach()) > 0) == (float(g_before[r]) > 0):
                    lo = mid
                else:
                    hi = mid
            theta = 0.5 * (lo + hi)
            u = y + h * sum(w * ki for w, ki in zip(weights(theta), k))
            rate = sum(w * ki for w, ki in zip(weights(theta, True), k))
            tau = torch.tensor(start + theta * h, dtype=torch.float64, requires_grad=True)
            u_in = u.detach().requires_grad_(True)
            value = event(tau, u_in)[r]
            dt, du = torch.autograd.grad(value, [tau, u_in])
            slope = (dt + (du[r] * rate[r].detach()).sum()) * h
            g = event(torch.tensor(start + theta * h, dtype=torch.float64), u)[r]
            theta_d = theta - (g - g.detach()) / slope
            times[r] = start + theta_d * h
            states[r] = (y + h * sum(w * ki for w, ki in zip(weights(theta_d), k)))[r]
        g_before = torch.where(torch.tensor([times[r] is None for r in range(rows)]), g_after, g_before)
        y = y_next
    return torch.stack(times), torch.stack(states)


def _neural_problem():
    func = torch_rotating_field()
    y0 = torch.tensor([[1.0, 0.3, -0.2], [0.6, -0.4, 0.1], [0.9, 0.8, 0.0]], dtype=torch.float64,
                      requires_grad=True)
    threshold = torch.tensor([0.2, -0.1, 0.4], dtype=torch.float64)
    return func, y0, threshold


@pytest.mark.parametrize("mode", EXACT, ids=str)
def test_per_row_event_gradients_equal_an_independent_loop(mode):
    func, y0, threshold = _neural_problem()
    params = [y0, *func.parameters()]

    def event(t, y):
        return y[:, 0] - threshold - 0.05 * t

    def loss(times, states):
        return (times**2).sum() + (states**2).sum() + (states[:, 1] * times).sum()

    want_t, want_y = _reference(func, y0, 0.0, 0.1, 20, event)
    want = torch.autograd.grad(loss(want_t, want_y), params)
    sol = symadj.solve(func, y0, torch.tensor([0.0, 2.0], dtype=torch.float64), gradient=mode, event=event,
                       options={"step_size": 0.1})
    assert bool(sol.event.fired.all()) and int(sol.stats.n_accepted) < 20
    torch.testing.assert_close(sol.event.t, want_t.detach(), rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(sol.event.y, want_y.detach(), rtol=1e-12, atol=1e-13)
    got = torch.autograd.grad(loss(sol.event.t, sol.event.y), params)
    assert _relative(got, want) <= 1e-10


@pytest.mark.parametrize("mode", EXACT, ids=str)
def test_event_gradients_with_outputs_equal_backprop_on_an_adaptive_solve(mode):
    func, y0, _ = _neural_problem()
    params = [y0, *func.parameters()]
    t = torch.linspace(0.0, 3.0, 40, dtype=torch.float64)

    def gradients(mode, event):
        sol = symadj.solve(func, y0, t, gradient=mode, event=event, rtol=1e-6, atol=1e-8)
        loss = (sol.ys**2).sum() + sol.event.t.sum() ** 2 + (sol.event.y**3).sum()
        return sol, torch.autograd.grad(loss, params)

    for event in (lambda t, y: y[:, 0] - 0.3 * t, lambda t, y: y[0, 1] + y[1, 2] - 0.5):
        sol, got = gradients(mode, event)
        _, want = gradients("backprop", event)
        assert bool(sol.event.fired.all())
        assert _relative(got, want) <= 1e-10


def test_event_time_gradient_matches_finite_differences():
    func, y0, threshold = _neural_problem()
    y0 = y0.detach()

    def event_times(y0):
        return symadj.solve(func, y0, torch.tensor([0.0, 2.0], dtype=torch.float64),
                            event=lambda t, y: y[:, 0] - threshold, options={"step_size": 0.1}).event.t

    x = y0.clone().requires_grad_(True)
    direction = torch.randn(y0.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    (analytic,) = torch.autograd.grad((event_times(x) ** 2).sum(), [x])
    eps = 1e-6
    with torch.no_grad():
        plus = (event_times(y0 + eps * direction) ** 2).sum()
        minus = (event_times(y0 - eps * direction) ** 2).sum()
    numeric = (plus - minus) / (2 * eps)
    assert abs(float((analytic * direction).sum()) - float(numeric)) <= 1e-7 * max(1.0, abs(float(numeric)))


@pytest.mark.parametrize("mode", ["symplectic", "backprop", "adjoint"])
def test_outputs_held_at_the_event_state_have_no_time_gradient(mode):
    ts = torch.tensor([0.0, 0.5, 1.0, 2.0], dtype=torch.float64, requires_grad=True)
    ys = symadj.odeint(lambda t, y: -y, torch.ones(1, dtype=torch.float64), ts, gradient=mode, rtol=1e-10,
                       atol=1e-12, event=lambda t, y: y[0] - 0.5)
    (grad,) = torch.autograd.grad(ys.sum(), ts)
    # y = exp(-t) until ln 2: dL/dt_1 = -y(0.5), dL/dt_0 = -dL/dt_1 (and the event time moves with t_0:
    # the held outputs then do not depend on t_0 at all, y* = 1/2 whatever t_0).
    torch.testing.assert_close(grad, torch.tensor([math.exp(-0.5), -math.exp(-0.5), 0.0, 0.0],
                                                  dtype=torch.float64), rtol=1e-6, atol=1e-9)


def test_the_continuous_adjoint_gives_event_gradients_close_to_the_exact_ones():
    func, y0, _ = _neural_problem()
    params = [y0, *func.parameters()]
    t = torch.linspace(0.0, 3.0, 7, dtype=torch.float64)

    def gradients(mode):
        sol = symadj.solve(func, y0, t, gradient=mode, event=lambda t, y: y[0, 0] + y[1, 1] - 0.2, rtol=1e-9,
                           atol=1e-11)
        loss = (sol.ys**2).sum() + sol.event.t**2 + (sol.event.y**2).sum()
        return torch.autograd.grad(loss, params)

    assert _relative(gradients("adjoint"), gradients("symplectic")) <= 1e-5


# -- JAX -----------------------------------------------------------------------------


def _jax_problem():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    weights = 0.5 * jax.random.normal(jax.random.PRNGKey(0), (3, 3), dtype=jnp.float64)

    def field(t, y, args):
        return jnp.tanh(y @ args["W"]) - 0.3 * y + jnp.array([0.0, 3.0, 0.0]) * y[:, :1]

    y0 = jnp.array([[1.0, 0.3, -0.2], [0.6, -0.4, 0.1], [0.9, 0.8, 0.0]])
    return jax, jnp, field, {"W": weights}, y0


def _jax_event_gradients(modes, event):
    jax, jnp, field, args, y0 = _jax_problem()
    t = jnp.linspace(0.0, 3.0, 20)

    def loss(args, y0, mode):
        sol = symadj.solve(field, y0, t, args=args, gradient=mode, event=event, rtol=1e-7, atol=1e-9)
        return (sol.ys**2).sum() + (sol.event.t**2).sum() + (sol.event.y**3).sum(), sol.event

    grad = jax.jit(jax.grad(loss, argnums=(0, 1), has_aux=True), static_argnums=2)
    results = {mode: grad(args, y0, mode) for mode in ["backprop", *modes]}
    want = jax.tree_util.tree_leaves(results["backprop"][0])
    for mode in modes:
        got, outcome = results[mode]
        assert bool(jnp.all(outcome.fired))
        error = sum(float(jnp.sum((a - b) ** 2)) for a, b in zip(jax.tree_util.tree_leaves(got), want)) ** 0.5
        scale = sum(float(jnp.sum(b**2)) for b in want) ** 0.5
        yield mode, error / scale


def test_jax_per_row_event_gradients_under_jit_equal_backprop():
    for mode, error in _jax_event_gradients(["symplectic"], lambda t, y, args: y[:, 0] + t - 1.5):
        assert error <= 1e-10, mode


@pytest.mark.slow
def test_jax_per_row_event_gradients_of_the_checkpoint_mode():
    for mode, error in _jax_event_gradients(["checkpoint"], lambda t, y, args: y[:, 0] + t - 1.5):
        assert error <= 1e-10, mode


@pytest.mark.slow
def test_jax_event_gradients_for_one_event_of_the_whole_state():
    for mode, error in _jax_event_gradients(["symplectic", "checkpoint", "adjoint"],
                                            lambda t, y, args: y[0, 0] + y[1, 1] + t - 2.0):
        assert error <= (1e-6 if mode == "adjoint" else 1e-10), mode


@pytest.mark.slow
def test_jax_events_vectorise_over_thresholds():
    jax, jnp, field, args, y0 = _jax_problem()
    t = jnp.linspace(0.0, 3.0, 5)

    def event_time(threshold):
        # Gradients reach the event function's parameters through args, as func's do.
        return symadj.solve(lambda t, y, args: -y, jnp.ones(1), t, rtol=1e-10, atol=1e-12, args=threshold,
                            event=lambda t, y, threshold: y[0] - threshold).event.t

    thresholds = jnp.array([0.5, 0.25, 0.01])
    times = jax.jit(jax.vmap(event_time))(thresholds)
    np.testing.assert_allclose(np.asarray(times), [math.log(2.0), math.log(4.0), 3.0], rtol=1e-8)
    # y = exp(-t) reaches c at tau = -ln c: d tau / d c = -1 / c
    slopes = jax.vmap(jax.grad(event_time))(thresholds[:2])
    np.testing.assert_allclose(np.asarray(slopes), [-1 / 0.5, -1 / 0.25], rtol=1e-6)


@pytest.mark.parametrize("mode", ["symplectic", "checkpoint", "backprop", "adjoint"])
def test_an_event_that_never_fires_moves_with_the_last_output_time(mode):
    # No crossing: the event state is y(T) = y0 e^{-0.3 (T - t_0)}, so d y(T)² / dT = -0.6 y(T)²
    # = -d y(T)² / dt_0 (the adjoint mode, which differentiates with respect to t itself, agrees).
    ts = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64, requires_grad=True)
    y0 = torch.tensor([1.0, 2.0], dtype=torch.float64)
    sol = symadj.solve(lambda t, y: -0.3 * y, y0, ts, gradient=mode, rtol=1e-10, atol=1e-12,
                       event=lambda t, y: y[0] + 1.0)
    assert not bool(sol.event.fired)
    (grad,) = torch.autograd.grad((sol.event.y ** 2).sum(), ts)
    rate = 0.6 * float((y0 ** 2).sum()) * math.exp(-0.6 * 2.0)
    torch.testing.assert_close(grad, torch.tensor([rate, 0.0, -rate], dtype=torch.float64), rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("mode", ["symplectic", "backprop"])
def test_rows_whose_event_never_fires_move_with_the_last_output_time(mode):
    # Per-row events: row 0 crosses 0.5 at ln 2, row 1 never does; only row 1's event state follows T.
    ts = torch.tensor([0.0, 2.0], dtype=torch.float64, requires_grad=True)
    y0 = torch.tensor([[1.0], [0.9]], dtype=torch.float64)
    rates = torch.tensor([[1.0], [0.01]], dtype=torch.float64)
    sol = symadj.solve(lambda t, y: -rates * y, y0, ts, gradient=mode, rtol=1e-10, atol=1e-12,
                       event=lambda t, y: y[:, 0] - 0.5)
    assert sol.event.fired.tolist() == [True, False]
    (grad,) = torch.autograd.grad(sol.event.y.sum(), ts)
    unfired = 0.9 * 0.01 * math.exp(-0.01 * 2.0)  # -d y_1(T) / dT; y_0* = 0.5 whatever the times
    torch.testing.assert_close(grad, torch.tensor([unfired, -unfired], dtype=torch.float64), rtol=1e-8, atol=1e-12)


@pytest.mark.slow
def test_jax_an_event_that_never_fires_moves_with_the_last_output_time():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    y0 = jnp.array([1.0, 2.0])

    def loss(ts, mode):
        sol = symadj.solve(lambda t, y: -0.3 * y, y0, ts, gradient=mode, rtol=1e-10, atol=1e-12,
                           event=lambda t, y: y[0] + 1.0)
        return jnp.sum(sol.event.y ** 2)

    rate = 0.6 * float(jnp.sum(y0 ** 2)) * math.exp(-0.6 * 2.0)
    grad = jax.jit(jax.grad(loss), static_argnums=1)
    for mode in ("symplectic", "backprop", "adjoint"):
        np.testing.assert_allclose(np.asarray(grad(jnp.array([0.0, 1.0, 2.0]), mode)), [rate, 0.0, -rate],
                                   rtol=1e-8, atol=1e-12, err_msg=mode)


# -- the first crossing inside a step, where g is zero at the step's end ----------------

# dy/dt = -1 from y0 = 10 is linear: dopri5 takes long steps over [0, 20], whose ends lie past
# the crossings below; each event function is exactly zero at the end of the step holding it.
FIRST_CROSSING = [
    ("y - 5 until t = 6, then 0", lambda t, y: torch.where(t <= 6, y[0] - 5, 0 * y[0]), 5.0),
    ("1 until t = 3, then 0", lambda t, y: torch.where(t > 3, 0.0, 1.0) + 0 * y[0], 3.0),
    ("relu(y - 5): zero after the crossing", lambda t, y: torch.relu(y[0] - 5), 5.0),
    ("-relu(y - 5): rising into zero", lambda t, y: -torch.relu(y[0] - 5), 5.0),
    ("y - 5, crossing to the other side", lambda t, y: y[0] - 5, 5.0),
    ("min(y - 5, 0) + 1: a kink, then a crossing at t = 6", lambda t, y: torch.clamp(y[0] - 5, max=0) + 1, 6.0),
    ("(y - 5)^3 * (t <= 7): a flat crossing", lambda t, y: (y[0] - 5) ** 3 * (t <= 7), 5.0),
]


@pytest.mark.parametrize("name, event, want", FIRST_CROSSING, ids=[c[0] for c in FIRST_CROSSING])
@pytest.mark.parametrize("step_size", [None, 8.0])
def test_the_event_is_the_first_crossing_when_g_is_zero_at_the_steps_end(name, event, want, step_size):
    options = {} if step_size is None else {"step_size": step_size}
    method = "dopri5" if step_size is None else "rk4"
    sol = symadj.solve(lambda t, y: -torch.ones_like(y), torch.tensor([10.0], dtype=torch.float64),
                       torch.tensor([0.0, 20.0], dtype=torch.float64), method=method, event=event, options=options)
    assert bool(sol.event.fired)
    assert float(sol.event.t) == pytest.approx(want, abs=1e-12)
    assert float(sol.stats.t_final) > want + 0.5  # the crossing was inside the step, not at its end
    want_y = 10.0 - want
    assert float(sol.event.y[0]) == pytest.approx(want_y, abs=1e-12)


def test_a_direction_and_a_zero_at_the_steps_end():
    """Rising into zero fires a rising event, not a falling one."""
    def solve(direction):
        return symadj.solve(lambda t, y: -torch.ones_like(y), torch.tensor([10.0], dtype=torch.float64),
                            torch.tensor([0.0, 20.0], dtype=torch.float64),
                            event=symadj.Event(lambda t, y: -torch.relu(y[0] - 5), direction=direction)).event

    assert bool(solve(1).fired) and float(solve(1).t) == pytest.approx(5.0, abs=1e-12)
    assert not bool(solve(-1).fired)


@pytest.mark.parametrize("event", [lambda t, y: torch.where(t <= 6, y[0] - 5, 0 * y[0]),
                                   lambda t, y: torch.relu(y[0] - 5)], ids=["zero after t = 6", "relu"])
@pytest.mark.parametrize("mode", EXACT + ["adjoint"], ids=str)
def test_gradients_of_a_first_crossing_before_a_zero_at_the_steps_end(mode, event):
    """τ = (y0 - c) / r for dy/dt = -r, g = y - c until t = 6 (or until it reaches 0) and 0
    after: dτ/dy0 = 1/r, dτ/dr = -τ/r; the event state y* = c does not move."""
    rate = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    y0 = torch.tensor([10.0], dtype=torch.float64, requires_grad=True)

    sol = symadj.solve(lambda t, y: -rate * torch.ones_like(y), y0, torch.tensor([0.0, 20.0], dtype=torch.float64),
                       event=event, gradient=mode, adjoint_params=[rate], rtol=1e-10, atol=1e-10)
    assert sol.event.t.item() == pytest.approx(5.0, abs=1e-10)
    d_y0, d_rate = torch.autograd.grad(sol.event.t + sol.event.y.sum(), [y0, rate])
    tolerance = 1e-6 if mode == "adjoint" else 1e-10
    assert float(d_y0) == pytest.approx(1.0, abs=tolerance)
    assert float(d_rate) == pytest.approx(-5.0, abs=tolerance)


def test_jax_the_event_is_the_first_crossing_when_g_is_zero_at_the_steps_end():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    def event_time(y0, event):
        return symadj.solve(lambda t, y: -jnp.ones_like(y), y0, jnp.array([0.0, 20.0]), event=event).event.t

    events = [(lambda t, y: jnp.where(t <= 6, y[0] - 5, 0 * y[0]), 5.0, 1.0),
              (lambda t, y: jnp.where(t > 3, 0.0, 1.0) + 0 * y[0], 3.0, None),  # a jump: no G_t to divide by
              (lambda t, y: jax.nn.relu(y[0] - 5), 5.0, 1.0)]
    for event, want, slope in events:
        solve = jax.jit(lambda y0, event=event: event_time(y0, event))
        assert float(solve(jnp.array([10.0]))) == pytest.approx(want, abs=1e-12)
        if slope is not None:
            grad = jax.jit(jax.grad(lambda y0, event=event: event_time(y0, event)[()]))
            assert float(grad(jnp.array([10.0]))[0]) == pytest.approx(slope, abs=1e-10)


def test_a_method_without_dense_output_lists_alternatives_without_verifying_every_file(monkeypatch, tmp_path):
    """A broken plugin file must not replace the error the user needs, nor be verified to list it."""
    from symadj import _plugins

    broken = tmp_path / "broken.toml"
    broken.write_text('name = "broken"\norder = 3\nc = ["0"]\na = [[]]\nb = ["1"]\n[dense]\norder = 1\nb = [["1"]]\n')
    sources = _plugins._plugin_sources()
    monkeypatch.setattr("symadj._plugins._plugin_sources",
                        lambda: [*sources, ("broken", lambda: _FilesPlugin([broken]))])
    registry = _plugins.Registry()
    monkeypatch.setattr("symadj._api.registry", registry)
    monkeypatch.setattr("symadj._arguments.registry", registry)
    heun = symadj.get_tableau("heun_euler")
    plain = symadj.Tableau("heun_euler_plain", c=heun.c, a=heun.a, b=heun.b, order=heun.order,
                           embedded=heun.embedded)
    verified = []
    from_file = symadj.Tableau.from_file
    monkeypatch.setattr(symadj.Tableau, "from_file",
                        staticmethod(lambda path: verified.append(path) or from_file(path)))
    with pytest.raises(symadj.InvalidArgumentError, match=r"continuous extension.*: .*bosh3.*dopri5.*tsit5"):
        symadj.solve(lambda t, y: -y, np.ones(1), [0.0, 1.0], method=plain, event=lambda t, y: y[0])
    assert verified == []
    with pytest.raises(symadj.TableauError, match="broken.toml"):
        registry.get_tableau("broken")
    assert registry.errors == []


class _FilesPlugin:
    def __init__(self, files):
        self.files = files

    @symadj.hookimpl
    def symadj_register_tableaux(self):
        return self.files
