"""What ``progress=True`` costs: the time of a forward + backward solve with the meter off
and on, on PyTorch and on JAX (jitted, where the meter is a host callback per step).

The problem is the bench's time series: a 2 x 64 tanh MLP on a 64 x 8 float32 state,
dopri5 at rtol 1e-5 with 200 outputs, default options, over [0, 10] (a short solve, where
every step is reported) and over [0, 1000] (a long one: a phase reports at most 50
steps); then the long one with a 2 x 256 MLP on a 1024 x 8 state (steps that cost more
than a host call). Medians of ``--repeats`` calls after a warm-up; the meter's lines go to stderr
(redirect them).

    python tests/benchmarks/bench_progress.py 2>/dev/null
"""

from __future__ import annotations

import argparse
import statistics
import time


def median_seconds(run, repeats: int) -> float:
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def torch_case(repeats: int, end: float, width: int = 64, batch: int = 64) -> dict[str, float]:
    import torch

    import symadj

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, width), torch.nn.Tanh(), torch.nn.Linear(width, width),
                              torch.nn.Tanh(), torch.nn.Linear(width, 8))
    y0, t = torch.randn(batch, 8), torch.linspace(0.0, end, 200)

    def run(progress: bool) -> None:
        ys = symadj.odeint(lambda t, y: net(y), y0, t, rtol=1e-5, atol=1e-5, progress=progress)
        ys.square().mean().backward()

    return {f"progress={flag}": median_seconds(lambda flag=flag: run(flag), repeats) for flag in (False, True)}


def jax_case(repeats: int, end: float, width: int = 64, batch: int = 64) -> dict[str, float]:
    import jax
    import jax.numpy as jnp

    import symadj

    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    params = [jax.random.normal(keys[0], (8, width)) / 8 ** 0.5,
              jax.random.normal(keys[1], (width, width)) / width ** 0.5,
              jax.random.normal(keys[2], (width, 8)) / width ** 0.5]
    y0, t = jax.random.normal(keys[3], (batch, 8)), jnp.linspace(0.0, end, 200)

    def field(t, y, p):
        return jnp.tanh(jnp.tanh(y @ p[0]) @ p[1]) @ p[2]

    def gradient(progress: bool):
        def loss(p):
            return jnp.mean(symadj.odeint(field, y0, t, args=p, rtol=1e-5, atol=1e-5, progress=progress) ** 2)
        return jax.jit(jax.grad(loss))

    results = {}
    for flag in (False, True):
        grad = gradient(flag)
        results[f"progress={flag}"] = median_seconds(lambda grad=grad: jax.block_until_ready(grad(params)), repeats)
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    for end, width, batch in ((10.0, 64, 64), (1000.0, 64, 64), (1000.0, 256, 1024)):
        for name, case in (("torch", torch_case), ("jax", jax_case)):
            times = case(args.repeats if end < 100 else max(args.repeats // 2, 1), end, width, batch)
            off, on = times["progress=False"], times["progress=True"]
            print(f"t in [0, {end:g}], 2x{width} MLP, {batch}x8  {name:6s} off {off * 1e3:8.1f} ms   "
                  f"on {on * 1e3:8.1f} ms   on/off {on / off:.2f}", flush=True)


if __name__ == "__main__":
    main()
