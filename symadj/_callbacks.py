"""torchdiffeq's step callbacks: ``func.callback_step``, ``func.callback_accept_step`` and
``func.callback_reject_step``, each called as ``callback(t0, y0, dt)`` for the step from
``t0`` of size ``dt`` (before it is tried, once accepted, once rejected); their
``_adjoint`` forms are called by the continuous adjoint's backward solves."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_NAMES = ("callback_step", "callback_accept_step", "callback_reject_step")


@dataclass(frozen=True)
class StepCallbacks:
    """Host functions of ``(t, y, h)`` called by the integration loop (through
    :meth:`Backend.host_callback`), ``y`` in the loop's flat layout."""

    attempt: Callable[[Any, Any, Any], Any] | None = None
    accept: Callable[[Any, Any, Any], Any] | None = None
    reject: Callable[[Any, Any, Any], Any] | None = None

    @classmethod
    def of(cls, func: Any, adjoint: bool = False) -> StepCallbacks | None:
        """The callbacks ``func`` defines (the ``_adjoint`` ones with ``adjoint``); ``None`` if none."""
        suffix = "_adjoint" if adjoint else ""
        found = [getattr(func, name + suffix, None) for name in _NAMES]
        if not any(callable(fn) for fn in found):
            return None
        return cls(*(fn if callable(fn) else None for fn in found))

    def on(self, to_state: Callable[[Any], Any]) -> StepCallbacks:
        """These callbacks given ``to_state(y)`` in place of the loop's ``y``."""

        def given_state(fn: Any) -> Callable[[Any, Any, Any], Any] | None:
            return (lambda t, y, h: fn(t, to_state(y), h)) if fn is not None else None

        return StepCallbacks(given_state(self.attempt), given_state(self.accept), given_state(self.reject))
