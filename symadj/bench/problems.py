"""The benchmark problems, each defined once: sizes and tolerances as data, their arrays
made with NumPy, and their vector field and loss written against the array API.

A backend's benchmark case converts the same seeded NumPy arrays to its library's arrays
(:func:`problem_arrays`), so that one float64 reference gradient serves all methods of a
problem, whatever their library, and evaluates :func:`vector_field` and :func:`loss_of` in
its namespace.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import UnknownNameError

KINDS = ("mlp", "cnf", "pendulum", "timeseries", "bigstate")
# Problems whose field is the network alone, dy/dt = MLP(y), on ``features`` per sample.
PLAIN_MLP = ("mlp", "timeseries", "bigstate")
# Problems whose loss is the mean square of the final state.
FINAL_SQUARE = ("mlp", "bigstate")
# Problems whose ``extra`` array is a target trajectory, fitted by the mean squared error
# over every output time.
FITTED = ("pendulum", "timeseries")
# Problems run with each library's own default options (max_steps included), as a user
# would run them; on the others, a case that bounds the steps (fit_max_steps) gives every
# method the same tight bound.
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
            differently seeded network, as a latent ODE is fitted to a time series) or
            ``"bigstate"`` (as ``"mlp"``, with a small network on a large state over many
            steps: the states a mode keeps a step, N·|y|, dominate memory).
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
    if spec.kind in FINAL_SQUARE:
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


@dataclass(frozen=True)
class ProblemArrays:
    """A problem's arrays in one library (:func:`problem_arrays`).

    Attributes:
        params: the network's weights and biases, ``[(W, b), ...]``.
        leaves: the initial state's leaves (the cnf state is ``(z, log-density change)``).
        times: the output times.
        probe: the cnf problem's Hutchinson probe vectors, else ``None``.
        target: the fitted problems' target at every output time, else ``None``.
    """

    params: list[tuple[Any, Any]]
    leaves: tuple[Any, ...]
    times: Any
    probe: Any
    target: Any

    @property
    def y0(self) -> Any:
        """The initial state: its only leaf, or the tuple of leaves."""
        return self.leaves if len(self.leaves) > 1 else self.leaves[0]


def problem_arrays(spec: ProblemSpec, convert: Callable[[np.ndarray], Any]) -> ProblemArrays:
    """The problem's float64 NumPy arrays (:func:`make_arrays`), each passed through ``convert``
    (to a library's array, of the dtype and on the device of the run).

    Examples:
        >>> arrays = problem_arrays(ProblemSpec("cnf", layers=2, width=8, batch=4), np.float32)
        >>> arrays.y0[0].shape, arrays.probe.dtype, arrays.target
        ((4, 2), dtype('float32'), None)
    """
    arrays = make_arrays(spec)
    extra = arrays["extra"]
    return ProblemArrays(params=[(convert(w), convert(b)) for w, b in arrays["params"]],
                         leaves=tuple(convert(a) for a in arrays["y0"]), times=convert(arrays["times"]),
                         probe=convert(extra) if spec.kind == "cnf" else None,
                         target=convert(extra) if spec.kind in FITTED else None)


def _net(xp: Any, params: list[tuple[Any, Any]], h: Any) -> Any:
    for weight, bias in params[:-1]:
        h = xp.tanh(h @ weight + bias)
    return h @ params[-1][0] + params[-1][1]


def vector_field(xp: Any, spec: ProblemSpec, t: Any, y: Any, params: list[tuple[Any, Any]], probe: Any = None) -> Any:
    """dy/dt of the problem at time ``t``, in the array-API namespace ``xp`` of ``y``.

    Args:
        xp: the array-API namespace of the case's library (``numpy``, or one from array-api-compat).
        spec: the problem.
        t: the time, a 0-d array or a float (used by the cnf problem only).
        y: the state, shaped as :attr:`ProblemArrays.y0`.
        params: the network's ``[(W, b), ...]``.
        probe: the cnf problem's :attr:`ProblemArrays.probe`.

    Examples:
        >>> spec = ProblemSpec("pendulum", layers=2, width=8, batch=4)
        >>> arrays = problem_arrays(spec, np.asarray)
        >>> vector_field(np, spec, 0.0, arrays.y0, arrays.params).shape
        (4, 2)
    """
    if spec.kind in PLAIN_MLP:
        return _net(xp, params, y)
    if spec.kind == "pendulum":
        angle, velocity = y[:, :1], y[:, 1:]
        learned = _net(xp, params, xp.concat([xp.sin(angle), xp.cos(angle), velocity], axis=1))
        return xp.concat([velocity, learned], axis=1)
    # FFJORD's Hutchinson estimate e^T (df/dz) e, with J e carried forward through the
    # layers by hand (a JVP): no autodiff call inside the field, so every mode can use it.
    z = y[0]
    h = xp.concat([z, xp.broadcast_to(xp.asarray(t, dtype=z.dtype), (z.shape[0], 1))], axis=1)
    tangent = xp.concat([probe, xp.zeros_like(z[:, :1])], axis=1)
    for weight, bias in params[:-1]:
        h = xp.tanh(h @ weight + bias)
        tangent = (1 - h * h) * (tangent @ weight)
    dz = h @ params[-1][0] + params[-1][1]
    return dz, xp.sum((tangent @ params[-1][0]) * probe, axis=1)


def loss_of(xp: Any, spec: ProblemSpec, ys: Any, target: Any = None) -> Any:
    """The scalar the benchmark differentiates, from the states ``ys`` at every output time:
    the mean square of the final state (mlp, bigstate), the mean squared error against
    :attr:`ProblemArrays.target` (pendulum, timeseries), or the negative mean
    log-likelihood under a standard normal (cnf)."""
    if spec.kind in FINAL_SQUARE:
        return xp.mean(ys[-1] ** 2)
    if spec.kind in FITTED:
        return xp.mean((ys - target) ** 2)
    z, delta = ys[0][-1], ys[1][-1]
    return -xp.mean(-0.5 * xp.sum(z**2, axis=1) - math.log(2 * math.pi) + delta)


def gradient_vector(param_grads: list[tuple[Any, Any]], y0_grad: Any) -> np.ndarray:
    """The gradient in the canonical order (W1, b1, W2, b2, ..., then y0), as float64."""
    parts = [np.asarray(g, dtype=np.float64).ravel() for pair in param_grads for g in pair]
    parts.append(np.asarray(y0_grad, dtype=np.float64).ravel())
    return np.concatenate(parts)
