"""diffrax's solve with ``adjoint=symadj.diffrax.SymplecticAdjoint()`` against its default
``RecursiveCheckpointAdjoint()``, both at their defaults, on the benchmark's JAX problems.

Each problem is built by the JAX backend's benchmark case (the rows ``diffrax:SymplecticAdjoint``
and ``diffrax:RecursiveCheckpointAdjoint`` of ``symadj bench``): ``mlp`` (8 layers x 512,
batch 256, 16 features, dopri5 at rtol 1e-7, max_steps fitted from a probe solve as the bench
does) and ``timeseries`` (2 x 64, 64 x 8 state, dopri5 at rtol 1e-5, 200 outputs, diffrax's
default max_steps=4096). The compiled forward+backward programs run in turn, ``--repeats``
rounds, so that the machine's drift falls on both alike; printed: XLA's compiled temp memory,
the median time and both as ratios to RecursiveCheckpointAdjoint's.

    python tests/benchmarks/bench_diffrax_adjoint.py [--problem mlp timeseries] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

METHODS = ["diffrax:SymplecticAdjoint", "diffrax:RecursiveCheckpointAdjoint"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problem", nargs="+", default=["mlp", "timeseries"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import symadj_jax.bench_case as cases

    from symadj.bench.config import DEFAULTS
    from symadj.bench.methods import get_method

    cases.configure(args.threads, "float32")
    for problem in args.problem:
        built = {name: cases.BenchCase(get_method(name), DEFAULTS[problem], "float32", "cpu", True)
                 for name in METHODS}
        for case in built.values():  # compiled, and warmed up
            case.run()
        steps, grads = {}, {}
        for name, case in built.items():
            steps[name] = case.counted()[0]
            grads[name] = case.gradient()
        times: dict[str, list[float]] = {name: [] for name in METHODS}
        for _ in range(args.repeats):
            for name, case in built.items():
                start = time.perf_counter()
                case.run()
                times[name].append(time.perf_counter() - start)
        base = built[METHODS[-1]]
        base_time = statistics.median(times[METHODS[-1]])
        ours, theirs = grads[METHODS[0]], grads[METHODS[-1]]
        difference = float(abs(ours - theirs).max() / abs(theirs).max())
        print(f"{problem}: max_steps={base.max_steps or 4096}, accepted steps {steps}, "
              f"gradients' largest relative difference {difference:.1e} (float32)")
        for name, case in built.items():
            median = statistics.median(times[name])
            temp = case.info["temp_mib"]
            print(f"  {name:36s} {median * 1e3:9.1f} ms ({median / base_time:4.2f}x)  "
                  f"temp {temp:8.2f} MiB ({temp / base.info['temp_mib']:4.2f}x)")


if __name__ == "__main__":
    main()
