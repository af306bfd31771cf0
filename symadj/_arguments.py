"""The arguments of :func:`symadj.solve`: their names turned into objects, their checks, and
the errors of a failed solve."""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypedDict

from ._array_api import device_of, is_array, namespace_of
from ._auto_gradient import AutoGradient
from ._backend import Backend
from ._checkpoint_policies import CheckpointPolicy
from ._complex import is_complex, real_dtype
from ._continuous_adjoint import ContinuousAdjoint
from ._events import Event
from ._gradient_names import as_gradient_mode
from ._gradients import GradientMode, Symplectic, with_checkpoints
from ._interpolant import interpolates
from ._options import SolverOptions
from ._plugins import registry
from ._solution import Stats, Status
from ._tableau import Tableau
from .errors import (
    InvalidArgumentError,
    MaxStepsError,
    NonFiniteError,
    StepSizeUnderflowError,
    SymadjWarning,
)


class SolveArguments(TypedDict, total=False):
    """The keyword arguments of :func:`odeint`: those of :func:`solve` but ``throw``."""

    method: str | Tableau | None
    """a registered tableau name or a :class:`Tableau`; ``"dopri5"`` by default (also for ``None``)."""
    rtol: Any
    """relative tolerance (default ``1e-7``)."""
    atol: Any
    """absolute tolerance (default ``1e-9``)."""
    gradient: str | GradientMode
    """``"auto"`` (default), ``"symplectic"``, ``"checkpoint"``, ``"backprop"``, ``"adjoint"`` or a
    :class:`GradientMode`."""
    backend: str | None
    """the array backend; by default the one that handles ``y0``."""
    options: Mapping[str, Any] | None
    """solver options, see :class:`SolverOptions`."""
    args: Any
    """extra argument of ``func``; gradients flow to it."""
    adjoint_params: Sequence[Any] | None
    """tensors gradients flow to (PyTorch), as in :func:`solve`; by default ``func.parameters()``
    and the tensors requiring grad that func uses."""
    adjoint_rtol: float | None
    """``gradient="adjoint"`` only, as in :func:`solve`."""
    adjoint_atol: float | None
    """``gradient="adjoint"`` only."""
    adjoint_options: Mapping[str, Any] | None
    """``gradient="adjoint"`` only."""
    checkpoints: str | CheckpointPolicy | None
    """``gradient="symplectic"``/``"checkpoint"`` only, as in :func:`solve`."""
    event: Callable[..., Any] | Event | Sequence[Callable[..., Any] | Event] | None
    """stop where a function of the state crosses zero, as in :func:`solve` (whose
    ``Solution.event`` also gives the event time); outputs at and after it hold the event state."""
    progress: bool
    """show the solve's progress, as in :func:`solve` (default ``False``)."""


def tableau_of(method: str | Tableau | None) -> Tableau:
    """The tableau of ``method=`` (``None``: ``"dopri5"``)."""
    return method if isinstance(method, Tableau) else registry.get_tableau("dopri5" if method is None else method)


def gradient_mode_of(arguments: SolveArguments) -> GradientMode:
    """The mode of ``gradient=``, with the ``checkpoints=`` and ``adjoint_*`` settings given beside it."""
    gradient = arguments["gradient"]
    mode = _with_adjoint_settings(gradient, arguments["adjoint_rtol"], arguments["adjoint_atol"],
                                  arguments["adjoint_options"])
    checkpoints = arguments["checkpoints"]
    if isinstance(mode, AutoGradient) and checkpoints is not None and not isinstance(gradient, GradientMode):
        # A checkpoint policy is the symplectic mode's; "auto" by name gives way to it.
        return Symplectic(checkpoints=checkpoints)
    return with_checkpoints(mode, checkpoints, isinstance(gradient, GradientMode))


def _with_adjoint_settings(gradient: Any, rtol: Any, atol: Any, options: Any) -> GradientMode:
    """The mode of ``gradient``, with the backward solve's ``adjoint_*`` settings where given."""
    mode = as_gradient_mode(gradient)
    given = [name for name, value in (("adjoint_rtol", rtol), ("adjoint_atol", atol),
                                      ("adjoint_options", options)) if value is not None]
    if not given:
        return mode
    if not isinstance(mode, ContinuousAdjoint):
        raise InvalidArgumentError(
            f"{', '.join(given)} apply to gradient='adjoint' only, not gradient={mode.name!r}"
        )
    if isinstance(gradient, GradientMode):
        raise InvalidArgumentError(f"{', '.join(given)}: set them on the ContinuousAdjoint object instead")
    return ContinuousAdjoint(rtol=rtol, atol=atol, options=options)


def arrays_in(y0: Any) -> list[Any]:
    """The arrays of a state, enough to choose its backend (which then splits it properly)."""
    if isinstance(y0, (tuple, list)):
        return [a for item in y0 for a in arrays_in(item)]
    if isinstance(y0, Mapping):
        return [a for item in y0.values() for a in arrays_in(item)]
    return [y0]


def output_times(backend: Backend, xp: Any, t: Any, y0: Any) -> Any:
    """``t`` as the backend's 1-D array of real times on the device of ``y0``, checked."""
    if _is_complex_times(t):
        raise InvalidArgumentError(
            "t holds complex numbers; times are real (a complex state is integrated along real time): "
            "pass real times, e.g. t.real"
        )
    if is_array(t) and backend.handles(t):
        # A traced array (under jit) has no device yet: None, not a mismatch.
        t_device, y_device = device_of(t), device_of(y0)
        if t_device is not None and y_device is not None and t_device != y_device:
            raise InvalidArgumentError(f"t is on device {t_device} but y0 is on {y_device}; put them on one device")
    try:
        ts = backend.as_times(t, y0)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"t must be a 1-D sequence of numbers: {exc}") from None
    if ts.ndim != 1 or ts.shape[0] < 1:
        raise InvalidArgumentError(f"t must be 1-D with at least one time (the start), got shape {tuple(ts.shape)}")
    steps = ts[1:] - ts[:-1]
    backend.check(xp.all(xp.isfinite(ts)), lambda: InvalidArgumentError("t contains NaN or infinity"))
    backend.check(xp.all(steps > 0) | xp.all(steps < 0), _unordered_times, ts)
    return ts


def check_tolerance(backend: Backend, xp: Any, name: str, value: Any) -> None:
    """Refuse a tolerance that is not positive and finite (an array's at run time)."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if not (math.isfinite(value) and value > 0):
            raise InvalidArgumentError(f"{name} must be a positive finite number, got {value!r}")
    elif is_array(value) and backend.handles(value):
        # An array (or a traced value under jit): checked element-wise, at run time if need be.
        backend.check(xp.all(xp.isfinite(value) & (value > 0)),
                      lambda value: InvalidArgumentError(f"{name} must be positive and finite, got {value}"), value)
    else:
        raise InvalidArgumentError(
            f"{name} must be a positive finite number (or an array of them), got {type(value).__name__} {value!r}"
        )


def check_resolution(xp: Any, rtol: Any, dtype: Any, stacklevel: int) -> None:
    """Refuse an ``rtol`` below a half-precision state's unit roundoff (the controller would
    chase the rounding of each step); warn for float32/float64, where steps still converge but
    cost more for no accuracy (the warning names the caller ``stacklevel`` frames up).
    Traced tolerances are not checked."""
    if not isinstance(rtol, numbers.Real):
        return
    info = xp.finfo(real_dtype(xp, dtype))
    roundoff = float(info.eps) / 2
    if rtol >= roundoff:
        return
    name = str(dtype).rsplit(".", 1)[-1]  # "float16" from a library's "lib.float16" too
    message = (f"rtol={rtol:g} is below the resolution of {name} states (unit roundoff {roundoff:.3g}): "
               f"no {name} solution is that accurate")
    if info.bits < 32:
        typical = "1e-3" if info.eps < 1e-3 else "1e-2"
        raise InvalidArgumentError(
            f"{message}, and the step-size controller would chase rounding errors. Pass rtol of at least "
            f"{roundoff:.2g} (e.g. rtol={typical} with atol near it), or keep the state in float32 and let "
            f"func compute in low precision (torch.autocast around the solve does that)"
        )
    warnings.warn(f"{message}; steps shrink for no gain. Pass rtol >= {roundoff:.2g} or a wider dtype",
                  SymadjWarning, stacklevel=stacklevel)


def check_events_supported(tableau: Tableau, options: SolverOptions) -> None:
    """Refuse ``event=`` where outputs are not interpolated on a continuous extension."""
    if tableau.dense is None:
        with_dense = ", ".join(registry.tableaux_with_dense_output())
        raise InvalidArgumentError(
            f"event= locates crossings on the method's continuous extension, which method={tableau.name!r} "
            f"does not declare (no [dense] section); use one that does: {with_dense}"
        )
    if not interpolates(tableau, options):
        why = ("options['land_on_outputs'] is set" if options.land_on_outputs
               else f"method={tableau.name!r} has no error estimate and no options['step_size']")
        raise InvalidArgumentError(
            f"event= needs outputs interpolated inside steps, but {why}; drop land_on_outputs, or give "
            f"options['step_size'] for a fixed-step method"
        )


def failure(stats: Stats, ts: Any, options: SolverOptions) -> Exception:
    """The error of a failed solve, from run-time values of ``stats`` and ``ts``."""
    status = Status(int(stats.status))
    reached = float(stats.t_final)
    target = float(ts[int(stats.n_outputs)]) if int(stats.n_outputs) < ts.shape[0] else reached
    if status is Status.MAX_STEPS:
        return MaxStepsError(
            f"max_steps={options.max_steps} step attempts were not enough: stopped at "
            f"t={reached:.6g} before t={target:.6g}; raise options['max_steps'], loosen rtol/atol, "
            f"or pass throw=False for the partial solution"
        )
    if status is Status.STEP_UNDERFLOW:
        return StepSizeUnderflowError(
            f"the step size fell below min_step={options.min_step} (or below the time "
            f"resolution) at t={reached:.6g}: the problem may be stiff or singular there; loosen "
            f"rtol/atol, lower options['min_step'], or use throw=False"
        )
    return NonFiniteError(
        f"the state became NaN or infinite in the step from t={reached:.6g} "
        f"(after {int(stats.n_accepted)} accepted steps): check func for overflow or division by zero"
    )


def _unordered_times(ts: Any) -> InvalidArgumentError:
    """The error for output times that are repeated or out of order, naming the first offender."""
    values = [float(v) for v in ts]
    for k in range(1, len(values)):
        if values[k] == values[k - 1]:
            return InvalidArgumentError(
                f"t is duplicated: t[{k - 1}] = t[{k}] = {values[k]:.17g}; output times must be strictly "
                f"increasing or strictly decreasing, each time once. Drop the repeat (e.g. torch.unique(t) or "
                f"np.unique(t) on sorted times) and index the solution twice if you need the state there twice"
            )
    forward = values[-1] > values[0]
    for k in range(1, len(values)):
        if (values[k] > values[k - 1]) != forward:
            return InvalidArgumentError(
                f"t must be strictly increasing or strictly decreasing; it goes "
                f"{'up' if forward else 'down'} from t[0] = {values[0]:.6g} to t[-1] = {values[-1]:.6g}, but "
                f"t[{k}] = {values[k]:.6g} follows t[{k - 1}] = {values[k - 1]:.6g}: sort it"
            )
    return InvalidArgumentError("t must be strictly increasing or strictly decreasing")


def _is_complex_times(t: Any) -> bool:
    if is_array(t):
        return is_complex(namespace_of(t), t.dtype)
    if isinstance(t, (list, tuple)):
        return any(_is_complex_times(x) for x in t)
    return isinstance(t, numbers.Complex) and not isinstance(t, numbers.Real)
