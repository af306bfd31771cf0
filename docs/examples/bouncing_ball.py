"""Fit a bouncing ball to the times it was heard hitting the floor.

A ball falls with air drag, x'' = -g - k x' |x'|, and bounces with restitution e: at each
impact (an event, x = 0) its velocity becomes -e times the impact velocity. Observed: the
first bounce times only. Unknown: the drag k and the restitution e. Each flight is one
solve with ``event=``; the next starts from the event state, reflected, so the loss
reaches k and e through every event time and state, with exact gradients of the
discrete solves (the symplectic adjoint) and the implicit function theorem at each
impact.

    python docs/examples/bouncing_ball.py            # fits, prints the recovered k and e
    python docs/examples/bouncing_ball.py --quick    # a few iterations, as CI runs it
"""

from __future__ import annotations

import argparse

import torch

import symadj

GRAVITY = 9.81


class Flight(torch.nn.Module):
    """Free flight with quadratic drag; the state is (height, velocity)."""

    def __init__(self, drag: float) -> None:
        super().__init__()
        self.log_drag = torch.nn.Parameter(torch.tensor(drag, dtype=torch.float64).log())

    def forward(self, t: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        velocity = state[1]
        return torch.stack([velocity, -GRAVITY - self.log_drag.exp() * velocity * velocity.abs()])


def bounce_times(flight: Flight, restitution: torch.Tensor, bounces: int, gradient: str) -> torch.Tensor:
    """The times of the first ``bounces`` impacts of a ball dropped from 5 m at rest."""
    state, start, times = torch.tensor([5.0, 0.0], dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64), []
    for _ in range(bounces):
        span = torch.stack([start.detach(), start.detach() + 10.0])
        sol = symadj.solve(flight, state, span, gradient=gradient, rtol=1e-8, atol=1e-10,
                           event=lambda t, y: y[0])
        if not bool(sol.event.fired):
            raise RuntimeError("the ball did not land within 10 s")
        # The flight starts at the previous impact: its duration is added to that time.
        start = start + (sol.event.t - span[0])
        times.append(start)
        state = torch.stack([torch.zeros_like(sol.event.y[0]), -restitution * sol.event.y[1]])
    return torch.stack(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few iterations (CI)")
    parser.add_argument("--gradient", default="symplectic", choices=["symplectic", "checkpoint", "backprop"])
    options = parser.parse_args()

    with torch.no_grad():
        heard = bounce_times(Flight(drag=0.3), torch.tensor(0.7, dtype=torch.float64), 6, "backprop")
    print("observed bounce times [s]:", [round(float(t), 4) for t in heard])

    flight = Flight(drag=0.05)
    logit = torch.nn.Parameter(torch.tensor(0.0, dtype=torch.float64))  # restitution = sigmoid(logit)
    optimiser = torch.optim.Adam([*flight.parameters(), logit], lr=0.1)
    iterations = 5 if options.quick else 150
    for iteration in range(iterations):
        optimiser.zero_grad()
        predicted = bounce_times(flight, torch.sigmoid(logit), len(heard), options.gradient)
        loss = ((predicted - heard) ** 2).mean()
        loss.backward()
        optimiser.step()
        if iteration % 25 == 0 or iteration == iterations - 1:
            print(f"iteration {iteration:3d}  loss {loss.item():.3e}  drag {float(flight.log_drag.exp()):.4f}  "
                  f"restitution {float(torch.sigmoid(logit)):.4f}")
    print("true drag 0.3000, restitution 0.7000")


if __name__ == "__main__":
    main()
