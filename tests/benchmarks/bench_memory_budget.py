"""The memory budget of checkpoints="auto" with JAX: compiled temporary memory and time of a
jitted symplectic gradient for a large state, at two values of max_steps, next to diffrax.

The field is a tanh MLP acting on each row of a 256 x 256 float32 state (0.25 MiB); the
solve is dopri5 over [0, 1] at rtol = atol = 1e-5, every option at its default except
max_steps. Memory is XLA's ``memory_analysis().temp_size_in_bytes`` of the compiled
gradient; time the median of ``--repeats`` calls after a warm-up call.

    python tests/benchmarks/bench_memory_budget.py
    python tests/benchmarks/bench_memory_budget.py --rows 64 --repeats 3     # smaller
"""

from __future__ import annotations

import argparse
import statistics
import time


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--features", type=int, default=256)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    import diffrax
    import jax
    import jax.numpy as jnp

    import symadj

    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    params = {"w1": jax.random.normal(keys[0], (args.features, args.width)) / args.features ** 0.5,
              "w2": jax.random.normal(keys[1], (args.width, args.features)) / args.width ** 0.5}
    y0 = jax.random.normal(keys[2], (args.rows, args.features))

    def field(t, y, p):
        return jnp.tanh(y @ p["w1"]) @ p["w2"]

    def symadj_loss(max_steps, checkpoints=None):
        def loss(p, y0):
            ys = symadj.odeint(field, y0, jnp.array([0.0, 1.0]), args=p, rtol=1e-5, atol=1e-5,
                               options={"max_steps": max_steps}, checkpoints=checkpoints)
            return jnp.mean(ys[-1] ** 2)
        return loss

    def diffrax_loss(max_steps):
        def loss(p, y0):
            sol = diffrax.diffeqsolve(diffrax.ODETerm(field), diffrax.Dopri5(), 0.0, 1.0, None, y0, args=p,
                                      stepsize_controller=diffrax.PIDController(rtol=1e-5, atol=1e-5),
                                      adjoint=diffrax.RecursiveCheckpointAdjoint(), max_steps=max_steps)
            return jnp.mean(sol.ys[-1] ** 2)
        return loss

    cases = [
        ("symadj symplectic (auto), max_steps 4096", symadj_loss(4096)),
        ("symadj symplectic (auto), max_steps 100000", symadj_loss(100_000)),
        ("symadj symplectic checkpoints='all', max_steps 4096", symadj_loss(4096, "all")),
        ("diffrax RecursiveCheckpointAdjoint, max_steps 4096", diffrax_loss(4096)),
    ]
    state_mib = args.rows * args.features * 4 / 2**20
    print(f"state {args.rows}x{args.features} float32 ({state_mib:.2f} MiB), MLP width {args.width}, dopri5, "
          f"rtol 1e-5, t in [0, 1]; jax {jax.__version__}, diffrax {diffrax.__version__}")
    print(f"{'method':<55} {'temp [MiB]':>10} {'time [ms]':>10}")
    for name, loss in cases:
        compiled = jax.jit(jax.grad(loss)).lower(params, y0).compile()
        temp = compiled.memory_analysis().temp_size_in_bytes / 2**20
        jax.block_until_ready(compiled(params, y0))
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            jax.block_until_ready(compiled(params, y0))
            times.append(time.perf_counter() - start)
        print(f"{name:<55} {temp:>10.1f} {1000 * statistics.median(times):>10.1f}")


if __name__ == "__main__":
    main()
