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

KINDS = ("mlp", "cnf", "pendulum", "timeseries")
# Problems whose field is the network alone, dy/dt = MLP(y), on ``features`` per sample.
PLAIN_MLP = ("mlp", "timeseries")
# Problems whose ``extra`` array is a target trajectory, fitted by the mean squared error
# over every output time.
FITTED = ("pendulum", "timeseries")
# Problems run with each library's own default options (max_steps included), as a user
# would run them; the others give every JAX method the same tight max_steps.
LIBRARY_DEFAULTS = ("timeseries",)
GRAVITY, DAMPING = 9.81, 0.3
TARGET_RTOL = 1e-11


@dataclass(frozen=True)
class ProblemSpec:
    """One benchmark problem at one size.

    Attributes:
        kind: ``"mlp"`` (a neural ODE dy/dt = MLP(y)), ``"cnf"`` (a 2-D continuous
            normalising flow with a Hutchinson trace), ``"pendulum"`` (learned damped
            pendulum dynamics, several output times) or ``"timeseries"`` (dy/dt = MLP(y)
            fitted at every one of many output times to the trajectory of another,
            differently seeded network, as a latent ODE is fitted to a time series).
        layers: linear layers of the network.
        width: hidden width.
        batch: trajectories (samples) in the batch.
        features: state size per sample (``"mlp"`` and ``"timeseries"``; 2 for the others).
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
        if self.kind in PLAIN_MLP:
            size += f"x{self.features}"
        span = f"t in [0, {self.end:g}]"
        if self.kind == "timeseries":
            span += f", {self.outputs} outputs"
        return f"{self.kind} ({size}, {self.method}, rtol {self.rtol:g}, {span})"

    def replace(self, **changes: Any) -> ProblemSpec:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


def state_size(spec: ProblemSpec) -> int:
    """Size of one sample's state in the network's input (the flows add time as an input)."""
    return spec.features if spec.kind in PLAIN_MLP else 3


def output_size(spec: ProblemSpec) -> int:
    """Size of the network's output: the whole derivative, or its learned part."""
    return spec.features if spec.kind in PLAIN_MLP else {"cnf": 2, "pendulum": 1}[spec.kind]


def make_arrays(spec: ProblemSpec) -> dict[str, Any]:
    """The problem's float64 arrays: ``params`` [(W, b), ...], ``y0`` (a tuple) and ``extra``.

    ``extra`` holds the Hutchinson probe vectors (``"cnf"``, fixed for the whole solve as in
    FFJORD) or the target trajectory at every output time (``"pendulum"``, ``"timeseries"``).
    """
    rng = np.random.default_rng(spec.seed)
    sizes = [state_size(spec)] + [spec.width] * (spec.layers - 1) + [output_size(spec)]
    params = _mlp_params(rng, sizes, spec.gain)
    times = np.linspace(0.0, spec.end, spec.outputs)
    if spec.kind == "mlp":
        return {"params": params, "y0": (rng.normal(size=(spec.batch, spec.features)),), "times": times, "extra": None}
    if spec.kind == "timeseries":
        y0 = rng.normal(size=(spec.batch, spec.features))
        teacher = _mlp_params(np.random.default_rng([spec.seed, 1]), sizes, spec.gain)
        return {"params": params, "y0": (y0,), "times": times, "extra": _teacher_target(teacher, y0, times)}
    if spec.kind == "cnf":
        x = _two_moons(rng, spec.batch)
        probe = rng.choice([-1.0, 1.0], size=(spec.batch, 2))  # Rademacher, as FFJORD
        return {"params": params, "y0": (x, np.zeros(spec.batch)), "times": times, "extra": probe}
    y0 = np.stack([rng.uniform(-2.5, 2.5, spec.batch), rng.uniform(-2.0, 2.0, spec.batch)], axis=1)
    return {"params": params, "y0": (y0,), "times": times, "extra": _pendulum_target(y0, times)}


def _mlp_params(rng: np.random.Generator, sizes: list[int], gain: float) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(rng.normal(0.0, gain / math.sqrt(n_in), (n_in, n_out)), 0.1 * rng.normal(size=n_out))
            for n_in, n_out in zip(sizes[:-1], sizes[1:])]


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

    return np.asarray(odeint(pendulum, y0, times, method="dopri8", rtol=TARGET_RTOL, atol=TARGET_RTOL))


def _teacher_target(teacher: list[tuple[np.ndarray, np.ndarray]], y0: np.ndarray, times: np.ndarray) -> np.ndarray:
    """The trajectory of the teacher network's ODE from ``y0``, solved by symadj's NumPy
    backend at a tight tolerance: independent of the problem's tableau and tolerance, so
    that the float64 reference (a dopri8 solve of the same spec) fits the same data."""
    from .._api import odeint

    def teacher_field(t: Any, y: np.ndarray) -> np.ndarray:
        for weight, bias in teacher[:-1]:
            y = np.tanh(y @ weight + bias)
        return y @ teacher[-1][0] + teacher[-1][1]

    return np.asarray(odeint(teacher_field, y0, times, method="dopri8", rtol=TARGET_RTOL, atol=TARGET_RTOL))


def gradient_vector(param_grads: list[tuple[Any, Any]], y0_grad: Any) -> np.ndarray:
    """The gradient in the canonical order (W1, b1, W2, b2, ..., then y0), as float64."""
    parts = [np.asarray(g, dtype=np.float64).ravel() for pair in param_grads for g in pair]
    parts.append(np.asarray(y0_grad, dtype=np.float64).ravel())
    return np.concatenate(parts)
