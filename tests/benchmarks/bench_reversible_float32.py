"""gradient="reversible" in float32 on the benchmark's time-series problem (``symadj bench
--problem timeseries``: 200 outputs, dopri5, 200 steps), PyTorch, CPU: the reconstruction
check's figure and the gradient's distance from the float64 gradient of the same mode, with the
pair carried in float64 (the default) and in float32 (``wide_carry=False``); the symplectic
mode's float32 gradient against its float64 one for scale.

    python tests/benchmarks/bench_reversible_float32.py
"""

from __future__ import annotations

import array_api_compat.torch as xp
import torch
from symadj_torch.bench_case import Field

import symadj
from symadj.bench.config import DEFAULTS
from symadj.bench.problems import loss_of, problem_arrays


def gradient(dtype: torch.dtype, mode: object) -> tuple[torch.Tensor, int, float | None]:
    spec = DEFAULTS["timeseries"]
    arrays = problem_arrays(spec, lambda a: torch.as_tensor(a, dtype=dtype))
    field = Field(spec, arrays)
    y0 = arrays.y0.requires_grad_()
    sol = symadj.solve(field, y0, arrays.times, method=spec.method, rtol=spec.rtol, atol=spec.atol, gradient=mode)
    loss_of(xp, spec, sol.ys, arrays.target).backward()
    grad = torch.cat([p.grad.reshape(-1).double() for p in field.parameters()] + [y0.grad.reshape(-1).double()])
    report = sol.stats.reconstruction
    return grad, int(sol.stats.n_accepted), None if report is None else report.gap


def main() -> None:
    torch.set_num_threads(1)
    unchecked = {"reconstruction": "warn", "reconstruction_tol": 1e30}  # report the gap, never raise
    rows = [("reversible, float64 pair", symadj.Reversible(**unchecked)),
            ("reversible, float32 pair", symadj.Reversible(wide_carry=False, **unchecked)),
            ("symplectic", "symplectic")]
    for name, mode in rows:
        exact, _, _ = gradient(torch.float64, mode)
        got, steps, gap = gradient(torch.float32, mode)
        distance = float((got - exact).norm() / exact.norm())
        shown = "" if gap is None else f"reconstruction gap {gap:9.2g}"
        print(f"{name:26s} {steps:4d} steps  {shown:28s} gradient vs float64 {distance:9.2g}")


if __name__ == "__main__":
    main()
