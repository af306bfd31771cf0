"""``symadj.torch``: a neural ODE as a ``torch.nn.Module``."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

import symadj


class NeuralODE(torch.nn.Module):
    """A neural ODE as a module: ``forward(y0)`` solves dy/dt = field(t, y) from ``t[0]``.

    The field's parameters are this module's (``parameters()``, ``state_dict()``,
    ``.to(device)``, optimisers); the output times are a buffer, so they move with
    ``.to()`` and are saved with the state dict. Inside a ``torch.compile``'d model the
    solve runs eagerly (a graph break) and the code around it is compiled.

    Args:
        field: the vector field ``field(t, y)``, usually an ``nn.Module`` (its parameters
            become this module's); a module whose ``forward`` takes one argument is taken
            as an autonomous field ``field(y)`` (``nn.Sequential``, say).
        t: the output times (``forward`` may be given others).
        method: a tableau name or :class:`symadj.Tableau`.
        gradient: ``"auto"`` (default), ``"symplectic"``, ``"checkpoint"``, ``"backprop"``, ``"adjoint"``
            or a :class:`symadj.GradientMode`.
        rtol: relative tolerance.
        atol: absolute tolerance.
        options: solver options (:class:`symadj.SolverOptions`).
        event: an event function (or :class:`symadj.Event`, or a list): see
            :func:`symadj.solve`; the outputs hold the event state after it.
        **solve_kwargs: any other keyword of :func:`symadj.odeint` (``checkpoints``,
            ``adjoint_rtol``, ...).

    Examples:
        >>> import torch, symadj.torch
        >>> _ = torch.manual_seed(0)
        >>> model = symadj.torch.NeuralODE(torch.nn.Linear(2, 2), torch.linspace(0.0, 1.0, 5))
        >>> model(torch.ones(3, 2)).shape  # (times, batch, features)
        torch.Size([5, 3, 2])
        >>> sorted(model.state_dict())
        ['field.bias', 'field.weight', 't']
    """

    def __init__(self, field: Callable[..., Any], t: Any, *, method: str | symadj.Tableau = "dopri5",
                 gradient: str | symadj.GradientMode = "auto", rtol: float = 1e-7, atol: float = 1e-9,
                 options: Mapping[str, Any] | None = None,
                 event: Callable[..., Any] | symadj.Event | Sequence[Any] | None = None, **solve_kwargs: Any) -> None:
        super().__init__()
        self.field = field
        self._autonomous = _takes_one_argument(field)
        self.register_buffer("t", torch.as_tensor(t))
        self.method, self.gradient, self.rtol, self.atol = method, gradient, rtol, atol
        self.options, self.event, self.solve_kwargs = options, event, solve_kwargs

    def solve(self, y0: Any, t: Any = None) -> symadj.Solution:
        """The whole :class:`symadj.Solution` (statistics, event outcome) from ``y0``."""
        times = self.t if t is None else t
        field = self.field
        if self._autonomous:
            def field(t: Any, y: Any) -> Any:
                return self.field(y)
        return symadj.solve(field, y0, times, method=self.method, gradient=self.gradient, rtol=self.rtol,
                            atol=self.atol, options=self.options, event=self.event, **self.solve_kwargs)

    def forward(self, y0: Any, t: Any = None) -> Any:
        """The states at the output times (``t``, or the module's), stacked along a new leading axis."""
        return self.solve(y0, t).ys

    def extra_repr(self) -> str:
        gradient = self.gradient if isinstance(self.gradient, str) else repr(self.gradient)
        return f"times={tuple(self.t.shape)[0]}, method={self.method!r}, gradient={gradient!r}"


def _takes_one_argument(field: Callable[..., Any]) -> bool:
    """Whether ``field`` is a module whose ``forward`` takes just the state."""
    if not isinstance(field, torch.nn.Module):
        return False
    try:
        parameters = inspect.signature(field.forward).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) == 1 and not any(p.kind is p.VAR_POSITIONAL for p in parameters)
