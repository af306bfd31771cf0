"""The problems of the conformance suite and its reference: an explicit Runge–Kutta
integrator in NumPy, written from a tableau's coefficients, independent of the engine.

symadj's core is written against the array API only; this test tooling uses NumPy as the
library its reference computes in.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import symadj

__all__ = ["converged_rotating", "pair_field", "reference_solve", "relative_error", "rotating_field",
           "rotating_problem"]


def rotating_problem() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``(y0, params)`` of :func:`rotating_field` as NumPy float64 arrays (fixed seed).

    Examples:
        >>> y0, params = rotating_problem()
        >>> y0.shape, sorted(params)
        ((4, 3), ['b', 'rotation', 'v', 'w'])
    """
    rng = np.random.default_rng(0)
    params = {
        "rotation": np.array([[0.0, 2.0, 0.0], [-2.0, 0.0, 0.0], [0.0, 0.0, -0.1]]),
        "w": rng.uniform(-0.5, 0.5, (5, 3)),
        "b": rng.uniform(-0.5, 0.5, (5,)),
        "v": rng.uniform(-0.5, 0.5, (3, 5)),
    }
    return rng.normal(size=(4, 3)), params


def rotating_field(xp: Any) -> Callable[[Any, Any, Any], Any]:
    """``func(t, y, params)``: a rotation plus a time-modulated tanh layer, in namespace ``xp``.

    Written with array-API operations only, so the same function is the reference's (with
    NumPy) and the backend's field.

    Examples:
        >>> y0, params = rotating_problem()
        >>> rotating_field(np)(0.0, y0, params).shape
        (4, 3)
    """

    def func(t: Any, y: Any, p: Any) -> Any:
        return y @ p["rotation"].T + xp.tanh(y @ p["w"].T + p["b"]) @ p["v"].T * xp.cos(2.0 * t + 0.5)

    return func


def pair_field(xp: Any) -> Callable[[Any, Any], Any]:
    """A field on a tuple state ``(a, b)`` of shapes (2, 3) and (3,)."""

    def func(t: Any, y: Any) -> Any:
        a, b = y
        return -0.5 * a + b * xp.cos(t), -b + 0.1 * xp.sum(a, axis=0)

    return func


def reference_solve(f: Callable[[float, np.ndarray], np.ndarray], y0: np.ndarray, ts: Sequence[float],
                    tableau: symadj.Tableau, step: float) -> np.ndarray:
    """Explicit Runge–Kutta in NumPy: steps of ``step`` from ``ts[0]``, the last shortened to end
    on ``ts[-1]``; outputs inside a step from the tableau's continuous extension.

    Written from the tableau's coefficients alone, independent of the engine (the steps are
    placed as the engine places fixed steps, so the two agree to rounding).

    Args:
        f: the vector field ``f(t, y)`` on NumPy arrays.
        y0: the initial state.
        ts: increasing output times; ``ts[0]`` is the initial time.
        tableau: the scheme; outputs strictly inside a step need its ``dense`` section.
        step: the step size.

    Returns:
        The states at ``ts``, stacked along a new leading axis.

    Examples:
        >>> import symadj
        >>> ys = reference_solve(lambda t, y: -y, np.ones(1), [0.0, 0.5, 1.0], symadj.get_tableau("rk4"), 0.01)
        >>> round(float(ys[-1, 0]), 8) == round(float(np.exp(-1.0)), 8)
        True
    """
    a = [[float(x) for x in row] for row in tableau.a]
    b, c = [float(x) for x in tableau.b], [float(x) for x in tableau.c]
    dense = None if tableau.dense is None else [[float(p) for p in row] for row in tableau.dense.coefficients]
    t, y, outputs, k = float(ts[0]), np.asarray(y0, dtype=np.float64), [np.asarray(y0, dtype=np.float64)], 1
    while k < len(ts):
        h = min(step, float(ts[-1]) - t)
        stages: list[np.ndarray] = []
        for i in range(len(c)):
            yi = y + h * sum((a[i][j] * stages[j] for j in range(i) if a[i][j] != 0.0), np.zeros_like(y))
            stages.append(f(t + c[i] * h, yi))
        y_new = y + h * sum(bi * ki for bi, ki in zip(b, stages))
        while k < len(ts) and float(ts[k]) <= t + h:
            theta = (float(ts[k]) - t) / h
            if theta == 1.0:
                outputs.append(y_new)
            elif dense is None:
                raise ValueError(f"t={ts[k]} falls inside a step and {tableau.name!r} has no continuous extension")
            else:
                weights = [sum(p * theta ** (n + 1) for n, p in enumerate(row)) for row in dense]
                outputs.append(y + h * sum(w * ki for w, ki in zip(weights, stages)))
            k += 1
        t, y = t + h, y_new
    return np.stack(outputs)


@functools.lru_cache(maxsize=4)
def converged_rotating(ts: tuple[float, ...]) -> np.ndarray:
    """The rotating problem's solution at ``ts`` to about 1e-12 (rk4, steps of 1/1024)."""
    y0, params = rotating_problem()
    f = rotating_field(np)
    return reference_solve(lambda t, y: f(t, y, params), y0, ts, symadj.get_tableau("rk4"), 1 / 1024)


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    scale = float(np.linalg.norm(want))
    return float(np.linalg.norm(got - want)) / (scale if scale > 0 else 1.0)
