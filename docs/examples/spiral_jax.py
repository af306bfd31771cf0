"""The spiral neural ODE in JAX: ``func(t, y, args)``, a jitted training step, gradients to ``args``.

The same problem as ``spiral_torch.py``. The whole training step (solve, loss, symplectic
adjoint, Adam update) is one ``jax.jit``-compiled function; the parameters are a plain
dict passed as ``args``, and the optimiser is Adam written out in a few lines, so the
example needs nothing beyond JAX.

    python docs/examples/spiral_jax.py
    python docs/examples/spiral_jax.py --quick    # a few seconds, as CI runs it
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

import symadj

TRUE_MATRIX = jnp.array([[-0.1, 2.0], [-2.0, -0.1]])


def spiral(n_times: int) -> tuple[jax.Array, jax.Array]:
    t = jnp.linspace(0.0, 25.0, n_times)
    ys = symadj.odeint(lambda t, y, matrix: (y**3) @ matrix, jnp.array([[2.0, 0.0]]), t, args=TRUE_MATRIX,
                       method="dopri5", rtol=1e-7, atol=1e-8, options={"max_steps": 20000})
    return t, ys[:, 0]


def init_params(key: jax.Array, width: int = 50) -> dict[str, jax.Array]:
    k1, k2 = jax.random.split(key)
    return {"w1": jax.random.normal(k1, (2, width)) * 0.5, "b1": jnp.zeros(width),
            "w2": jax.random.normal(k2, (width, 2)) * 0.1, "b2": jnp.zeros(2)}


def field(t: jax.Array, y: jax.Array, params: dict[str, jax.Array]) -> jax.Array:
    """dy/dt = MLP(y³), the parameters arriving as ``args``."""
    return jnp.tanh(y**3 @ params["w1"] + params["b1"]) @ params["w2"] + params["b2"]


def loss_fn(params, y0, times, target):
    ys = symadj.odeint(field, y0, times, args=params, method="dopri5", rtol=1e-6, atol=1e-7)
    return jnp.mean(jnp.abs(ys - target))


def adam(learning_rate: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8):
    """Adam as an (init, update) pair over a pytree of parameters."""

    def init(params):
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        return zeros, zeros, 0

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
    args = parser.parse_args()
    iterations = args.iterations or (40 if args.quick else 400)

    t, ys = spiral(1000)
    length, batch = 10, 20
    key = jax.random.PRNGKey(0)
    key, init_key = jax.random.split(key)
    params = init_params(init_key)
    opt_init, opt_update = adam(5e-3)
    opt_state = opt_init(params)

    @jax.jit
    def train_step(params, opt_state, key):
        starts = jax.random.randint(key, (batch,), 0, len(t) - length)
        index = starts[:, None] + jnp.arange(length)
        loss, grads = jax.value_and_grad(loss_fn)(params, ys[starts], t[:length] - t[0], ys[index].transpose(1, 0, 2))
        params, opt_state = opt_update(grads, opt_state, params)
        return params, opt_state, loss

    start = time.perf_counter()
    for iteration in range(1, iterations + 1):
        key, step_key = jax.random.split(key)
        params, opt_state, loss = train_step(params, opt_state, step_key)
        if iteration == 1:
            print(f"compiled the training step in {time.perf_counter() - start:.1f} s")
        if iteration == 1 or iteration % max(iterations // 8, 1) == 0:
            print(f"iter {iteration:4d}  loss {float(loss):.4f}")

    fitted = symadj.odeint(field, ys[:1], t, args=params, method="dopri5", rtol=1e-6, atol=1e-7,
                           options={"max_steps": 20000})
    print(f"whole trajectory: mean abs error {float(jnp.mean(jnp.abs(fitted[:, 0] - ys))):.4f}  "
          f"({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
