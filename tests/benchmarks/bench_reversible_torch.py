"""gradient="reversible" against gradient="symplectic" on PyTorch (CPU, one thread, float32):
a 2 × 64 MLP field on a 256 × 8 state, dopri5 with 200 fixed steps; the median time of a
forward and backward pass over five interleaved runs, after a warm-up, and their ratio.

    python tests/benchmarks/bench_reversible_torch.py
"""

from __future__ import annotations

import statistics
import time

import torch

import symadj


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.Tanh(), torch.nn.Linear(64, 64), torch.nn.Tanh(),
                              torch.nn.Linear(64, 8))
    y0 = torch.randn(256, 8)

    def run(mode):
        net.zero_grad()
        ys = symadj.odeint(lambda t, y: net(y), y0, torch.tensor([0.0, 1.0]), method="dopri5", gradient=mode,
                           options={"step_size": 1 / 200}, adjoint_params=list(net.parameters()))
        ys[-1].square().sum().backward()

    modes = ("symplectic", "reversible")
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    for mode in modes:
        run(mode)
    for _ in range(5):
        for mode in modes:
            start = time.perf_counter()
            run(mode)
            times[mode].append(time.perf_counter() - start)
    medians = {mode: statistics.median(runs) for mode, runs in times.items()}
    for mode, median in medians.items():
        print(f"{mode:11s} {median:.3f} s")
    print(f"reversible / symplectic: {medians['reversible'] / medians['symplectic']:.2f}")


if __name__ == "__main__":
    main()
