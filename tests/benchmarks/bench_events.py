"""What watching for an event costs: a forward + backward solve without an event, with one
event function for the whole state, and with a per-row event, none of which fires (so the
three take the same steps and only the checks differ).

PyTorch, a 2 x 64 tanh MLP on a 64 x 8 float64 state, dopri5 at rtol 1e-6 over [0, 10]
with 50 outputs, gradient="symplectic"; medians of ``--repeats`` calls after a warm-up.

    python tests/benchmarks/bench_events.py
"""

from __future__ import annotations

import argparse
import statistics
import time


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args(argv)

    import torch

    import symadj

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.Tanh(), torch.nn.Linear(64, 64), torch.nn.Tanh(),
                              torch.nn.Linear(64, 8)).double()
    y0 = torch.randn(64, 8, dtype=torch.float64)
    t = torch.linspace(0.0, 10.0, 50, dtype=torch.float64)
    events = {
        "no event": None,
        "whole state": lambda t, y: 1e6 - y.square().sum(),
        "per row": lambda t, y: 1e3 - y.square().sum(dim=1),
    }

    def run(event) -> tuple[float, int]:
        sol = symadj.solve(lambda t, y: net(y), y0, t, rtol=1e-6, atol=1e-6, event=event)
        sol.ys.square().mean().backward()
        return int(sol.stats.n_accepted)

    for name, event in events.items():
        steps = run(event)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            run(event)
            times.append(time.perf_counter() - start)
        print(f"{name:12s} {statistics.median(times) * 1e3:8.1f} ms  ({steps} steps)", flush=True)


if __name__ == "__main__":
    main()
