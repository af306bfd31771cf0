"""Write, verify and register a new Runge–Kutta tableau, then train a neural ODE with it.

The scheme is Heun's third-order method (c = 0, 1/3, 2/3; b = 1/4, 0, 3/4), which is
not shipped with symadj. Its second stage has zero weight, yet the third stage uses it,
so the adjoint still needs that stage's vector–Jacobian product: symadj works this out
from the coefficients. The script

1. writes the TOML file (and a copy with a typo, to show what verification reports),
2. verifies both with ``python -m symadj tableaux --verify``,
3. registers the good one with ``symadj.register_tableau`` and prints its partner,
4. checks that the symplectic gradient equals backpropagation through the solver, and
5. trains a small neural ODE with ``method="my_heun3"``.

    python docs/examples/custom_tableau.py --workdir ./my_tableaux
    python docs/examples/custom_tableau.py --quick     # a few seconds, as CI runs it
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

import symadj

HEUN3 = """\
name = "my_heun3"
description = "Heun's third-order method (Heun, Z. Math. Phys. 45, 1900)"
order = 3
c = ["0", "1/3", "2/3"]
a = [
  [],
  ["1/3"],
  ["0", "2/3"],
]
b = ["1/4", "0", "3/4"]
"""


def verify(path: Path) -> int:
    """Run the command-line check, as you would in a terminal; return its exit code."""
    result = subprocess.run([sys.executable, "-m", "symadj", "tableaux", "--verify", str(path)],
                            capture_output=True, text=True)
    print((result.stdout + result.stderr).strip())
    return result.returncode


def field_and_data(width: int):
    torch.manual_seed(0)
    func = torch.nn.Sequential(torch.nn.Linear(2, width), torch.nn.Tanh(), torch.nn.Linear(width, 2)).double()
    y0 = torch.randn(32, 2, dtype=torch.float64)
    times = torch.linspace(0.0, 2.0, 5, dtype=torch.float64)
    rotation = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64)
    with torch.no_grad():
        target = symadj.odeint(lambda t, y: y @ rotation.T - 0.1 * y, y0, times, method="dopri5")
    return func, y0, times, target


def loss_of(func, y0, times, target, gradient: str) -> torch.Tensor:
    ys = symadj.odeint(lambda t, y: func(y), y0, times, method="my_heun3", gradient=gradient,
                       options={"step_size": 0.05}, adjoint_params=list(func.parameters()))
    return (ys - target).pow(2).mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run (CI)")
    parser.add_argument("--workdir", default=None, help="where to write the TOML files (default: a temporary folder)")
    args = parser.parse_args()
    iterations = 20 if args.quick else 300

    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(args.workdir or scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        good, typo = workdir / "my_heun3.toml", workdir / "my_heun3_typo.toml"
        good.write_text(HEUN3, encoding="utf-8")
        typo.write_text(HEUN3.replace('"3/4"]', '"3/5"]'), encoding="utf-8")

        print("-- verifying the file with a typo (b[2] = 3/5):")
        assert verify(typo) == 1
        print("-- verifying the real file:")
        assert verify(good) == 0

        tableau = symadj.register_tableau(str(good), replace=True)

    print(f"registered {tableau.name!r}: order {tableau.order}, {tableau.stages} stages, "
          f"{sum(tableau.adjoint.active)} vector-Jacobian products per backward step")
    print("derived symplectic partner, rows of A-bar:")
    for row in tableau.partner.a:
        print("   ", "  ".join(f"{str(x):>5}" for x in row))

    func, y0, times, target = field_and_data(width=32)
    grads = {}
    for mode in ("backprop", "symplectic"):
        func.zero_grad()
        loss_of(func, y0, times, target, mode).backward()
        grads[mode] = torch.cat([p.grad.flatten() for p in func.parameters()])
    difference = (grads["symplectic"] - grads["backprop"]).norm() / grads["backprop"].norm()
    print(f"symplectic vs backprop gradient, relative difference: {difference.item():.1e}")
    assert difference < 1e-10

    optimizer = torch.optim.Adam(func.parameters(), lr=1e-2)
    for iteration in range(1, iterations + 1):
        loss = loss_of(func, y0, times, target, "symplectic")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if iteration == 1 or iteration % max(iterations // 5, 1) == 0:
            print(f"iter {iteration:4d}  loss {loss.item():.2e}")


if __name__ == "__main__":
    main()
