"""The benchmark problems as plain data: sizes, tolerances, and their arrays made with NumPy.

Every backend builds its vector field from the same NumPy arrays (seeded), so that one
float64 reference gradient serves all methods of a problem, whatever their library.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import UnknownNameError

KINDS = ("mlp", "cnf", "pendulum")
GRAVITY, DAMPING = 9.81, 0.3


@dataclass(frozen=True)
class ProblemSpec:
    """One benchmark problem at one size.

    Attributes:
        kind: ``"mlp"`` (a neural ODE dy/dt = MLP(y)), ``"cnf"`` (a 2-D continuous
            normalising flow with a Hutchinson trace) or ``"pendulum"`` (learned damped
            pendulum dynamics, several output times).
        layers: linear layers of the network.
        width: hidden width.
        batch: trajectories (samples) in the batch.
        features: state size per sample (``"mlp"`` only; 2 for the others).
        method: the Runge–Kutta tableau.
        rtol: relative tolerance.
        atol: absolute tolerance.
        end: the integration runs over [0, end].
        outputs: output times (equally spaced, including 0 and ``end``).
        gain: initial weights ~ N(0, gain² / fan_in); larger gives stiffer fields, more steps.
        seed: seed of the weights and data.

    Examples:
        >>> spec = ProblemSpec("mlp", layers=2, width=8, batch=4, features=3)
        >>> [w.shape for w, _ in make_arrays(spec)["params"]]
        [(3, 8), (8, 3)]
    """

    kind: str
    layers: int = 8
    width: int = 512
    batch: int = 256
    features: int = 16
    method: str = "dopri5"
    rtol: float = 1e-7
    atol: float = 1e-7
    end: float = 1.0
    outputs: int = 2
    gain: float = 2.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UnknownNameError("benchmark problem", self.kind, KINDS)

    @property
    def label(self) -> str:
        """A short description for tables: sizes, tableau, tolerance and interval."""
        size = f"{self.layers}x{self.width}, batch {self.batch}"
        if self.kind == "mlp":
            size += f"x{self.features}"
        return f"{self.kind} ({size}, {self.method}, rtol {self.rtol:g}, t in [0, {self.end:g}])"

    def replace(self, **changes: Any) -> ProblemSpec:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def state_size(spec: ProblemSpec) -> int:
    """Size of one sample's state in the network's input (the flows add time as an input)."""
    return {"mlp": spec.features, "cnf": 3, "pendulum": 3}[spec.kind]


def output_size(spec: ProblemSpec) -> int:
    """Size of the network's output: the whole derivative, or its learned part."""
    return {"mlp": spec.features, "cnf": 2, "pendulum": 1}[spec.kind]


def make_arrays(spec: ProblemSpec) -> dict[str, Any]:
    """The problem's float64 arrays: ``params`` [(W, b), ...], ``y0`` (a tuple) and ``extra``.

    ``extra`` holds the Hutchinson probe vectors (``"cnf"``, fixed for the whole solve as in
    FFJORD) or the target trajectory (``"pendulum"``).
    """
    rng = np.random.default_rng(spec.seed)
    sizes = [state_size(spec)] + [spec.width] * (spec.layers - 1) + [output_size(spec)]
    params = [(rng.normal(0.0, spec.gain / math.sqrt(n_in), (n_in, n_out)), 0.1 * rng.normal(size=n_out))
              for n_in, n_out in zip(sizes[:-1], sizes[1:])]
    times = np.linspace(0.0, spec.end, spec.outputs)
    if spec.kind == "mlp":
        return {"params": params, "y0": (rng.normal(size=(spec.batch, spec.features)),), "times": times, "extra": None}
    if spec.kind == "cnf":
        x = _two_moons(rng, spec.batch)
        probe = rng.choice([-1.0, 1.0], size=(spec.batch, 2))  # Rademacher, as FFJORD
        return {"params": params, "y0": (x, np.zeros(spec.batch)), "times": times, "extra": probe}
    y0 = np.stack([rng.uniform(-2.5, 2.5, spec.batch), rng.uniform(-2.0, 2.0, spec.batch)], axis=1)
    return {"params": params, "y0": (y0,), "times": times, "extra": _pendulum_target(y0, times)}


def _two_moons(rng: np.random.Generator, n: int) -> np.ndarray:
    angle = rng.uniform(0.0, math.pi, n)
    upper = rng.random(n) < 0.5
    x = np.where(upper, np.cos(angle), 1.0 - np.cos(angle))
    y = np.where(upper, np.sin(angle), 0.5 - np.sin(angle))
    return np.stack([x, y], axis=1) * 1.5 + 0.1 * rng.normal(size=(n, 2)) - np.array([0.75, 0.0])


def _pendulum_target(y0: np.ndarray, times: np.ndarray) -> np.ndarray:
    """The true damped pendulum, solved by symadj's NumPy backend at a tight tolerance."""
    from .._api import odeint

    def pendulum(t: Any, y: np.ndarray) -> np.ndarray:
        return np.stack([y[:, 1], -GRAVITY * np.sin(y[:, 0]) - DAMPING * y[:, 1]], axis=1)

    return np.asarray(odeint(pendulum, y0, times, method="dopri8", rtol=1e-11, atol=1e-11))


def gradient_vector(param_grads: list[tuple[Any, Any]], y0_grad: Any) -> np.ndarray:
    """The gradient in the canonical order (W1, b1, W2, b2, ..., then y0), as float64."""
    parts = [np.asarray(g, dtype=np.float64).ravel() for pair in param_grads for g in pair]
    parts.append(np.asarray(y0_grad, dtype=np.float64).ravel())
    return np.concatenate(parts)
