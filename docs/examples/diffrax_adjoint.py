"""A diffrax training loop, switched to symadj's gradient by one argument.

An Equinox MLP field is fitted to the damped spiral y' = A y with ``diffrax.diffeqsolve``
(Tsit5, a PID controller, ``SaveAt(ts=...)``) as a diffrax user writes it; the only change
is ``adjoint=symadj.diffrax.SymplecticAdjoint()``. Before training, the script checks the
gradient against diffrax's ``RecursiveCheckpointAdjoint`` (the same discrete solve, so they
agree to rounding) and prints the compiled temporary memory of both gradients.

    python docs/examples/diffrax_adjoint.py
    python docs/examples/diffrax_adjoint.py --quick    # a few seconds, as CI runs it
"""

from __future__ import annotations

import argparse
import time

import diffrax
import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp

import symadj.diffrax

TRUE_MATRIX = jnp.array([[-0.1, 2.0], [-2.0, -0.1]])
TIMES = jnp.linspace(0.0, 5.0, 40)


class Field(eqx.Module):
    mlp: eqx.nn.MLP

    def __call__(self, t, y, args):
        return self.mlp(y)


def solve(field, y0, adjoint):
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field), diffrax.Tsit5(), TIMES[0], TIMES[-1], None, y0,
        saveat=diffrax.SaveAt(ts=TIMES), stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-8),
        adjoint=adjoint,  # the one argument that changes
    )
    return sol.ys


def loss(params, static, y0, target, adjoint):
    return jnp.mean((solve(eqx.combine(params, static), y0, adjoint) - target) ** 2)


def compare(params, static, y0, target) -> None:
    """The gradient and the compiled temp memory under both adjoints."""
    grads, temps = [], []
    for adjoint in (symadj.diffrax.SymplecticAdjoint(), diffrax.RecursiveCheckpointAdjoint()):
        grad = jax.jit(jax.grad(lambda p, a=adjoint: loss(p, static, y0, target, a)))
        temps.append(grad.lower(params).compile().memory_analysis().temp_size_in_bytes)
        grads.append(jax.flatten_util.ravel_pytree(grad(params))[0])
    difference = float(jnp.max(jnp.abs(grads[0] - grads[1])) / jnp.max(jnp.abs(grads[1])))
    print(f"gradient vs RecursiveCheckpointAdjoint: max relative difference {difference:.1e}")
    print(f"compiled temp memory: SymplecticAdjoint {temps[0] / 1024:.0f} KiB, "
          f"RecursiveCheckpointAdjoint {temps[1] / 1024:.0f} KiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (CI)")
    args = parser.parse_args()
    iterations = 20 if args.quick else 500

    y0 = jnp.array([2.0, 0.0])
    target = solve(lambda t, y, a: y @ TRUE_MATRIX, y0, diffrax.RecursiveCheckpointAdjoint())
    field = Field(eqx.nn.MLP(2, 2, 32, 2, activation=jnp.tanh, key=jax.random.PRNGKey(0)))
    params, static = eqx.partition(field, eqx.is_inexact_array)
    compare(params, static, y0, target)

    @jax.jit
    def train_step(params):
        value, grads = jax.value_and_grad(loss)(params, static, y0, target, symadj.diffrax.SymplecticAdjoint())
        return jax.tree_util.tree_map(lambda p, g: p - 0.02 * g, params, grads), value

    start = time.perf_counter()
    for iteration in range(1, iterations + 1):
        params, value = train_step(params)
        if iteration == 1 or iteration % max(iterations // 5, 1) == 0:
            print(f"iter {iteration:4d}  loss {float(value):.4f}  ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
