"""symadj's JAX modes against diffrax on the benchmark's timeseries problem, interleaved in one
process: every method's compiled forward+backward program runs in turn, ``--repeats`` rounds,
so that the machine's drift falls on all alike (``symadj bench`` runs each method in its own
process, whose times drift apart by more than these programs differ on a shared machine).

The problem is ``symadj bench --problem timeseries`` (2 x 64 MLP, 64 x 8 float32 state,
dopri5 at rtol 1e-5 over [0, 10], 200 outputs, each library's defaults), built by the JAX
backend's benchmark case; medians in ms and their ratio to diffrax's RecursiveCheckpointAdjoint.

    python tests/benchmarks/bench_jax_timeseries.py
"""

from __future__ import annotations

import argparse
import statistics
import time

METHODS = ["symadj-jax:symplectic", "symadj-jax:checkpoint", "symadj-jax:adjoint",
           "diffrax:RecursiveCheckpointAdjoint", "diffrax:BacksolveAdjoint"]
BASELINE = "diffrax:RecursiveCheckpointAdjoint"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import symadj_jax.bench_case as cases

    from symadj.bench.config import DEFAULTS
    from symadj.bench.methods import get_method

    cases.configure(args.threads, "float32")
    built = {name: cases.BenchCase(get_method(name), DEFAULTS["timeseries"], "float32", "cpu", True)
             for name in METHODS}
    for case in built.values():  # compiled, and warmed up
        case.run()
        case.run()
    times: dict[str, list[float]] = {name: [] for name in METHODS}
    for _ in range(args.repeats):
        for name, case in built.items():
            start = time.perf_counter()
            case.run()
            times[name].append(time.perf_counter() - start)
    baseline = statistics.median(times[BASELINE])
    for name, runs in times.items():
        median = statistics.median(runs)
        print(f"{name:38s} {median * 1e3:7.2f} ms  {median / baseline:5.2f}x")


if __name__ == "__main__":
    main()
