"""Fit a neural ODE to a spiral trajectory (PyTorch, symplectic adjoint).

The data come from the cubic spiral dy/dt = A y³ of torchdiffeq's demo. A small MLP
learns the vector field from short windows of the trajectory; gradients come from the
symplectic adjoint, exact for the discrete solve at a memory cost of one state per step.
The model is a ``symadj.torch.NeuralODE`` module; the script saves its loss curve next to
the fitted trajectory (``--out``, needs matplotlib).

    python docs/examples/spiral_torch.py            # 400 iterations
    python docs/examples/spiral_torch.py --quick    # a few seconds, as CI runs it
"""

from __future__ import annotations

import argparse
import time

import torch
from _figures import save_fit_figure  # docs/examples/_figures.py, beside this script

import symadj
import symadj.torch

TRUE_MATRIX = torch.tensor([[-0.1, 2.0], [-2.0, -0.1]])


def spiral(n_times: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference trajectory y(t) at ``n_times`` equally spaced times on [0, 25]."""
    t = torch.linspace(0.0, 25.0, n_times)
    y0 = torch.tensor([[2.0, 0.0]])
    with torch.no_grad():
        ys = symadj.odeint(lambda t, y: (y**3) @ TRUE_MATRIX, y0, t, method="dopri5", rtol=1e-8, atol=1e-9)
    return t, ys[:, 0]


class Field(torch.nn.Module):
    """dy/dt = MLP(y³): the cube is a hint about the system's form, as in torchdiffeq's demo."""

    def __init__(self, width: int = 50) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(2, width), torch.nn.Tanh(), torch.nn.Linear(width, 2))

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(y**3)


def windows(t: torch.Tensor, ys: torch.Tensor, batch: int, length: int, generator: torch.Generator):
    """``batch`` random windows of ``length`` samples: start states, times, targets."""
    starts = torch.randint(0, len(t) - length, (batch,), generator=generator)
    index = starts[:, None] + torch.arange(length)
    return ys[starts], t[:length] - t[0], ys[index].transpose(0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (CI)")
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--gradient", default="symplectic", choices=["symplectic", "checkpoint", "backprop", "adjoint"])
    parser.add_argument("--out", default="spiral_torch.png", help="the figure (default: ./spiral_torch.png)")
    args = parser.parse_args()
    iterations = args.iterations or (40 if args.quick else 400)

    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    t, ys = spiral(1000)
    length = 10
    model = symadj.torch.NeuralODE(Field(), t[:length] - t[0], method="dopri5", rtol=1e-6, atol=1e-7,
                                   gradient=args.gradient)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)

    start, losses = time.perf_counter(), []
    for iteration in range(1, iterations + 1):
        y0, _, target = windows(t, ys, batch=20, length=length, generator=generator)
        sol = model.solve(y0)
        loss = (sol.ys - target).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if iteration == 1 or iteration % max(iterations // 8, 1) == 0:
            print(f"iter {iteration:4d}  loss {loss.item():.4f}  steps {int(sol.stats.n_accepted)}  "
                  f"checkpoints {int(sol.stats.checkpoint_bytes)} B")

    with torch.no_grad():
        fitted = model(ys[:1], t)[:, 0]
    error = (fitted - ys).abs().mean().item()
    print(f"whole trajectory: mean abs error {error:.4f}  ({time.perf_counter() - start:.1f} s)")
    save_fit_figure(args.out, losses, ys, fitted)


if __name__ == "__main__":
    main()
