"""Solver options: validated once at the API edge, then carried as a frozen object."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Union

from .errors import InvalidArgumentError, UnknownNameError

Norm = Union[str, Callable[[Any], Any]]

#: ``max_steps`` of a solve without a bound: more attempts than any solve can make.
UNBOUNDED_STEPS = sys.maxsize


@dataclass(frozen=True)
class SolverOptions:
    """Options of the stepping engine (the ``options=`` mapping of :func:`symadj.odeint`).

    Attributes:
        first_step: initial step size; chosen by Hairer's heuristic when ``None``.
        step_size: a fixed step size: no error control, steps clipped to land on output times.
            With neither this nor an error estimate, one step per output interval.
        min_step: smallest step size allowed before the solve fails.
        step_floor: adaptive steps never shrink below it, and a step that small is accepted
            whatever its error estimate (torchdiffeq's ``min_step``); 0 (default): no floor.
        max_step: largest adaptive step size (torchdiffeq's ``max_step``); ``None``: no cap.
        max_steps: most step attempts (accepted and rejected) before the solve fails; ``None``
            (default) takes the backend's bound, :attr:`Backend.default_max_steps`: none with
            PyTorch (its buffers grow as steps come), 4096 with JAX (a compiled solve is sized by it).
        safety, ifactor, dfactor: controller safety factor and growth/shrink limits.
        pcoeff: proportional coefficient of the PI controller (0: torchdiffeq's I-controller).
        norm: ``"rms"`` (default), ``"max"``, or a callable taking the scaled error.
        land_on_outputs: end a step on every output time instead of interpolating outputs
            inside steps (the default for tableaux without a continuous extension).
        step_t: times where a step must end (e.g. where func has a kink); any order.
        jump_t: times where func is discontinuous: a step ends one ulp before each and the next
            starts one ulp after it, with the derivative evaluated afresh (torchdiffeq's jump_t).
        perturb: evaluate func one ulp inside every step at its stages at c = 0 (just after the
            step's start) and c = 1 (just before its end), in the dtype func receives t in, so that
            a func discontinuous at step ends sees each step's own side (torchdiffeq's perturb).

    Examples:
        >>> import symadj
        >>> symadj.SolverOptions.from_mapping({"max_steps": 100, "norm": "max"}).max_steps
        100
        >>> symadj.SolverOptions.from_mapping({"max_num_steps": 100})
        Traceback (most recent call last):
            ...
        symadj.errors.UnknownNameError: unknown option 'max_num_steps'; known: 'dfactor', 'first_step', ...
    """

    first_step: float | None = None
    step_size: float | None = None
    min_step: float = 0.0
    step_floor: float = 0.0
    max_step: float | None = None
    max_steps: int | None = None
    safety: float = 0.9
    ifactor: float = 10.0
    dfactor: float = 0.2
    pcoeff: float = 0.0
    norm: Norm = "rms"
    land_on_outputs: bool = False
    step_t: tuple[float, ...] = ()
    jump_t: tuple[float, ...] = ()
    perturb: bool = False

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any] | None) -> SolverOptions:
        """Validated options from the ``options=`` mapping (``None`` gives the defaults).

        Raises:
            UnknownNameError: an unknown option name; the message lists the valid ones.
            InvalidArgumentError: a value out of range, naming the option and its bounds.
        """
        if options is None:
            return cls()
        if isinstance(options, SolverOptions):
            return options
        if not isinstance(options, Mapping):
            raise InvalidArgumentError(f"options must be a dict, got {type(options).__name__}")
        names = {f.name for f in fields(cls)}
        for key in options:
            if key not in names:
                raise UnknownNameError("option", key, names)
        values = dict(options)
        for name in ("step_t", "jump_t"):
            if name in values:
                values[name] = _times(name, values[name])
        return cls(**values)._validated()

    def bounded(self, default_max_steps: int | None) -> SolverOptions:
        """These options with ``max_steps`` set: ``default_max_steps`` where it was left ``None``,
        and no practical bound where that is ``None`` too (the loop needs an integer)."""
        if self.max_steps is not None:
            return self
        return replace(self, max_steps=UNBOUNDED_STEPS if default_max_steps is None else default_max_steps)

    def _validated(self) -> SolverOptions:
        for name in ("first_step", "step_size"):
            value = getattr(self, name)
            if value is not None and not _positive(value):
                raise InvalidArgumentError(f"options[{name!r}] must be a positive number, got {value!r}")
        if not (_finite_number(self.min_step) and self.min_step >= 0):
            raise InvalidArgumentError(f"options['min_step'] must be >= 0, got {self.min_step!r}")
        if not (_finite_number(self.step_floor) and self.step_floor >= 0):
            raise InvalidArgumentError(f"options['step_floor'] must be >= 0, got {self.step_floor!r}")
        if self.max_step is not None and not _positive(self.max_step):
            raise InvalidArgumentError(f"options['max_step'] must be a positive number, got {self.max_step!r}")
        if self.max_step is not None and self.step_floor > self.max_step:
            raise InvalidArgumentError(
                f"options['step_floor']={self.step_floor!r} exceeds options['max_step']={self.max_step!r}; "
                f"lower the floor or raise the cap")
        if self.max_steps is not None and (
                not isinstance(self.max_steps, int) or isinstance(self.max_steps, bool) or self.max_steps < 1):
            raise InvalidArgumentError(f"options['max_steps'] must be a positive integer, got {self.max_steps!r}")
        if not (_positive(self.safety) and self.safety <= 1):
            raise InvalidArgumentError(f"options['safety'] must be in (0, 1], got {self.safety!r}")
        if not (_finite_number(self.ifactor) and self.ifactor >= 1):
            raise InvalidArgumentError(f"options['ifactor'] must be >= 1, got {self.ifactor!r}")
        if not (_positive(self.dfactor) and self.dfactor <= 1):
            raise InvalidArgumentError(f"options['dfactor'] must be in (0, 1], got {self.dfactor!r}")
        if not (_finite_number(self.pcoeff) and 0 <= self.pcoeff < 1):
            raise InvalidArgumentError(f"options['pcoeff'] must be in [0, 1), got {self.pcoeff!r}")
        for name in ("land_on_outputs", "perturb"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidArgumentError(f"options[{name!r}] must be True or False, got {getattr(self, name)!r}")
        if isinstance(self.norm, str) and self.norm not in ("rms", "max"):
            raise UnknownNameError("norm", self.norm, ["rms", "max"], hint="or pass a callable")
        if not isinstance(self.norm, str) and not callable(self.norm):
            raise InvalidArgumentError(f"options['norm'] must be 'rms', 'max' or a callable, got {self.norm!r}")
        return self


def _times(name: str, value: Any) -> tuple[float, ...]:
    """``step_t``/``jump_t`` as sorted Python floats: they shape the solve, so they must be concrete."""
    if value is None:
        return ()
    try:
        times = tuple(sorted(float(v) for v in _flat(value)))
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(
            f"options[{name!r}] must be a 1-D sequence of concrete numbers (not traced values), got "
            f"{type(value).__name__}: {exc}"
        ) from None
    if not all(math.isfinite(t) for t in times):
        raise InvalidArgumentError(f"options[{name!r}] contains NaN or infinity: {times}")
    return times


def _flat(value: Any) -> list[Any]:
    if getattr(value, "ndim", 1) == 0:
        return [value]
    return [item for v in value for item in _flat(v)] if getattr(value, "ndim", 0) > 1 else list(value)


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive(value: Any) -> bool:
    return _finite_number(value) and value > 0
