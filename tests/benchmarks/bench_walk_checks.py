"""What the exact modes' backward-walk checks cost: forward + backward with the checks as
shipped (non-finite record and recomputation comparison), with ``recomputation="off"``
(the non-finite record only), and with both taken out of the walk (patched away here, for
the comparison only).

PyTorch, a 2 x 64 tanh MLP on a 64 x 8 float64 state, dopri5 at rtol 1e-6 over [0, 10]
with 50 outputs, symplectic and checkpoint modes; JAX the same problem under jit. Medians of
``--repeats`` calls after a warm-up; the three variants are interleaved run by run.

    python tests/benchmarks/bench_walk_checks.py
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

UNCHECKED = []


@contextlib.contextmanager
def without_checks():
    """The walk as it was before the checks: step adjoints passed through, nothing carried, no verdict."""
    from symadj._walk_checks import WalkChecks

    def unchecked_steps(self, adjoint):
        def step(t, h, y, walk, outputs):
            lam, params_bar, _ = adjoint(t, h, y, walk.lam, walk.params_bar, outputs)
            return walk._replace(lam=lam, params_bar=params_bar)

        return step

    saved = WalkChecks.start, WalkChecks.steps, WalkChecks.report
    WalkChecks.start = lambda self, times: ()
    WalkChecks.steps = unchecked_steps
    WalkChecks.report = lambda self, walked, incoming: None
    UNCHECKED.append(True)
    try:
        yield
    finally:
        WalkChecks.start, WalkChecks.steps, WalkChecks.report = saved
        UNCHECKED.pop()


def torch_case(mode_name):
    import torch

    import symadj

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.Tanh(), torch.nn.Linear(64, 64), torch.nn.Tanh(),
                              torch.nn.Linear(64, 8)).double()
    y0 = torch.randn(64, 8, dtype=torch.float64)
    t = torch.linspace(0.0, 10.0, 50, dtype=torch.float64)
    cls = symadj.Symplectic if mode_name == "symplectic" else symadj.CheckpointedBackprop

    def run(recomputation):
        sol = symadj.solve(lambda t, y: net(y), y0, t, rtol=1e-6, atol=1e-6,
                           gradient=cls(recomputation=recomputation))
        sol.ys.square().mean().backward()

    return run


def jax_case(mode_name):
    import jax
    import jax.numpy as jnp
    import numpy as np

    import symadj

    jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(0)
    sizes = [(8, 64), (64, 64), (64, 8)]
    params = [(jnp.asarray(rng.normal(size=s) / np.sqrt(s[0])), jnp.zeros(s[1])) for s in sizes]
    y0 = jnp.asarray(rng.normal(size=(64, 8)))
    t = jnp.linspace(0.0, 10.0, 50)
    cls = symadj.Symplectic if mode_name == "symplectic" else symadj.CheckpointedBackprop

    def field(t, y, params):
        for i, (w, b) in enumerate(params):
            y = y @ w + b
            if i < len(params) - 1:
                y = jnp.tanh(y)
        return y

    compiled = {}

    def run(recomputation):
        key = (recomputation, bool(UNCHECKED))
        if key not in compiled:
            def loss(params):
                ys = symadj.odeint(field, y0, t, args=params, rtol=1e-6, atol=1e-6,
                                   gradient=cls(recomputation=recomputation))
                return jnp.mean(ys ** 2)

            compiled[key] = jax.jit(jax.grad(loss))
        jax.block_until_ready(compiled[key](params))

    return run


def measure(run, repeats):
    variants = {"checks": lambda: run("raise"), "recomputation='off'": lambda: run("off")}

    def bare():
        with without_checks():
            run("off")

    variants["no checks"] = bare
    for call in variants.values():
        call()  # warm-up (and compilation)
    times = {name: [] for name in variants}
    for _ in range(repeats):
        for name, call in variants.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--backends", default="torch,jax")
    args = parser.parse_args(argv)
    cases = {"torch": torch_case, "jax": jax_case}
    for backend in args.backends.split(","):
        for mode in ("symplectic", "checkpoint"):
            medians = measure(cases[backend](mode), args.repeats)
            bare = medians["no checks"]
            line = "  ".join(f"{name} {value * 1e3:7.1f} ms ({value / bare:.3f}x)" for name, value in medians.items())
            print(f"{backend:5s} {mode:10s} {line}", flush=True)


if __name__ == "__main__":
    main()
