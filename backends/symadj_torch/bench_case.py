"""``symadj bench`` in PyTorch: the problems, solved by symadj's torch backend or by torchdiffeq
(loaded by the benchmark's worker process, see symadj/bench/worker.py)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from symadj.bench import measure
from symadj.bench.methods import Method
from symadj.bench.problems import FITTED, PLAIN_MLP, ProblemSpec, gradient_vector, make_arrays


class Field(torch.nn.Module):
    """The problem's vector field ``f(t, y)``, counting its calls."""

    def __init__(self, spec: ProblemSpec, arrays: dict[str, Any], dtype: torch.dtype, device: str) -> None:
        super().__init__()
        self.kind = spec.kind
        as_tensor = lambda a: torch.as_tensor(a, dtype=dtype, device=device)  # noqa: E731
        self.weights = torch.nn.ParameterList([torch.nn.Parameter(as_tensor(w)) for w, _ in arrays["params"]])
        self.biases = torch.nn.ParameterList([torch.nn.Parameter(as_tensor(b)) for _, b in arrays["params"]])
        self.register_buffer("probe", as_tensor(arrays["extra"]) if spec.kind == "cnf" else None)
        self.calls = 0

    def net(self, h: torch.Tensor) -> torch.Tensor:
        for weight, bias in zip(self.weights[:-1], self.biases[:-1]):
            h = torch.tanh(h @ weight + bias)
        return h @ self.weights[-1] + self.biases[-1]

    def forward(self, t: torch.Tensor, y: Any) -> Any:
        self.calls += 1
        if self.kind in PLAIN_MLP:
            return self.net(y)
        if self.kind == "pendulum":
            angle, velocity = y[:, :1], y[:, 1:]
            return torch.cat([velocity, self.net(torch.cat([angle.sin(), angle.cos(), velocity], dim=1))], dim=1)
        return self._flow(t, y[0])

    def _flow(self, t: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # FFJORD's Hutchinson estimate e^T (df/dz) e, with J e carried forward through the
        # layers by hand (a JVP): no autograd call inside the field, so every mode can use it.
        h = torch.cat([z, t.to(z.dtype).expand(z.shape[0], 1)], dim=1)
        tangent = torch.cat([self.probe, torch.zeros_like(z[:, :1])], dim=1)
        for weight, bias in zip(self.weights[:-1], self.biases[:-1]):
            h = torch.tanh(h @ weight + bias)
            tangent = (1 - h * h) * (tangent @ weight)
        dz = h @ self.weights[-1] + self.biases[-1]
        return dz, ((tangent @ self.weights[-1]) * self.probe).sum(dim=1)


def configure(threads: int, dtype: str) -> None:
    """Set up the worker process: ``threads`` intra-op threads (0: torch's default)."""
    if threads:
        torch.set_num_threads(threads)


def loss_of(spec: ProblemSpec, ys: Any, target: torch.Tensor | None) -> torch.Tensor:
    """The scalar the benchmark differentiates (the same in every backend)."""
    if spec.kind == "mlp":
        return ys[-1].square().mean()
    if spec.kind in FITTED:
        return (ys - target).square().mean()
    z, delta = ys[0][-1], ys[1][-1]
    log_p = -0.5 * z.square().sum(dim=1) - math.log(2 * math.pi) + delta
    return -log_p.mean()


class BenchCase:
    """One method on one problem, ready to run forward and backward repeatedly."""

    def __init__(self, method: Method, spec: ProblemSpec, dtype: str = "float32", device: str = "cpu",
                 count_apart: bool = True) -> None:  # counting is a Python counter here, free: one program
        arrays = make_arrays(spec)
        torch_dtype = getattr(torch, dtype)
        self.spec, self.device, self.info = spec, device, {}
        self.field = Field(spec, arrays, torch_dtype, device)
        leaves = [torch.as_tensor(a, dtype=torch_dtype, device=device) for a in arrays["y0"]]
        leaves[0].requires_grad_(True)
        self.leaves = leaves
        self.y0 = tuple(leaves) if len(leaves) > 1 else leaves[0]
        self.times = torch.as_tensor(arrays["times"], dtype=torch_dtype, device=device)
        self.target = torch.as_tensor(arrays["extra"], dtype=torch_dtype, device=device) if spec.kind in FITTED \
            else None
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
        loss_of(self.spec, ys, self.target).backward()
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
