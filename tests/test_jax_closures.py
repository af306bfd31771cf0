"""JAX: arrays func and event functions close over get their exact gradient in every mode (issue 26).

The reference is ``gradient="backprop"``, which differentiates the closures as JAX does,
and the same field given its arrays through ``args`` (which every mode differentiated
before closures were converted). Float64, 1e-10 relative for the exact modes.
"""

from __future__ import annotations

import functools

import pytest

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import symadj  # noqa: E402

EXACT = ["symplectic", "checkpoint"]
# Each test compiles its own loops (seconds apiece): by default one exact mode, the other in the slow step.
ONE_EXACT = ["symplectic", pytest.param("checkpoint", marks=pytest.mark.slow)]
OTHER_EXACT = [pytest.param("symplectic", marks=pytest.mark.slow), "checkpoint"]
TS = jnp.linspace(0.0, 1.0, 4)
W = jnp.array([0.3, -0.2])
RK4 = {"method": "rk4", "options": {"step_size": 0.125}}


def _close(got, want, rtol=1e-10):
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=rtol * float(jnp.max(jnp.abs(b))))


def _issue_loss(mode, **kwargs):
    def loss(w):
        ys = symadj.odeint(lambda t, y: jnp.tanh(w * y), jnp.ones(2), TS, gradient=mode, **kwargs)
        return jnp.sum(ys ** 2)

    return loss


def _args_loss(mode, **kwargs):
    def loss(w):
        ys = symadj.odeint(lambda t, y, w: jnp.tanh(w * y), jnp.ones(2), TS, args=w, gradient=mode, **kwargs)
        return jnp.sum(ys ** 2)

    return loss


@pytest.mark.parametrize("mode", [*EXACT, "adjoint"])
def test_issue_reproducer_a_closed_over_array_gets_its_gradient(mode):
    want = jax.grad(_issue_loss("backprop"))(W)
    np.testing.assert_allclose(want, [5.602, 2.860], atol=1e-3)  # the figures of the issue
    _close(want, jax.grad(_args_loss("backprop"))(W))
    rtol = 1e-5 if mode == "adjoint" else 1e-10  # the continuous adjoint solves its own ODE
    _close(jax.grad(_issue_loss(mode))(W), want, rtol)


def test_a_closure_under_jit_of_grad():
    _close(jax.jit(jax.grad(_issue_loss("symplectic", **RK4)))(W), jax.grad(_issue_loss("backprop", **RK4))(W))


@pytest.mark.slow
@pytest.mark.parametrize("mode", EXACT)
def test_closures_under_jit_vmap_and_their_compositions(mode):
    loss, reference = _issue_loss(mode, **RK4), _issue_loss("backprop", **RK4)
    want = jax.grad(reference)(W)
    _close(jax.jit(jax.grad(loss))(W), want)
    _close(jax.grad(jax.jit(loss))(W), want)
    batch = jnp.stack([W, 2 * W, -W])
    _close(jax.vmap(jax.grad(loss))(batch), jax.vmap(jax.grad(reference))(batch))
    _close(jax.jit(jax.vmap(jax.grad(loss)))(batch), jax.vmap(jax.grad(reference))(batch))
    # grad of a vmapped solve: the closure holds a batched tracer.
    total = lambda w: jnp.sum(jax.vmap(lambda scale: loss(scale * w))(jnp.array([1.0, 2.0])))  # noqa: E731
    total_ref = lambda w: jnp.sum(jax.vmap(lambda scale: reference(scale * w))(jnp.array([1.0, 2.0])))  # noqa: E731
    _close(jax.grad(total)(W), jax.grad(total_ref)(W))
    # Values and second derivatives of the solve are untouched by the conversion.
    _close(jax.jit(loss)(W), reference(W))


class _Decay:
    def __init__(self, rate):
        self.rate = rate

    def field(self, t, y):
        return -self.rate * y + jnp.sin(t)


def _ways_to_close_over(w):
    """The same field dy/dt = -w y + sin t, reaching w in the ways JAX code does."""

    def outer(t, y):
        def inner(y):
            return -w * y

        return inner(y) + jnp.sin(t)

    def with_rate(t, y, rate):
        return -rate * y + jnp.sin(t)

    return {"nested closure": outer, "functools.partial": functools.partial(with_rate, rate=w),
            "bound method": _Decay(w).field}


@pytest.mark.parametrize("way", ["bound method", *(pytest.param(way, marks=pytest.mark.slow)
                                                  for way in ("nested closure", "functools.partial"))])
@pytest.mark.parametrize("mode", OTHER_EXACT)
def test_every_way_of_closing_over_an_array(mode, way):
    def loss(w, mode):
        return jnp.sum(symadj.odeint(_ways_to_close_over(w)[way], jnp.ones(2), TS, gradient=mode, **RK4) ** 2)

    want = jax.grad(lambda w: jnp.sum(symadj.odeint(
        lambda t, y, w: -w * y + jnp.sin(t), jnp.ones(2), TS, args=w, gradient="backprop", **RK4) ** 2))(W)
    _close(jax.grad(loss)(W, "backprop"), want)
    _close(jax.grad(loss)(W, mode), want)


@pytest.mark.slow
@pytest.mark.parametrize("mode", EXACT)
def test_an_equinox_module_closed_over(mode):
    eqx = pytest.importorskip("equinox")
    mlp = eqx.nn.MLP(2, 2, width_size=4, depth=1, key=jax.random.PRNGKey(0))
    mlp = jax.tree_util.tree_map(lambda x: x.astype(jnp.float64) if eqx.is_inexact_array(x) else x, mlp)

    def loss(model, mode):
        return jnp.sum(symadj.odeint(lambda t, y: model(y), jnp.ones(2), TS, gradient=mode, **RK4) ** 2)

    want = eqx.filter_grad(loss)(mlp, "backprop")
    _close(eqx.filter_grad(loss)(mlp, mode), want)
    _close(eqx.filter_jit(eqx.filter_grad(loss))(mlp, mode), want)


@pytest.mark.parametrize("mode", OTHER_EXACT)
def test_closures_read_on_branches_of_t_and_y_and_integer_tracers_under_jit(mode):
    # w is read only after t = 0.5 (lax.cond) and where y is small (jnp.where); k, an
    # integer tracer under jit, picks an entry and gets no gradient (as before).
    def loss(w, v, k, mode):
        def field(t, y):
            late = lax_cond(t > 0.5, lambda y: jnp.tanh(w * y), lambda y: -y, y)
            return late + jnp.where(jnp.abs(y) < 0.9, v * y[k], 0.0)

        return jnp.sum(symadj.odeint(field, jnp.ones(2), TS, gradient=mode, **RK4) ** 2)

    lax_cond = jax.lax.cond
    grad = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=3)
    want = grad(W, W[::-1], 1, "backprop")
    assert float(jnp.max(jnp.abs(want[0]))) > 0 and float(jnp.max(jnp.abs(want[1]))) > 0
    _close(grad(W, W[::-1], 1, mode), want)


@pytest.mark.parametrize("mode", ONE_EXACT)
def test_a_field_reading_y0_itself(mode):
    # y0 is both the initial state and an array func closes over: both paths count.
    def loss(y0, mode):
        return jnp.sum(symadj.odeint(lambda t, y: -(y - 0.5 * y0) ** 3, y0, TS, gradient=mode, **RK4) ** 2)

    _close(jax.grad(loss)(jnp.array([1.0, 0.4]), mode), jax.grad(loss)(jnp.array([1.0, 0.4]), "backprop"))


@pytest.mark.slow
def test_concrete_arrays_closed_over_take_no_gradient_and_change_nothing():
    frozen = jnp.array([0.5, 1.5])

    def loss(w, mode):
        return jnp.sum(symadj.odeint(lambda t, y: -frozen * w * y, jnp.ones(2), TS, gradient=mode, **RK4) ** 2)

    want = jax.grad(loss)(W, "backprop")
    for mode in EXACT:
        _close(jax.grad(loss)(W, mode), want)
        _close(jax.jit(loss, static_argnums=1)(W, mode), loss(W, "backprop"))


# -- event functions ----------------------------------------------------------

def _fall_event_loss(mode):
    def loss(threshold, rate):
        def fall(t, y):
            return -rate * jnp.ones_like(y)

        sol = symadj.solve(fall, jnp.array([10.0]), jnp.array([0.0, 20.0]), gradient=mode,
                           event=lambda t, y: y[0] - threshold, **RK4)
        return sol.event.t + jnp.sum(sol.ys[-1])

    return loss


@pytest.mark.parametrize("mode", [*ONE_EXACT, pytest.param("adjoint", marks=pytest.mark.slow)])
def test_an_event_function_closing_over_a_traced_threshold(mode):
    # y = 10 - rate t hits the threshold at t* = (10 - threshold)/rate; the state at the end
    # is held at the event (the threshold): d/dthreshold = -1/rate + 1, d/drate = -t*/rate.
    threshold, rate = jnp.array(4.0), jnp.array(1.5)
    analytic = (-1 / rate + 1, -(10 - threshold) / rate ** 2)
    want = jax.grad(_fall_event_loss("backprop"), argnums=(0, 1))(threshold, rate)
    _close(want, analytic)
    _close(jax.grad(_fall_event_loss(mode), argnums=(0, 1))(threshold, rate), want)


@pytest.mark.slow
@pytest.mark.parametrize("mode", [*EXACT, "adjoint"])
def test_an_event_function_closing_over_a_traced_threshold_under_jit_and_vmap(mode):
    thresholds, rate = jnp.array([3.0, 4.0, 6.0]), jnp.array(1.5)
    grad = jax.grad(_fall_event_loss(mode), argnums=(0, 1))
    want = jax.vmap(jax.grad(_fall_event_loss("backprop"), argnums=(0, 1)), in_axes=(0, None))(thresholds, rate)
    _close(jax.jit(grad)(thresholds[1], rate), (want[0][1], want[1][1]))
    _close(jax.jit(jax.vmap(grad, in_axes=(0, None)))(thresholds, rate), want)


@pytest.mark.slow
@pytest.mark.parametrize("mode", EXACT)
def test_field_and_event_close_over_different_and_shared_arrays(mode):
    def loss(w, threshold, mode):
        sol = symadj.solve(lambda t, y: -w * y + 0.1 * threshold, jnp.array([2.0, 1.0]), jnp.array([0.0, 0.5, 3.0]),
                           gradient=mode, event=lambda t, y: y[0] - threshold * w[1] ** 2, **RK4)
        return sol.event.t + jnp.sum(sol.ys ** 2)

    args = (jnp.array([0.7, 1.1]), jnp.array(1.0))
    want = jax.grad(loss, argnums=(0, 1))(*args, "backprop")
    _close(jax.grad(loss, argnums=(0, 1))(*args, mode), want)


# -- fields that differentiate inside themselves ---------------------------------

def _cnf(weights, y, t):
    return jnp.tanh(y @ weights[:2] + t * weights[2])


def _cnf_loss(mode, closed, inner="jacfwd"):
    """A continuous normalising flow with an exact trace: d[z, log p]/dt = [f, -tr(df/dz)]."""

    def field(t, state, weights):
        z = state[:2]
        f = lambda z: _cnf(weights, z, t)  # noqa: E731
        if inner == "jacfwd":
            trace = jnp.trace(jax.jacfwd(f)(z))
        elif inner == "grad":
            trace = sum(jax.grad(lambda z, i=i: f(z)[i])(z)[i] for i in range(2))
        else:  # jvp against each basis vector
            trace = sum(jax.jvp(f, (z,), (jnp.eye(2)[i],))[1][i] for i in range(2))
        return jnp.concatenate([f(z), -trace[None]])

    def loss(weights):
        if closed:
            func, args = (lambda t, state: field(t, state, weights)), None
        else:
            func, args = field, weights
        ys = symadj.odeint(func, jnp.array([0.3, -0.4, 0.0]), TS, args=args, gradient=mode, **RK4)
        return jnp.sum(ys[-1, :2] ** 2) - ys[-1, 2]

    return loss


CNF_WEIGHTS = jnp.array([[0.8, -0.5], [0.4, 0.9], [0.3, -0.2]])


@pytest.mark.parametrize("mode, closed, inner", [
    ("symplectic", True, "jacfwd"),
    *(pytest.param(mode, closed, inner, marks=pytest.mark.slow) for mode in EXACT for closed in (False, True)
      for inner in ("jacfwd", "grad", "jvp") if (mode, closed, inner) != ("symplectic", True, "jacfwd"))])
def test_a_cnf_with_an_exact_trace_gets_exact_gradients(mode, closed, inner):
    want = jax.grad(_cnf_loss("backprop", closed=False, inner=inner))(CNF_WEIGHTS)
    assert float(jnp.max(jnp.abs(want))) > 1e-3
    _close(jax.grad(_cnf_loss(mode, closed, inner))(CNF_WEIGHTS), want)


@pytest.mark.slow
def test_a_cnf_under_the_adjoint_and_jit():
    want = jax.grad(_cnf_loss("backprop", closed=False))(CNF_WEIGHTS)
    _close(jax.jit(jax.grad(_cnf_loss("symplectic", closed=True)))(CNF_WEIGHTS), want)
    _close(jax.grad(_cnf_loss("adjoint", closed=True))(CNF_WEIGHTS), want, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("mode", EXACT)
def test_a_closure_with_gradients_with_respect_to_the_output_times(mode):
    # The time-gradient terms evaluate the field at the outputs in the backward pass.
    def loss(w, ts, mode):
        return jnp.sum(symadj.odeint(lambda t, y: jnp.tanh(w * y) * jnp.cos(t), jnp.ones(2), ts, gradient=mode,
                                     **RK4) ** 2)

    grad = jax.grad(loss, argnums=(0, 1))
    _close(grad(W, TS, mode), grad(W, TS, "backprop"))


@pytest.mark.slow
def test_a_per_row_event_closing_over_traced_thresholds():
    # Per-row events receive t with one entry per row: the closure is found at any shape.
    def loss(thresholds, w, mode):
        sol = symadj.solve(lambda t, y: -w * y + jnp.array([0.0, 1.0]), jnp.array([[2.0, 0.0], [1.5, 0.3]]),
                           jnp.array([0.0, 0.5, 3.0]), gradient=mode, event=lambda t, y: y[:, 0] - thresholds, **RK4)
        return jnp.sum(sol.event.t ** 2) + jnp.sum(sol.ys ** 2)

    args = (jnp.array([1.0, 0.8]), jnp.array(0.7))
    want = jax.grad(loss, argnums=(0, 1))(*args, "backprop")
    for mode in EXACT:
        _close(jax.grad(loss, argnums=(0, 1))(*args, mode), want)
