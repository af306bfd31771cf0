"""The generic engine: accuracy, convergence order, output times, options and failures."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import SHIPPED, make_array
from scipy.integrate import solve_ivp

import symadj
from symadj import InvalidArgumentError, MaxStepsError, NonFiniteError, StepSizeUnderflowError, UnknownNameError

ADAPTIVE = ["heun_euler", "fehlberg2", "bosh3", "cash_karp", "dopri5", "tsit5", "dopri8"]


def rotation(t, y):
    return np.stack([-y[1], y[0]]) * (1 + 0.5 * np.cos(t))


def rotation_exact(t, y0):
    angle = t + 0.5 * np.sin(t)
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([c * y0[0] - s * y0[1], s * y0[0] + c * y0[1]], axis=-1)


def test_core_never_imports_an_array_library():
    # The engine (symadj's top-level modules) is array-API only; the benchmark and the
    # conformance suite (symadj.testing) may use NumPy for data and references, never a backend's library.
    root = Path(symadj.__file__).parent
    for path in root.rglob("*.py"):
        forbidden = {"torch", "jax", "jaxlib"} | ({"numpy"} if path.parent == root else set())
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path.relative_to(root)} imports {name}"


@pytest.mark.parametrize("method", ADAPTIVE)
def test_adaptive_solution_meets_the_tolerance(method):
    y0 = np.array([1.0, 0.5])
    ts = np.linspace(0.0, 6.0, 7)
    tolerance = {2: 1e-6, 3: 1e-7}.get(symadj.get_tableau(method).order, 1e-8)
    sol = symadj.solve(rotation, y0, ts, method=method, rtol=tolerance, atol=tolerance)
    error = np.max(np.abs(sol.ys - rotation_exact(ts, y0)))
    assert sol.success and error < 1000 * tolerance
    assert sol.stats.n_accepted >= 6


@pytest.mark.parametrize(("method", "scipy_method"), [("dopri5", "RK45"), ("dopri8", "DOP853")])
def test_agrees_with_scipy_solve_ivp(method, scipy_method):
    y0 = np.array([1.0, 0.5])
    ts = np.linspace(0.0, 6.0, 5)
    ours = symadj.odeint(rotation, y0, ts, method=method, rtol=1e-9, atol=1e-9)
    theirs = solve_ivp(rotation, (0.0, 6.0), y0, method=scipy_method, t_eval=ts, rtol=1e-9, atol=1e-9).y.T
    assert np.max(np.abs(ours - theirs)) < 1e-6


def _fixed_step_error(method, steps):
    y0 = np.array([1.0, 0.5])
    end = 2.0
    ys = symadj.odeint(rotation, y0, np.array([0.0, end]), method=method, options={"step_size": end / steps})
    return np.max(np.abs(ys[-1] - rotation_exact(np.array(end), y0)))


@pytest.mark.parametrize("method", SHIPPED)
def test_observed_convergence_order_matches_the_declared_order(method):
    order = symadj.get_tableau(method).order
    # Step counts where the error is far above rounding and in the asymptotic regime.
    base = {1: 128, 2: 64, 3: 32, 4: 32, 5: 16, 8: 8}[order]
    errors = [_fixed_step_error(method, n) for n in (base, 2 * base)]
    slope = math.log2(errors[0] / errors[1])
    assert errors[1] > 1e-13
    # Schemes with a tiny principal error (Tsit5) converge faster than h^p before settling.
    assert order - 0.35 < slope < order + 1, (errors, slope)


def test_steps_land_exactly_on_output_times_and_record_counts():
    calls = []

    def f(t, y):
        calls.append(float(t))
        return -y

    ts = np.array([0.0, 0.1, 0.35, 1.0])
    sol = symadj.solve(f, np.array([1.0]), ts, method="dopri5", rtol=1e-6, atol=1e-9)
    assert sol.stats.n_fevals == len(calls)
    assert sol.stats.n_attempts == sol.stats.n_accepted + sol.stats.n_rejected
    assert np.allclose(sol.ys[:, 0], np.exp(-ts), rtol=1e-6)
    assert float(sol.stats.t_final) == pytest.approx(1.0, abs=1e-15)


def test_backward_in_time():
    ts = np.array([2.0, 1.0, 0.0])
    y0 = rotation_exact(np.array(2.0), np.array([1.0, 0.5]))
    ys = symadj.odeint(rotation, y0, ts, rtol=1e-10, atol=1e-10)
    assert np.allclose(ys[-1], [1.0, 0.5], atol=1e-8)


def test_fixed_step_scheme_without_step_size_steps_once_per_interval():
    sol = symadj.solve(lambda t, y: -y, np.array([1.0]), np.linspace(0, 1, 11), method="rk4")
    assert sol.stats.n_accepted == 10
    # f(t0, y0) once, then per step three new stages and the derivative at the step's end.
    assert sol.stats.n_fevals == 1 + 10 * 4


def test_tuple_state():
    def f(t, state):
        position, velocity = state
        return velocity, -position

    y0 = (np.array([1.0]), np.array([[0.0, 0.0]])[:, :1].reshape(1))
    ys = symadj.odeint(f, y0, np.array([0.0, np.pi]), rtol=1e-10, atol=1e-10)
    assert isinstance(ys, tuple) and ys[0].shape == (2, 1)
    assert ys[0][-1, 0] == pytest.approx(-1.0, abs=1e-8)


def test_engine_runs_on_every_array_library(xp_name):
    y0 = make_array(xp_name, [1.0, 0.5])
    ts = make_array(xp_name, [0.0, 1.0, 2.0])

    def f(t, y):
        return -0.5 * y

    ys = symadj.odeint(f, y0, ts, rtol=1e-9, atol=1e-9)
    assert type(ys).__module__.split(".")[0] == type(y0).__module__.split(".")[0]
    assert np.allclose(np.asarray(ys)[-1], np.exp(-1.0) * np.array([1.0, 0.5]), rtol=1e-7)


def test_norm_options_change_the_step_count():
    y0 = np.array([1.0, 1e-3])
    counts = {
        norm: symadj.solve(rotation, y0, np.array([0.0, 5.0]), rtol=1e-6, atol=1e-9, options={"norm": norm}
                           ).stats.n_accepted
        for norm in ("rms", "max")
    }
    custom = symadj.solve(rotation, y0, np.array([0.0, 5.0]), rtol=1e-6, atol=1e-9,
                          options={"norm": lambda e: np.max(np.abs(e))}).stats.n_accepted
    assert counts["max"] >= counts["rms"] and custom == counts["max"]


# -- bad input ---------------------------------------------------------------

def test_unknown_method_lists_the_registered_ones():
    with pytest.raises(UnknownNameError, match=r"unknown method 'dopri6'; known: .*'dopri5'"):
        symadj.odeint(lambda t, y: y, np.ones(1), np.array([0.0, 1.0]), method="dopri6")


def test_unknown_option_lists_the_valid_ones():
    with pytest.raises(UnknownNameError, match=r"unknown option 'max_num_steps'; known: .*'max_steps'"):
        symadj.odeint(lambda t, y: y, np.ones(1), np.array([0.0, 1.0]), options={"max_num_steps": 3})


def test_unknown_backend_lists_the_registered_ones():
    with pytest.raises(UnknownNameError, match=r"unknown backend 'tensorflow'; known: .*'numpy'"):
        symadj.odeint(lambda t, y: y, np.ones(1), np.array([0.0, 1.0]), backend="tensorflow")


@pytest.mark.parametrize(
    ("t", "message"),
    [
        ([0.0, 1.0, 0.5], "strictly increasing or strictly decreasing"),
        ([0.0, 1.0, 1.0], "strictly increasing or strictly decreasing"),
        ([], "at least one time"),
        ([0.0, float("nan")], "NaN"),
    ],
)
def test_bad_times(t, message):
    with pytest.raises(InvalidArgumentError, match=message):
        symadj.odeint(lambda t, y: -y, np.ones(1), np.array(t))


@pytest.mark.parametrize("name", ["rtol", "atol"])
@pytest.mark.parametrize("value", [0.0, -1e-6, float("inf")])
def test_bad_tolerances(name, value):
    with pytest.raises(InvalidArgumentError, match=name):
        symadj.odeint(lambda t, y: -y, np.ones(1), np.array([0.0, 1.0]), **{name: value})


def test_nonfinite_initial_state():
    with pytest.raises(NonFiniteError, match="y0 contains NaN"):
        symadj.odeint(lambda t, y: -y, np.array([1.0, np.nan]), np.array([0.0, 1.0]))


@pytest.mark.parametrize("method", ["dopri5", "rk4"])
def test_nonfinite_state_mid_solve_names_the_time(method):
    def f(t, y):
        return np.where(t > 0.5, np.nan, -y)

    with pytest.raises(NonFiniteError, match=r"NaN or infinite in the step from t=0\.\d+"):
        symadj.odeint(f, np.ones(1), np.linspace(0, 1, 11), method=method)


def test_max_steps_raises_and_partial_solution_on_request():
    ts = np.linspace(0.0, 50.0, 6)
    with pytest.raises(MaxStepsError, match=r"max_steps=20 .* stopped at t=.* throw=False"):
        symadj.odeint(rotation, np.array([1.0, 0.0]), ts, options={"max_steps": 20})
    sol = symadj.solve(rotation, np.array([1.0, 0.0]), ts, options={"max_steps": 20}, throw=False)
    assert sol.status is symadj.Status.MAX_STEPS and sol.stats.n_attempts == 20
    reached = int(sol.stats.n_outputs)
    assert 1 <= reached < len(ts)
    assert np.all(np.isfinite(sol.ys[:reached])) and np.all(np.isnan(sol.ys[reached:]))


def test_step_size_underflow():
    def blow_up(t, y):
        return y * y  # y = 1 / (1 - t): singular at t = 1

    with pytest.raises(StepSizeUnderflowError, match=r"min_step=0.001 .* at t=0\.9"):
        symadj.odeint(blow_up, np.ones(1), np.array([0.0, 2.0]), options={"min_step": 1e-3})


def test_func_returning_the_wrong_shape_or_dtype():
    with pytest.raises(InvalidArgumentError, match=r"shape \(3,\), expected \(2,\)"):
        symadj.odeint(lambda t, y: np.ones(3), np.ones(2), np.array([0.0, 1.0]))
    with pytest.raises(InvalidArgumentError, match="dtype float32, expected float64"):
        symadj.odeint(lambda t, y: (-y).astype(np.float32), np.ones(2), np.array([0.0, 1.0]))


def test_mismatched_state_dtypes_and_non_float_state():
    with pytest.raises(InvalidArgumentError, match="share one dtype"):
        symadj.odeint(lambda t, s: s, (np.ones(1), np.ones(1, np.float32)), np.array([0.0, 1.0]))
    with pytest.raises(InvalidArgumentError, match="pass a real or complex floating dtype"):
        symadj.odeint(lambda t, y: y, np.ones(1, dtype=np.int64), np.array([0.0, 1.0]))


@pytest.mark.parametrize(
    ("options", "message"),
    [({"max_steps": 0}, "max_steps"), ({"safety": 2.0}, "safety"), ({"step_size": -0.1}, "step_size"),
     ({"norm": "l1"}, "unknown norm 'l1'"), ({"dfactor": 0.0}, "dfactor")],
)
def test_invalid_option_values(options, message):
    with pytest.raises(InvalidArgumentError, match=message):
        symadj.odeint(lambda t, y: -y, np.ones(1), np.array([0.0, 1.0]), options=options)


def test_errors_share_the_symadj_root():
    for error in (UnknownNameError, InvalidArgumentError, MaxStepsError, NonFiniteError, StepSizeUnderflowError):
        assert issubclass(error, symadj.SymadjError)
    assert issubclass(InvalidArgumentError, ValueError) and issubclass(MaxStepsError, RuntimeError)


def test_a_nan_derivative_at_the_start_fails_at_once_as_non_finite():
    sol = symadj.solve(lambda t, y: y * np.nan, np.ones(2), [0.0, 1.0], throw=False)
    assert sol.status is symadj.Status.NONFINITE and int(sol.stats.n_attempts) == 1
    with pytest.raises(NonFiniteError, match="NaN or infinite in the step from t=0"):
        symadj.odeint(lambda t, y: y * np.nan, np.ones(2), [0.0, 1.0])


# -- options['perturb']: stages at c = 0 and c = 1 one ulp inside the step ----------------------


def _jump_field(calls=None):
    """f = -y before t = 0.5 and -3y after: y(1) = y0 e^{-2}."""

    def f(t, y):
        if calls is not None:
            calls.append(float(t))
        return -y if float(t) < 0.5 else -3.0 * y

    return f


def test_perturbed_stage_times_are_one_ulp_inside_the_step_in_the_given_dtype():
    from symadj._rk_step import Nudge, stage_time

    for dtype, state in ((np.float64, np.float64), (np.float64, np.float32), (np.float32, np.float32)):
        nudge = Nudge.for_state(np, np.dtype(state), np.dtype(dtype))
        t, h = np.asarray(0.5, dtype=dtype), np.asarray(0.25, dtype=dtype)
        after, before = stage_time(t, h, 0.0, nudge), stage_time(t - h, h, 1.0, nudge)
        assert after.dtype == before.dtype == np.dtype(dtype)
        assert state(after) == np.nextafter(state(0.5), state(1)) and state(before) == np.nextafter(
            state(0.5), state(0))
        back = stage_time(t, -h, 0.0, nudge)  # backward in time: inside is below t
        assert state(back) == np.nextafter(state(0.5), state(0))
        assert stage_time(t, h, 0.5, nudge) == 0.625 and stage_time(t, h, 0.0) == t


@pytest.mark.parametrize("method", ["rk38", "euler", "midpoint"])
def test_perturb_keeps_a_fixed_step_solve_on_each_steps_side_of_a_jump_at_a_grid_point(method):
    y0, ts = np.ones(2), np.array([0.0, 1.0])
    calls = []
    perturbed = symadj.solve(_jump_field(calls), y0, ts, method=method,
                             options={"step_size": 0.125, "perturb": True})
    assert 0.5 not in calls and 0.0 not in calls and 1.0 not in calls
    assert len(calls) == int(perturbed.stats.n_fevals)
    plain = symadj.solve(_jump_field(), y0, ts, method=method, options={"step_size": 0.125})
    exact = math.exp(-2.0)
    order = symadj.get_tableau(method).order
    # Unperturbed, the stages at t = 0.5 see the far side: the error of a jump misplaced by a step.
    assert abs(perturbed.ys[-1, 0] - exact) <= 2 * 0.125 ** order
    if method == "rk38":  # only a stage at c = 1 sees the far side: at c = 0, t = 0.5 is the step's own
        assert abs(plain.ys[-1, 0] - exact) > 10 * abs(perturbed.ys[-1, 0] - exact)


@pytest.mark.parametrize("method", ["dopri5", "rk38", "bosh3"])
def test_perturbed_gradients_through_a_jump_are_exact_in_every_mode(method):
    torch = pytest.importorskip("torch")
    options = {"perturb": True, **({"step_size": 0.125} if method == "rk38" else {"jump_t": [0.5]})}
    ts = torch.tensor([0.0, 0.3, 0.5, 1.0], dtype=torch.float64, requires_grad=True)
    weight = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)

    def gradients(mode):
        calls = []

        def f(t, y):
            calls.append(float(t))
            return weight * torch.sin(y) * (1.0 if float(t) < 0.5 else -3.0)

        y0 = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
        sol = symadj.solve(f, y0, ts, method=method, rtol=1e-8, atol=1e-10, gradient=mode, options=options)
        # Forward: the solve's evaluations, and f at each output time for dL/dt.
        assert len(calls) == int(sol.stats.n_fevals) + len(ts)
        calls.clear()
        (sol.ys ** 2).sum().backward()
        assert 0.5 not in calls and 1.0 not in calls
        grads = [y0.grad.clone(), weight.grad.clone(), ts.grad.clone()]
        weight.grad, ts.grad = None, None
        return sol.ys.detach(), grads

    ys, want = gradients("backprop")
    # The stage-state and revolve policies recompute steps from other places than "all" does.
    for mode in ("symplectic", "checkpoint", symadj.Symplectic(checkpoints="stages"),
                 symadj.Symplectic(checkpoints="revolve:2")):
        got_ys, got = gradients(mode)
        assert torch.equal(got_ys, ys)
        for g, w in zip(got, want):
            assert float((g - w).norm() / w.norm()) <= 1e-10, mode


def test_a_fsal_scheme_evaluates_each_first_stage_afresh_under_perturb():
    # dopri5's last stage, at one ulp before t + h, cannot be the next step's first stage.
    calls = []
    ts = np.array([0.0, 1.0])
    plain = symadj.solve(_jump_field(), np.ones(1), ts, options={"jump_t": [0.5]})
    perturbed = symadj.solve(_jump_field(calls), np.ones(1), ts, options={"jump_t": [0.5], "perturb": True})
    steps = int(perturbed.stats.n_attempts)
    assert int(perturbed.stats.n_accepted) == int(plain.stats.n_accepted)
    assert int(perturbed.stats.n_fevals) == int(plain.stats.n_fevals) + int(perturbed.stats.n_accepted) - 1
    assert len(calls) == int(perturbed.stats.n_fevals) and steps >= 4
    np.testing.assert_allclose(perturbed.ys[-1], math.exp(-2.0), rtol=1e-6)


def test_perturb_must_be_a_bool():
    with pytest.raises(InvalidArgumentError, match="perturb"):
        symadj.odeint(lambda t, y: -y, np.ones(1), np.array([0.0, 1.0]), options={"perturb": "yes"})


@pytest.mark.slow
def test_perturbed_gradients_are_exact_under_jax_jit():
    jax = pytest.importorskip("jax")
    if "jax" not in {b.name for b in symadj.list_backends()}:
        pytest.skip("the jax backend plugin is not registered")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    ts = jnp.array([0.0, 0.3, 1.0])

    def loss(y0, w, mode, method):
        options = {"perturb": True, **({"step_size": 0.125} if method == "rk38" else {"jump_t": [0.5]})}

        def f(t, y, w):
            return w * jnp.sin(y) * jnp.where(t < 0.5, 1.0, -3.0)

        ys = symadj.odeint(f, y0, ts, args=w, method=method, rtol=1e-8, atol=1e-10, gradient=mode,
                           options=options)
        return jnp.sum(ys ** 2)

    y0, w = jnp.array([1.0, 2.0]), jnp.array([1.0, -2.0])
    for method in ("dopri5", "rk38"):
        grads = {mode: jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=(2, 3))(y0, w, mode, method)
                 for mode in ("backprop", "symplectic", "checkpoint")}
        for mode in ("symplectic", "checkpoint"):
            for g, ref in zip(grads[mode], grads["backprop"]):
                assert float(jnp.linalg.norm(g - ref) / jnp.linalg.norm(ref)) <= 1e-10, (method, mode)


def test_func_gets_t_in_the_dtype_of_a_float32_state():
    seen = []

    def forced(t, y):
        seen.append(t.dtype)
        return -y + np.cos(t)  # a float64 t would promote dy/dt to float64

    sol = symadj.solve(forced, np.ones(2, dtype=np.float32), np.array([0.0, 1.0]), method="rk4",
                       options={"step_size": 0.25})
    assert sol.ys.dtype == np.float32 and set(seen) == {np.dtype(np.float32)}
