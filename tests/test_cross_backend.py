"""The same problem through the torch and the JAX backends: same solution, same gradients."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402

import symadj  # noqa: E402

SHAPES = {"w1": (16, 3), "b1": (16,), "w2": (16, 16), "b2": (16,), "w3": (3, 16), "b3": (3,)}
ROTATION = [[0.0, 3.0, 0.0], [-3.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
WEIGHTS = [0.0, 0.3, -1.0, 2.0]


def numbers():
    rng = np.random.default_rng(0)
    params = {k: rng.uniform(-0.5, 0.5, shape) for k, shape in SHAPES.items()}
    return rng.normal(size=(4, 3)), params


def field(xp, tanh, cos):
    def f(t, y, p):
        hidden = tanh(y @ p["w1"].T + p["b1"])
        hidden = tanh(hidden @ p["w2"].T + p["b2"])
        return y @ xp.asarray(ROTATION, dtype=y.dtype).T + (hidden @ p["w3"].T + p["b3"]) * cos(t)

    return f


def solve_torch(method, mode, options):
    y0, params = numbers()
    y0 = torch.tensor(y0, requires_grad=True)
    params = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    ts = torch.linspace(0.0, 4.0, 4, dtype=torch.float64)
    ys = symadj.odeint(field(torch, torch.tanh, torch.cos), y0, ts, args=params, method=method, gradient=mode,
                       rtol=1e-8, atol=1e-8, options=options)
    loss = sum(w * (y ** 2 + y).sum() for w, y in zip(WEIGHTS, ys))
    grads = torch.autograd.grad(loss, [y0, *params.values()])
    return ys.detach().numpy(), [g.numpy() for g in grads]


def solve_jax(method, mode, options):
    y0, params = numbers()
    ts = jnp.linspace(0.0, 4.0, 4)

    def loss(y0, params):
        ys = symadj.odeint(field(jnp, jnp.tanh, jnp.cos), y0, ts, args=params, method=method, gradient=mode,
                           rtol=1e-8, atol=1e-8, options=options)
        return sum(w * jnp.sum(y ** 2 + y) for w, y in zip(WEIGHTS, ys)), ys

    (_, ys), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(
        jnp.asarray(y0), {k: jnp.asarray(v) for k, v in params.items()})
    return np.asarray(ys), [np.asarray(grads[0]), *(np.asarray(grads[1][k]) for k in SHAPES)]


def relative(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("mode", ["symplectic", "backprop"])
@pytest.mark.parametrize("method, options", [("dopri5", None), pytest.param("dopri8", None, marks=pytest.mark.slow),
                                             ("rk4", {"step_size": 0.1})])
def test_torch_and_jax_agree(method, options, mode):
    torch_ys, torch_grads = solve_torch(method, mode, options)
    jax_ys, jax_grads = solve_jax(method, mode, options)
    assert relative(jax_ys, torch_ys) <= 1e-10
    assert len(jax_grads) == len(torch_grads) == 1 + len(SHAPES)
    assert max(relative(g, r) for g, r in zip(jax_grads, torch_grads)) <= 1e-10
