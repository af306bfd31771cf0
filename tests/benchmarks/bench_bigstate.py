"""The bench's ``bigstate`` problem at its default size (a 2 × 32 MLP on a 4096 × 64 float32
state, dopri5, t in [0, 20]): the memory each method holds, without the float64 reference
gradient that ``symadj bench --problem bigstate`` computes first (minutes on two cores).

JAX: XLA's compiled temporaries of ``jit(value_and_grad)`` (exact, free of load) and the
steps of one run; PyTorch: the peak resident memory of one forward and backward pass above
its baseline, after a warm-up pass (the bench's own measurement).

    python tests/benchmarks/bench_bigstate.py
    python tests/benchmarks/bench_bigstate.py --backend jax
"""

from __future__ import annotations

import argparse
import importlib

from symadj.bench.config import DEFAULTS
from symadj.bench.methods import get_method

METHODS = {"jax": ("symadj-jax:symplectic", "symadj-jax:reversible", "diffrax:RecursiveCheckpointAdjoint"),
           "torch": ("symadj-torch:symplectic", "symadj-torch:reversible")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", nargs="+", default=["jax", "torch"], choices=sorted(METHODS))
    spec = DEFAULTS["bigstate"]
    print(spec.label)
    for backend in parser.parse_args().backend:
        cases = importlib.import_module(f"symadj_{backend}.bench_case")
        for name in METHODS[backend]:
            case = cases.BenchCase(get_method(name), spec, "float32")
            if backend == "jax":
                steps, _ = case.counted()
                print(f"{name:38s} XLA temporaries {case.info['temp_mib']:8.1f} MiB  {steps} steps", flush=True)
                continue
            case.run()
            case.reset_peak()
            steps, _ = case.counted()
            print(f"{name:38s} peak above baseline {case.peak_mib():8.1f} MiB  {steps} steps", flush=True)


if __name__ == "__main__":
    main()
