"""The exceptions symadj raises, all rooted at :class:`SymadjError`."""

from __future__ import annotations

from collections.abc import Iterable


class SymadjError(Exception):
    """Base class of every error symadj raises."""


class SymadjWarning(UserWarning):
    """Base class of every warning symadj emits."""


class TableauError(SymadjError, ValueError):
    """A Butcher tableau is malformed or fails its verification."""


class InvalidArgumentError(SymadjError, ValueError):
    """An argument of a public function has an invalid value."""


class UnknownNameError(InvalidArgumentError):
    """A method, backend, option or gradient mode name is not known.

    The message lists the names that exist.
    """

    def __init__(self, kind: str, name: object, known: Iterable[str], hint: str = "") -> None:
        self.kind = kind
        self.name = name
        self.known = sorted(known)
        listed = ", ".join(repr(k) for k in self.known) or "(none)"
        message = f"unknown {kind} {name!r}; known: {listed}"
        super().__init__(f"{message}. {hint}" if hint else message)


class DuplicateNameError(SymadjError, ValueError):
    """A tableau or backend is registered under a name that is taken."""


class BackendUnavailableError(SymadjError, ImportError):
    """A backend's array library is not installed."""


class GradientNotSupportedError(SymadjError, NotImplementedError):
    """A gradient was requested that the chosen gradient mode cannot give."""


class SolverError(SymadjError, RuntimeError):
    """The integration could not be completed."""


class MaxStepsError(SolverError):
    """The solver needed more than ``max_steps`` steps."""


class StepSizeUnderflowError(SolverError):
    """The step size fell below ``min_step`` (or below what the time resolution allows)."""


class NonFiniteError(SolverError, FloatingPointError):
    """The state or its derivative became NaN or infinite."""


class PluginLoadWarning(SymadjWarning):
    """A plugin failed to load; the others were loaded."""
