"""symadj: exact gradients of neural ODEs at minimal memory (the symplectic adjoint method).

Examples:
    >>> import numpy as np, symadj
    >>> ys = symadj.odeint(lambda t, y: -y, np.array([1.0, 2.0]), np.array([0.0, 1.0]))
    >>> ys.shape
    (2, 2)
"""

from __future__ import annotations

import warnings

from . import backend as backend  # the public module of backend plugins
from ._api import odeint, solve
from ._auto_gradient import AutoGradient
from ._backend import Backend, BackendInfo, Buffer, EagerBackend, Field
from ._checkpoint_policies import (
    AllSteps,
    Auto,
    CheckpointPolicy,
    Offload,
    Revolve,
    Stages,
    as_checkpoint_policy,
    parse_bytes,
)
from ._continuous_adjoint import ContinuousAdjoint
from ._events import Event
from ._gradient_names import as_gradient_mode
from ._gradients import Backprop, CheckpointedBackprop, GradientMode, Symplectic
from ._options import SolverOptions
from ._plugins import BackendStatus, registry
from ._reversible import Reversible
from ._solution import EventOutcome, ReconstructionReport, Schedule, Solution, Stats, Status
from ._tableau import Tableau
from .errors import (
    BackendUnavailableError,
    DuplicateNameError,
    GradientNotSupportedError,
    InvalidArgumentError,
    MaxStepsError,
    NonFiniteError,
    ParameterModifiedError,
    PluginLoadWarning,
    RecomputationError,
    RecomputationWarning,
    ReconstructionError,
    ReconstructionWarning,
    SolverError,
    StepSizeUnderflowError,
    SymadjError,
    SymadjWarning,
    TableauError,
    UnknownNameError,
)
from .hookspecs import hookimpl

__version__ = "0.1.0"


def get_tableau(name: str) -> Tableau:
    """The registered tableau called ``name``.

    Args:
        name: a registry name, as passed to ``method=`` (see :func:`list_tableaux`).

    Returns:
        The verified :class:`Tableau` (files are loaded and verified on first use).

    Raises:
        UnknownNameError: no tableau has that name; the message lists the registered names.
        TableauError: the tableau's file fails verification.

    Examples:
        >>> import symadj
        >>> rk4 = symadj.get_tableau("rk4")
        >>> rk4.order, rk4.stages, rk4.adaptive
        (4, 4, False)
    """
    return registry.get_tableau(name)


def list_tableaux() -> list[str]:
    """Names of all registered tableaux: the shipped ones, plugins' and your own.

    Returns:
        The names, sorted.

    Examples:
        >>> import symadj
        >>> {"dopri5", "dopri8", "rk4", "tsit5"} <= set(symadj.list_tableaux())
        True
    """
    return registry.list_tableaux()


def register_tableau(tableau: Tableau | str, *, replace: bool = False) -> Tableau:
    """Register a :class:`Tableau` or a TOML file under its name, for ``method=``.

    Args:
        tableau: a :class:`Tableau`, or the path of a TOML file in the tableau file
            format (verified now, so errors surface at once).
        replace: replace a tableau already registered under that name.

    Returns:
        The registered :class:`Tableau`.

    Raises:
        DuplicateNameError: the name is taken and ``replace`` is false.
        TableauError: the file is malformed or fails verification.

    Examples:
        >>> import numpy as np, symadj
        >>> my_heun3 = symadj.Tableau("my_heun3", c=["0", "1/3", "2/3"], a=[[], ["1/3"], ["0", "2/3"]],
        ...                        b=["1/4", "0", "3/4"], order=3)
        >>> symadj.register_tableau(my_heun3, replace=True).name
        'my_heun3'
        >>> ys = symadj.odeint(lambda t, y: -y, np.ones(1), [0.0, 1.0], method="my_heun3",
        ...                    options={"step_size": 0.1})
        >>> round(float(ys[-1, 0]), 4)
        0.3679
    """
    return registry.register_tableau(tableau, replace=replace)


def get_backend(name: str) -> Backend:
    """The backend called ``name`` (``"torch"``, ``"jax"``, ``"numpy"``, ...), loaded on first use.

    Args:
        name: a registered backend name (see :func:`list_backends`).

    Returns:
        The :class:`Backend`.

    Raises:
        UnknownNameError: no backend has that name; the message lists the registered ones.
        BackendUnavailableError: its library is not installed; the message gives the pip command.

    Examples:
        >>> import symadj
        >>> backend = symadj.get_backend("numpy")
        >>> backend.name, backend.differentiable
        ('numpy', False)
    """
    return registry.get_backend(name)


def list_backends() -> list[BackendStatus]:
    """Every registered backend, with whether its library is installed and how to install it.

    Describing a backend imports nothing: a backend whose library is missing is listed
    as unavailable.

    Returns:
        One :class:`BackendStatus` per backend, sorted by name.

    Examples:
        >>> import symadj
        >>> numpy_backend = next(b for b in symadj.list_backends() if b.name == "numpy")
        >>> numpy_backend.available, numpy_backend.library
        (True, 'numpy')
    """
    return registry.list_backends()


def register_backend(info: BackendInfo, *, replace: bool = False) -> None:
    """Register a backend at run time (plugins do this through the ``symadj`` entry point).

    Args:
        info: the :class:`BackendInfo` describing the backend; its ``load`` runs on first use.
        replace: replace a backend already registered under that name.

    Raises:
        DuplicateNameError: the name is taken and ``replace`` is false.
        InvalidArgumentError: ``info`` is not a :class:`BackendInfo`.

    Examples:
        >>> import symadj
        >>> numpy_backend = symadj.get_backend("numpy")
        >>> info = symadj.BackendInfo(name="numpy_copy", library="numpy", extra="symadj",
        ...                           array_modules=(), load=lambda: numpy_backend)
        >>> symadj.register_backend(info, replace=True)
        >>> symadj.get_backend("numpy_copy") is numpy_backend
        True
    """
    registry.register_backend(info, replace=replace)


def plugin_errors() -> list[str]:
    """Messages of plugins that failed to load or register (each also warned once).

    A plugin that fails is reported, never fatal: every other plugin still loads.

    Returns:
        One message per failure, naming the plugin and the error; empty when all loaded.

    Examples:
        >>> import symadj
        >>> isinstance(symadj.plugin_errors(), list)
        True
    """
    registry.list_tableaux()
    return list(registry.errors)


#: Public names renamed after 0.1, kept for a release: the old name gives the new class, with a warning.
_RENAMED = {"Checkpoint": "CheckpointedBackprop", "Adjoint": "ContinuousAdjoint"}


def __getattr__(name: str) -> type:
    if name in _RENAMED:
        new = _RENAMED[name]
        warnings.warn(f"symadj.{name} is deprecated: the class is now named symadj.{new} "
                      f"(gradient={globals()[new].name!r} is unchanged)", DeprecationWarning, stacklevel=2)
        return globals()[new]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AllSteps", "Auto", "AutoGradient", "Backend", "BackendInfo", "BackendStatus", "BackendUnavailableError",
    "Backprop", "Buffer", "EagerBackend",
    "Event", "EventOutcome",
    "CheckpointPolicy", "CheckpointedBackprop", "ContinuousAdjoint", "DuplicateNameError", "Field", "GradientMode",
    "GradientNotSupportedError",
    "InvalidArgumentError", "MaxStepsError", "NonFiniteError", "Offload", "ParameterModifiedError",
    "PluginLoadWarning", "RecomputationError", "RecomputationWarning", "ReconstructionError",
    "ReconstructionReport", "ReconstructionWarning", "Reversible", "Revolve", "Solution",
    "Schedule", "SolverError", "SolverOptions", "Stages", "Stats", "Status", "StepSizeUnderflowError", "Symplectic",
    "SymadjError", "SymadjWarning", "Tableau", "TableauError", "UnknownNameError", "as_checkpoint_policy",
    "as_gradient_mode", "get_backend", "get_tableau", "hookimpl", "list_backends", "list_tableaux", "odeint",
    "parse_bytes", "plugin_errors", "register_backend", "register_tableau", "solve",
]
