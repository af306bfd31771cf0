"""``symadj.equinox``: a neural ODE as an Equinox module (needs ``equinox``)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

import symadj


class NeuralODE(eqx.Module):
    """A neural ODE as an Equinox module: ``model(y0)`` solves dy/dt = field(t, y) from ``t[0]``.

    The field (an Equinox module, say) is a leaf of this module, so ``eqx.filter_grad``,
    ``eqx.filter_jit`` and optimisers see its arrays; gradients reach them through the
    solve's ``args``, in every gradient mode.

    Built as a dataclass, ``NeuralODE(field, t, method=..., ...)``, from these fields.

    Attributes:
        field: ``field(t, y)``; a module whose ``__call__`` takes just the state
            (``eqx.nn.MLP``) is taken as an autonomous field ``field(y)``.
        t: the output times (``__call__`` may be given others).
        method: a tableau name (static).
        gradient: ``"symplectic"`` (default), ``"checkpoint"``, ``"backprop"`` or ``"adjoint"`` (static).
        rtol: relative tolerance (static).
        atol: absolute tolerance (static).
        max_steps: ``options["max_steps"]``: the static bound a compiled solve is sized by.
        progress: show the solve's progress (static), as ``symadj.solve(progress=True)``.

    Examples:
        >>> import jax, jax.numpy as jnp, equinox as eqx, symadj.equinox
        >>> mlp = eqx.nn.MLP(2, 2, width_size=8, depth=1, key=jax.random.PRNGKey(0))
        >>> model = symadj.equinox.NeuralODE(mlp, jnp.linspace(0.0, 1.0, 5))
        >>> model(jnp.ones(2)).shape
        (5, 2)
    """

    field: Any
    t: jax.Array
    method: str = eqx.field(static=True, default="dopri5")
    gradient: str = eqx.field(static=True, default="symplectic")
    rtol: float = eqx.field(static=True, default=1e-7)
    atol: float = eqx.field(static=True, default=1e-9)
    max_steps: int = eqx.field(static=True, default=4096)
    progress: bool = eqx.field(static=True, default=False)

    def __call__(self, y0: Any, t: Any = None) -> Any:
        """The states at the output times (``t``, or the module's), stacked along a new leading axis."""
        return self.solve(y0, t).ys

    def solve(self, y0: Any, t: Any = None) -> symadj.Solution:
        """The whole :class:`symadj.Solution` (statistics included)."""
        times = self.t if t is None else jnp.asarray(t)
        return symadj.solve(_with_field_as_args(self.field), y0, times, args=self.field, method=self.method,
                            gradient=self.gradient, rtol=self.rtol, atol=self.atol,
                            options={"max_steps": self.max_steps}, progress=self.progress)


def _with_field_as_args(field: Callable[..., Any]) -> Callable[[Any, Any, Any], Any]:
    if _takes_one_argument(field):
        return lambda t, y, field: field(y)
    return lambda t, y, field: field(t, y)


def _takes_one_argument(field: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(field).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                  and p.default is p.empty]
    return len(positional) == 1 and not any(p.kind is p.VAR_POSITIONAL for p in parameters)
