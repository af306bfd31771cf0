"""Learn a damped pendulum with dopri8, where the symplectic adjoint's memory saving matters.

A high-order scheme takes few, large steps, but each has many stages: dopri8 (DOP853)
evaluates the network 12 times per step. Backpropagating through the solver keeps the
activations of every one of those evaluations; the symplectic adjoint keeps one state
per accepted step and rebuilds one network evaluation at a time in the backward pass.

The script first measures what each gradient mode holds for its backward pass on one
batch (tensors saved by autograd, deduplicated, plus symadj's own checkpoints) and checks
that the exact modes agree, then trains a network to learn the pendulum's acceleration.

    python docs/examples/pendulum_dopri8.py
    python docs/examples/pendulum_dopri8.py --quick    # a few seconds, as CI runs it
"""

from __future__ import annotations

import argparse
import time

import torch

import symadj

GRAVITY, DAMPING = 9.81, 0.3


def pendulum(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    angle, velocity = y[..., 0], y[..., 1]
    return torch.stack([velocity, -GRAVITY * torch.sin(angle) - DAMPING * velocity], dim=-1)


class Model(torch.nn.Module):
    """dθ/dt = ω (known kinematics), dω/dt = MLP(sin θ, cos θ, ω) (learned dynamics)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(3, width), torch.nn.Tanh(),
            torch.nn.Linear(width, width), torch.nn.Tanh(),
            torch.nn.Linear(width, 1),
        )

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        angle, velocity = y[..., :1], y[..., 1:]
        features = torch.cat([angle.sin(), angle.cos(), velocity], dim=-1)
        return torch.cat([velocity, self.net(features)], dim=-1)


class SavedBytes:
    """Bytes of the distinct tensors autograd saves for the backward pass while active."""

    def __init__(self) -> None:
        self.storages: dict[int, int] = {}

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        self.storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    def __enter__(self) -> SavedBytes:
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self.pack, lambda tensor: tensor)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.__exit__(*exc)

    @property
    def total(self) -> int:
        return sum(self.storages.values())


def solve(model: Model, y0: torch.Tensor, times: torch.Tensor, gradient: str) -> symadj.Solution:
    return symadj.solve(model, y0, times, method="dopri8", rtol=1e-7, atol=1e-7, gradient=gradient)


def compare_modes(model: Model, y0: torch.Tensor, times: torch.Tensor, target: torch.Tensor) -> None:
    parameters = [p for p in model.parameters() if p.requires_grad]
    parameter_bytes = {p.untyped_storage().data_ptr() for p in parameters}
    reference = None
    print(f"{'gradient':>10}  {'held for backward':>18}  {'time':>7}  {'rel. diff to backprop':>22}")
    for mode in ("backprop", "checkpoint", "symplectic"):
        start = time.perf_counter()
        with SavedBytes() as saved:
            sol = solve(model, y0, times, mode)
            loss = (sol.ys - target).pow(2).mean()
        grads = torch.autograd.grad(loss, parameters)
        elapsed = time.perf_counter() - start
        graph = sum(n for ptr, n in saved.storages.items() if ptr not in parameter_bytes)
        held = graph + int(sol.stats.checkpoint_bytes)
        flat = torch.cat([g.flatten() for g in grads])
        if reference is None:
            reference, difference = flat, "—"
        else:
            difference = f"{((flat - reference).norm() / reference.norm()).item():.1e}"
        print(f"{mode:>10}  {held / 2**20:>14.2f} MiB  {elapsed:>6.2f}s  {difference:>22}")
    print(f"({int(sol.stats.n_accepted)} accepted dopri8 steps, 12 network evaluations each)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (CI)")
    parser.add_argument("--iterations", type=int, default=None)
    args = parser.parse_args()
    iterations = args.iterations or (15 if args.quick else 150)
    batch, width = (64, 64) if args.quick else (256, 128)

    torch.manual_seed(0)
    torch.set_default_dtype(torch.float64)
    y0 = torch.stack([torch.empty(batch).uniform_(-2.5, 2.5), torch.empty(batch).uniform_(-2.0, 2.0)], dim=1)
    times = torch.linspace(0.0, 4.0, 9)
    with torch.no_grad():
        target = symadj.odeint(pendulum, y0, times, method="dopri8", rtol=1e-10, atol=1e-10)
    model = Model(width)
    compare_modes(model, y0, times, target)

    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    start = time.perf_counter()
    for iteration in range(1, iterations + 1):
        sol = solve(model, y0, times, "symplectic")
        loss = (sol.ys - target).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if iteration == 1 or iteration % max(iterations // 6, 1) == 0:
            print(f"iter {iteration:4d}  loss {loss.item():.2e}  steps {int(sol.stats.n_accepted)}")
    print(f"trained in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
