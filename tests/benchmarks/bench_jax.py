"""Jitted forward+backward time and compiled temporary memory of each gradient mode, next to diffrax.

Time is the median of ``--repeats`` calls after a warm-up call (compilation excluded);
memory is XLA's ``memory_analysis().temp_size_in_bytes`` of the compiled gradient: the
scratch memory the program allocates beyond its inputs and outputs. Every method gets the
same ``max_steps``, set from a probe solve, since ``backprop`` (a scan over max_steps
iterations) and diffrax's ``DirectAdjoint`` allocate for max_steps, not for the steps taken.

    python tests/benchmarks/bench_jax.py            # 8 layers x 512, batch 256, dopri5, rtol 1e-7
    python tests/benchmarks/bench_jax.py --quick    # a small version, about a minute
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

# "mode", or "mode@policy" for a checkpoint policy other than the default "auto".
SYMADJ_MODES = ["symplectic", "symplectic@all", "symplectic@stages", "checkpoint", "backprop", "adjoint"]
DIFFRAX_ADJOINTS = ["RecursiveCheckpointAdjoint", "BacksolveAdjoint", "DirectAdjoint"]


def _parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small network and batch")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--end", type=float, default=1.0, help="integrate over [0, end]")
    parser.add_argument("--gain", type=float, default=2.0, help="weights ~ N(0, gain²/fan_in)")
    parser.add_argument("--rtol", type=float, default=1e-7)
    parser.add_argument("--atol", type=float, default=1e-7)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--x64", action="store_true", help="float64 (default float32)")
    parser.add_argument("--only", nargs="+", default=[*(f"symadj:{m}" for m in SYMADJ_MODES),
                                                      *(f"diffrax:{a}" for a in DIFFRAX_ADJOINTS)])
    args = parser.parse_args(argv)
    if args.quick:
        args.layers, args.width, args.batch, args.repeats = 4, 128, 64, 3
    return args


def _network(args, jax, jnp):
    keys = jax.random.split(jax.random.PRNGKey(0), args.layers)
    sizes = [args.features] + [args.width] * (args.layers - 1) + [args.features]
    return [(args.gain / math.sqrt(n_in) * jax.random.normal(key, (n_in, n_out)), jnp.zeros(n_out))
            for key, n_in, n_out in zip(keys, sizes[:-1], sizes[1:])]


def _field(jnp):
    def field(t, y, params):
        for weight, bias in params[:-1]:
            y = jnp.tanh(y @ weight + bias)
        weight, bias = params[-1]
        return y @ weight + bias

    return field


def main(argv=None):
    args = _parse(argv)
    import jax

    jax.config.update("jax_enable_x64", args.x64)
    import jax.numpy as jnp

    import symadj

    field = _field(jnp)
    params = _network(args, jax, jnp)
    y0 = jax.random.normal(jax.random.PRNGKey(1), (args.batch, args.features))
    ts = jnp.array([0.0, args.end])
    probe = jax.jit(lambda y0, p: symadj.solve(field, y0, ts, args=p, rtol=args.rtol, atol=args.atol).stats)(
        y0, params)
    attempts = int(probe.n_attempts)
    max_steps = math.ceil(1.25 * attempts) + 4

    def loss_of(name):
        library, mode = name.split(":")
        mode, _, policy = mode.partition("@")
        if library == "symadj":
            def loss(y0, p):
                ys = symadj.odeint(field, y0, ts, args=p, method="dopri5", gradient=mode, rtol=args.rtol,
                                   atol=args.atol, options={"max_steps": max_steps}, checkpoints=policy or None)
                return jnp.mean(ys[-1] ** 2)

            return loss
        import diffrax

        def loss(y0, p):
            sol = diffrax.diffeqsolve(
                diffrax.ODETerm(field), diffrax.Dopri5(), ts[0], ts[-1], None, y0, args=p,
                stepsize_controller=diffrax.PIDController(rtol=args.rtol, atol=args.atol),
                adjoint=getattr(diffrax, mode)(), max_steps=max_steps)
            return jnp.mean(sol.ys[-1] ** 2)

        return loss

    print(f"# {args.layers} layers x {args.width}, batch {args.batch}, state {args.batch}x{args.features}, "
          f"dopri5, rtol={args.rtol:g} atol={args.atol:g}, t in [0, {args.end:g}], "
          f"{'float64' if args.x64 else 'float32'}, {int(probe.n_accepted)} accepted of {attempts} steps, "
          f"max_steps={max_steps}, {jax.devices()[0].platform}")
    print(f"{'method':<38} {'time [s]':>10} {'temp memory [MiB]':>18} {'compile [s]':>12}")
    reference = None
    for name in args.only:
        grad = jax.jit(jax.grad(loss_of(name), argnums=(0, 1)))
        start = time.perf_counter()
        compiled = grad.lower(y0, params).compile()
        compile_time = time.perf_counter() - start
        temp = compiled.memory_analysis().temp_size_in_bytes / 2**20
        result = jax.block_until_ready(compiled(y0, params))
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            jax.block_until_ready(compiled(y0, params))
            times.append(time.perf_counter() - start)
        if reference is None:
            reference = result
        leaves = jax.tree_util.tree_leaves(result)
        ref_leaves = jax.tree_util.tree_leaves(reference)
        error = max(float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b)) for a, b in zip(leaves, ref_leaves))
        print(f"{name:<38} {statistics.median(times):>10.3f} {temp:>18.1f} {compile_time:>12.1f}"
              f"   grad rel. diff vs {args.only[0]}: {error:.1e}", flush=True)


if __name__ == "__main__":
    main()
