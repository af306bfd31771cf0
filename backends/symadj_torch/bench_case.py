"""``symadj bench`` in PyTorch: the problems (:mod:`symadj.bench.problems`), solved by symadj's
torch backend or by torchdiffeq (loaded by the benchmark's worker process, see
symadj/bench/worker.py)."""

from __future__ import annotations

from typing import Any

import array_api_compat.torch as xp
import numpy as np
import torch

from symadj.bench import measure
from symadj.bench.methods import Method
from symadj.bench.problems import ProblemArrays, ProblemSpec, gradient_vector, loss_of, problem_arrays, vector_field


class Field(torch.nn.Module):
    """The problem's vector field ``f(t, y)`` with the network's weights as parameters, counting its calls."""

    def __init__(self, spec: ProblemSpec, arrays: ProblemArrays) -> None:
        super().__init__()
        self.spec = spec
        self.weights = torch.nn.ParameterList([torch.nn.Parameter(w) for w, _ in arrays.params])
        self.biases = torch.nn.ParameterList([torch.nn.Parameter(b) for _, b in arrays.params])
        self.register_buffer("probe", arrays.probe)
        self.calls = 0

    def forward(self, t: torch.Tensor, y: Any) -> Any:
        self.calls += 1
        return vector_field(xp, self.spec, t, y, list(zip(self.weights, self.biases)), self.probe)


def configure(threads: int, dtype: str) -> None:
    """Set up the worker process: ``threads`` intra-op threads (0: torch's default)."""
    if threads:
        torch.set_num_threads(threads)


class BenchCase:
    """One method on one problem, ready to run forward and backward repeatedly."""

    def __init__(self, method: Method, spec: ProblemSpec, dtype: str = "float32", device: str = "cpu",
                 count_apart: bool = True) -> None:  # counting is a Python counter here, free: one program
        torch_dtype = getattr(torch, dtype)
        arrays = problem_arrays(spec, lambda a: torch.as_tensor(a, dtype=torch_dtype, device=device))
        self.spec, self.device, self.info = spec, device, {}
        self.field = Field(spec, arrays)
        arrays.leaves[0].requires_grad_(True)
        self.leaves = arrays.leaves
        self.y0, self.times, self.target = arrays.y0, arrays.times, arrays.target
        self._solve = self._solver(method)

    def _solver(self, method: Method) -> Any:
        spec = self.spec
        kwargs = {"method": spec.method, "rtol": spec.rtol, "atol": spec.atol}
        if method.library == "symadj":
            import symadj

            return lambda: symadj.solve(self.field, self.y0, self.times, gradient=method.mode, **kwargs)
        import torchdiffeq

        solver = getattr(torchdiffeq, method.mode)
        return lambda: solver(self.field, self.y0, self.times, **kwargs)

    def _iteration(self) -> int | None:
        result = self._solve()
        ys = result.ys if hasattr(result, "ys") else result
        loss_of(xp, self.spec, ys, self.target).backward()
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
        return int(result.stats.n_accepted) if hasattr(result, "stats") else None

    def run(self) -> None:
        """One forward and backward pass; gradients are dropped."""
        self._iteration()
        self._clear()

    def counted(self) -> tuple[int | None, int]:
        """One forward and backward pass, its gradient kept for :meth:`gradient`: accepted
        steps (``None`` where the method does not report them) and evaluations of the field."""
        self._clear()
        self.field.calls = 0
        return self._iteration(), self.field.calls

    def gradient(self) -> np.ndarray:
        """The gradient of the last :meth:`counted` pass, in canonical order; then dropped."""
        grads = [(w.grad.cpu().numpy(), b.grad.cpu().numpy()) for w, b in zip(self.field.weights, self.field.biases)]
        vector = gradient_vector(grads, self.leaves[0].grad.cpu().numpy())
        self._clear()
        return vector

    def _clear(self) -> None:
        self.field.zero_grad(set_to_none=True)
        self.leaves[0].grad = None

    def reset_peak(self) -> float:
        """Start a peak-memory measurement; returns its baseline in MiB."""
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return torch.cuda.memory_allocated() / 2**20
        return measure.reset_peak()

    def peak_mib(self) -> float:
        """Peak memory (MiB, not above the baseline) since :meth:`reset_peak`."""
        if self.device.startswith("cuda"):
            return torch.cuda.max_memory_allocated() / 2**20
        return measure.peak_mib()
