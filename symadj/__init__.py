"""symadj: exact gradients of neural ODEs at minimal memory (the symplectic adjoint method).

Example:
    >>> import numpy as np, symadj
    >>> ys = symadj.odeint(lambda t, y: -y, np.array([1.0, 2.0]), np.array([0.0, 1.0]))
    >>> ys.shape
    (2, 2)
"""

from __future__ import annotations

from ._api import odeint, solve
from ._backend import Backend, BackendInfo, Field
from ._gradients import Adjoint, Backprop, Checkpoint, GradientMode, Symplectic
from ._options import SolverOptions
from ._plugins import BackendStatus, hookimpl, registry
from ._solution import Solution, Stats, Status
from ._tableau import Tableau
from .errors import (
    BackendUnavailableError,
    DuplicateNameError,
    GradientNotSupportedError,
    InvalidArgumentError,
    MaxStepsError,
    NonFiniteError,
    PluginLoadWarning,
    SolverError,
    StepSizeUnderflowError,
    SymadjError,
    SymadjWarning,
    TableauError,
    UnknownNameError,
)

__version__ = "0.1.0"


def get_tableau(name: str) -> Tableau:
    """The registered tableau called ``name``.

    Raises:
        UnknownNameError: listing the registered names.

    Example:
        >>> symadj.get_tableau("rk4").order  # doctest: +SKIP
        4
    """
    return registry.get_tableau(name)


def list_tableaux() -> list[str]:
    """Names of all registered tableaux, sorted."""
    return registry.list_tableaux()


def register_tableau(tableau: Tableau | str, *, replace: bool = False) -> Tableau:
    """Register a :class:`Tableau` or a TOML file (verified now) under its name.

    Raises:
        DuplicateNameError: the name is taken and ``replace`` is false.
        TableauError: the file is malformed or fails verification.
    """
    return registry.register_tableau(tableau, replace=replace)


def get_backend(name: str) -> Backend:
    """The backend called ``name`` (``"torch"``, ``"jax"``, ``"numpy"``, ...).

    Raises:
        UnknownNameError: listing the registered backends.
        BackendUnavailableError: its library is not installed; the message gives the pip command.
    """
    return registry.get_backend(name)


def list_backends() -> list[BackendStatus]:
    """Every registered backend, with whether its library is installed and how to install it."""
    return registry.list_backends()


def register_backend(info: BackendInfo, *, replace: bool = False) -> None:
    """Register a backend at run time (plugins do this through the ``symadj`` entry point)."""
    registry.register_backend(info, replace=replace)


def plugin_errors() -> list[str]:
    """Messages of plugins that failed to load or register (each also warned once)."""
    registry.list_tableaux()
    return list(registry.errors)


__all__ = [
    "Adjoint", "Backend", "BackendInfo", "BackendStatus", "BackendUnavailableError", "Backprop",
    "Checkpoint", "DuplicateNameError", "Field", "GradientMode", "GradientNotSupportedError",
    "InvalidArgumentError", "MaxStepsError", "NonFiniteError", "PluginLoadWarning", "Solution",
    "SolverError", "SolverOptions", "Stats", "Status", "StepSizeUnderflowError", "Symplectic",
    "SymadjError", "SymadjWarning", "Tableau", "TableauError", "UnknownNameError", "get_backend",
    "get_tableau", "hookimpl", "list_backends", "list_tableaux", "odeint", "plugin_errors",
    "register_backend", "register_tableau", "solve",
]
