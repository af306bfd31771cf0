"""The spiral neural ODE in JAX: an Equinox model, a jitted training step, exact gradients.

The same problem as ``spiral_torch.py``. The model is a ``symadj.equinox.NeuralODE``
around an Equinox MLP (its arrays reach the solve as ``args``, so the symplectic adjoint
differentiates them); the whole training step (solve, loss, gradients, Adam update) is one
``eqx.filter_jit``-compiled function, and Adam is written out in a few lines. The script
saves its loss curve next to the fitted trajectory (``--out``, needs matplotlib).

    python docs/examples/spiral_jax.py
    python docs/examples/spiral_jax.py --quick    # a few seconds, as CI runs it
"""

from __future__ import annotations

import argparse
import time

import equinox as eqx
import jax
import jax.numpy as jnp
from _figures import save_fit_figure  # docs/examples/_figures.py, beside this script

import symadj
import symadj.equinox

TRUE_MATRIX = jnp.array([[-0.1, 2.0], [-2.0, -0.1]])


def spiral(n_times: int) -> tuple[jax.Array, jax.Array]:
    t = jnp.linspace(0.0, 25.0, n_times)
    ys = symadj.odeint(lambda t, y, matrix: (y**3) @ matrix, jnp.array([[2.0, 0.0]]), t, args=TRUE_MATRIX,
                       method="dopri5", rtol=1e-7, atol=1e-8, options={"max_steps": 20000})
    return t, ys[:, 0]


class Field(eqx.Module):
    """dy/dt = MLP(y³), one MLP applied to every row of the state."""

    mlp: eqx.nn.MLP

    def __init__(self, key: jax.Array, width: int = 50) -> None:
        self.mlp = eqx.nn.MLP(2, 2, width_size=width, depth=1, activation=jnp.tanh, key=key)

    def __call__(self, t: jax.Array, y: jax.Array) -> jax.Array:
        return jax.vmap(self.mlp)(y**3)


def adam(learning_rate: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8):
    """Adam as an (init, update) pair over a pytree of parameters."""

    def init(params):
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        return zeros, zeros, jnp.zeros((), dtype=jnp.int32)  # an array: a Python int would be static under filter_jit

    def update(grads, state, params):
        m, v, count = state
        count = count + 1
        m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, m, grads)
        v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, v, grads)

        def step(p, m, v):
            return p - learning_rate * (m / (1 - b1**count)) / (jnp.sqrt(v / (1 - b2**count)) + eps)

        return jax.tree_util.tree_map(step, params, m, v), (m, v, count)

    return init, update


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (CI)")
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--out", default="spiral_jax.png", help="the figure (default: ./spiral_jax.png)")
    args = parser.parse_args()
    iterations = args.iterations or (40 if args.quick else 400)

    t, ys = spiral(1000)
    length, batch = 10, 20
    key = jax.random.PRNGKey(0)
    key, init_key = jax.random.split(key)
    model = symadj.equinox.NeuralODE(Field(init_key), t[:length] - t[0], rtol=1e-6, atol=1e-7)
    opt_init, opt_update = adam(5e-3)
    opt_state = opt_init(eqx.filter(model.field, eqx.is_inexact_array))

    @eqx.filter_jit
    def train_step(model, opt_state, key):
        starts = jax.random.randint(key, (batch,), 0, len(t) - length)
        target = ys[starts[:, None] + jnp.arange(length)].transpose(1, 0, 2)

        def loss_fn(field):
            return jnp.mean(jnp.abs(eqx.tree_at(lambda m: m.field, model, field)(ys[starts]) - target))

        params, static = eqx.partition(model.field, eqx.is_inexact_array)
        loss, grads = jax.value_and_grad(lambda p: loss_fn(eqx.combine(p, static)))(params)
        params, opt_state = opt_update(grads, opt_state, params)
        return eqx.tree_at(lambda m: m.field, model, eqx.combine(params, static)), opt_state, loss

    start, losses = time.perf_counter(), []
    for iteration in range(1, iterations + 1):
        key, step_key = jax.random.split(key)
        model, opt_state, loss = train_step(model, opt_state, step_key)
        losses.append(float(loss))
        if iteration == 1:
            print(f"compiled the training step in {time.perf_counter() - start:.1f} s")
        if iteration == 1 or iteration % max(iterations // 8, 1) == 0:
            print(f"iter {iteration:4d}  loss {float(loss):.4f}")

    whole = symadj.equinox.NeuralODE(model.field, t, rtol=1e-6, atol=1e-7, max_steps=20000)
    fitted = whole(ys[:1])[:, 0]
    print(f"whole trajectory: mean abs error {float(jnp.mean(jnp.abs(fitted - ys))):.4f}  "
          f"({time.perf_counter() - start:.1f} s)")
    save_fit_figure(args.out, losses, ys, fitted)


if __name__ == "__main__":
    main()
