"""gradient="reversible" against gradient="symplectic" with checkpoints="all" and diffrax's
RecursiveCheckpointAdjoint: the memory XLA's compiled ``jit(grad(loss))`` needs for
temporaries (``memory_analysis``, exact and free of load), and with ``--time`` one timed run
at 2000 steps.

JAX on the default device, float64, a 256 × 256 state (512 KiB), dopri5 with fixed steps,
f(t, y) = tanh(a·y + b) − y with a, b of the state's shape: a problem where the N·|y| that
the symplectic mode keeps dominates memory.

    python tests/benchmarks/bench_reversible.py           # memory at 20 and 2000 steps
    python tests/benchmarks/bench_reversible.py --time    # and the time of one solve + gradient at 2000
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

import symadj

MiB = 2 ** 20


def func(t, y, args):
    a, b = args
    return jnp.tanh(a * y + b) - y


def program(mode, n):
    def loss(y0, params):
        ys = symadj.odeint(func, y0, jnp.asarray([0.0, 1.0]), args=params, method="dopri5", gradient=mode,
                           options={"step_size": 1.0 / n, "max_steps": n + 8})
        return jnp.sum(ys[-1] ** 2)

    return jax.jit(jax.grad(loss, argnums=(0, 1)))


def diffrax_program(n):
    import diffrax

    def loss(y0, params):
        solution = diffrax.diffeqsolve(diffrax.ODETerm(func), diffrax.Dopri5(), 0.0, 1.0, 1.0 / n, y0, args=params,
                                       stepsize_controller=diffrax.ConstantStepSize(), max_steps=n + 8,
                                       adjoint=diffrax.RecursiveCheckpointAdjoint())
        return jnp.sum(solution.ys[-1] ** 2)

    return jax.jit(jax.grad(loss, argnums=(0, 1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time", action="store_true", help="also time one run at 2000 steps")
    timed = parser.parse_args().time
    jax.config.update("jax_enable_x64", True)
    y0 = jnp.full((256, 256), 0.1)
    params = (jnp.full((256, 256), 0.5), jnp.full((256, 256), 0.1))
    programs = {"reversible": lambda n: program(symadj.Reversible(), n),
                "symplectic all": lambda n: program(symadj.Symplectic(checkpoints="all"), n),
                "diffrax RCA": diffrax_program}
    for name, make in programs.items():
        for n in (20, 2000):
            compiled = make(n).lower(y0, params).compile()
            temporaries = compiled.memory_analysis().temp_size_in_bytes / MiB
            line = f"{name:15s} {n:5d} steps  temporaries {temporaries:9.2f} MiB"
            if timed and n == 2000:
                jax.block_until_ready(compiled(y0, params))
                start = time.perf_counter()
                jax.block_until_ready(compiled(y0, params))
                line += f"  {time.perf_counter() - start:.2f} s"
            print(line, flush=True)


if __name__ == "__main__":
    main()
