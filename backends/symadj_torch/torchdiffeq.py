"""torchdiffeq's interface on symadj's solver (imported as ``symadj.torchdiffeq``): change the
import, keep the call.

``from symadj.torchdiffeq import odeint, odeint_adjoint, odeint_event`` takes torchdiffeq's
arguments, option names and method names with their meanings, and gives exact gradients:
``odeint`` backpropagates through the solve while its graph fits a memory budget and takes
the symplectic adjoint method past it (``gradient="auto"``, as fast as torchdiffeq's
``odeint`` on small problems), ``odeint_adjoint`` differentiates the discrete solve with the
symplectic adjoint (``gradient="symplectic"``), in the memory of torchdiffeq's adjoint. Pass
``gradient="adjoint"`` for torchdiffeq's continuous adjoint (then ``adjoint_rtol``,
``adjoint_atol``, ``adjoint_method`` and ``adjoint_options`` set its backward solve) or
``gradient="backprop"`` for autodiff through the solver. ``odeint_adjoint`` runs the
continuous adjoint by itself only for a call that brings code for its backward solve
(``_adjoint`` callbacks, a callable adjoint norm). docs/migration.md lists what differs.

Examples:
    >>> import torch
    >>> from symadj.torchdiffeq import odeint
    >>> y0 = torch.tensor([1.0], requires_grad=True)
    >>> ys = odeint(lambda t, y: -y, y0, torch.tensor([0.0, 1.0]), method="rk4",
    ...             options={"step_size": 0.1})
    >>> ys[-1].backward()
    >>> round(ys[-1].item(), 4), round(y0.grad.item(), 4)
    (0.3679, 0.3679)
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from symadj import (
    ContinuousAdjoint,
    GradientMode,
    InvalidArgumentError,
    MaxStepsError,
    NonFiniteError,
    SolverError,
    Status,
    StepSizeUnderflowError,
    SymadjWarning,
    Tableau,
    UnknownNameError,
    as_gradient_mode,
    get_tableau,
    list_tableaux,
    solve,
)

__all__ = ["odeint", "odeint_adjoint", "odeint_event"]

#: torchdiffeq's method names and the symadj tableaux with the same coefficients.
METHODS: dict[str, str] = {
    "dopri5": "dopri5",
    "dopri8": "dopri87",  # Prince–Dormand 8(7); symadj's own "dopri8" is DOP853
    "bosh3": "bosh3",
    "fehlberg2": "fehlberg2",
    "adaptive_heun": "heun_euler",
    "euler": "euler",
    "midpoint": "midpoint",
    "heun2": "heun2",
    "heun3": "heun3",
    "rk4": "rk38",  # torchdiffeq's rk4 steps with Kutta's 3/8 rule
}

_OUT_OF_SCOPE = {
    "explicit_adams": "an Adams–Bashforth multistep method",
    "implicit_adams": "an Adams–Bashforth–Moulton multistep method",
    "fixed_adams": "an Adams–Bashforth–Moulton multistep method",
    "scipy_solver": "a wrapper around SciPy's solvers",
}

_ADJOINT_CALLBACKS = ("callback_step_adjoint", "callback_accept_step_adjoint", "callback_reject_step_adjoint")

_ADAPTIVE_OPTIONS = {"min_step", "max_step", "first_step", "step_t", "jump_t", "safety", "ifactor", "dfactor",
                     "max_num_steps", "dtype", "norm"}
_FIXED_OPTIONS = {"step_size", "grid_constructor", "interp", "perturb", "dtype", "norm"}

# torchdiffeq integrates until the event, without an end time; symadj's solve needs one.
_EVENT_HORIZON = 1e300
# Step attempts an event search takes without max_num_steps: an event that never comes
# would otherwise be searched for without end (torch has no default step bound).
_EVENT_MAX_STEPS = 2**14


def odeint(func: Callable[..., Any], y0: Any, t: Any, *, rtol: Any = 1e-7, atol: Any = 1e-9,
           method: str | None = None, options: Mapping[str, Any] | None = None,
           event_fn: Callable[[Any, Any], Any] | None = None,
           gradient: str | GradientMode = "auto") -> Any:
    """torchdiffeq's ``odeint``, with exact gradients.

    Args:
        func: ``func(t, y)``; ``y`` and its return value a tensor or a tuple of tensors.
        y0: the initial state, a tensor or a tuple of tensors.
        t: output times, increasing or decreasing; ``t[0]`` is the initial time. With
            ``event_fn``, only ``t[0]`` and the direction of ``t[1]`` count.
        rtol: relative tolerance; for a tuple state, a tuple of one per tensor.
        atol: absolute tolerance; for a tuple state, a tuple of one per tensor.
        method: a torchdiffeq method name (``None``: ``"dopri5"``), or any symadj tableau name.
        options: torchdiffeq's options for the method (see docs/migration.md).
        event_fn: ``event_fn(t, y)``: integrate until it crosses zero (any entry, for a
            tensor-valued one) and return ``(event_t, solution)``.
        gradient: ``"auto"`` (exact, default: backprop's graph within a memory budget, the
            symplectic adjoint past it), ``"symplectic"``, ``"checkpoint"``, ``"backprop"`` or
            ``"adjoint"`` (torchdiffeq's continuous adjoint).

    Returns:
        The solution at ``t`` (leading axis ``len(t)``; a tuple for a tuple state); with
        ``event_fn``, ``(event_t, solution)`` where ``solution`` holds ``y0`` and the event state.

    Raises:
        UnknownNameError: an unknown method.
        InvalidArgumentError: a method out of scope (Adams, SciPy), or an invalid option or argument.
        SolverError: the solve failed (too many steps, step size underflow, NaN).
    """
    return _solve(func, y0, t, rtol, atol, method, options, event_fn, as_gradient_mode(gradient), None)


def odeint_adjoint(func: Callable[..., Any], y0: Any, t: Any, *, rtol: Any = 1e-7, atol: Any = 1e-9,
                   method: str | None = None, options: Mapping[str, Any] | None = None,
                   event_fn: Callable[[Any, Any], Any] | None = None, adjoint_rtol: Any = None,
                   adjoint_atol: Any = None, adjoint_method: str | None = None,
                   adjoint_options: Mapping[str, Any] | None = None, adjoint_params: Sequence[Any] | None = None,
                   gradient: str | GradientMode | None = None) -> Any:
    """torchdiffeq's ``odeint_adjoint``: exact gradients by default, in O(|y|) extra memory per step.

    The continuous adjoint runs instead when the call brings code that only a backward solve
    calls (``func.callback_*_adjoint`` or a callable ``adjoint_options["norm"]``), so that code
    runs as in torchdiffeq; a :class:`SymadjWarning` says so.

    Args:
        func: as in :func:`odeint`.
        y0: as in :func:`odeint`.
        t: as in :func:`odeint`.
        rtol: as in :func:`odeint`.
        atol: as in :func:`odeint`.
        method: as in :func:`odeint`.
        options: as in :func:`odeint`.
        event_fn: as in :func:`odeint`.
        adjoint_rtol: ``gradient="adjoint"`` only: the backward solve's rtol (default ``rtol``).
        adjoint_atol: ``gradient="adjoint"`` only: its atol (default ``atol``).
        adjoint_method: ``gradient="adjoint"`` only: its method (default ``method``).
        adjoint_options: ``gradient="adjoint"`` only: its options (default: ``options`` without
            ``norm``); ``norm`` may be ``"seminorm"`` or a callable receiving the tuple
            ``(t, *y, *adj_y, *adj_params)``. The exact modes have no backward solve to set.
        adjoint_params: the tensors gradients flow to (leaves or not); by default
            ``func``'s parameters and every tensor requiring grad that ``func`` uses.
        gradient: ``"symplectic"`` (exact), ``"checkpoint"``, ``"backprop"``, or ``"adjoint"``
            (torchdiffeq's continuous adjoint, not exact); by default ``"symplectic"``, or
            ``"adjoint"`` for a call with backward-solve code (above).

    Returns:
        As :func:`odeint`.

    Raises:
        As :func:`odeint`.
    """
    if gradient is None:
        gradient = _default_adjoint_gradient(func, adjoint_options)
    mode = as_gradient_mode(gradient)
    if isinstance(mode, ContinuousAdjoint) and not isinstance(gradient, GradientMode):
        mode = _continuous_adjoint(func, y0, t, method, options, adjoint_rtol, adjoint_atol, adjoint_method,
                                   adjoint_options, adjoint_params)
    elif not isinstance(mode, ContinuousAdjoint):
        unused = [name for name, value in (("adjoint_rtol", adjoint_rtol), ("adjoint_atol", adjoint_atol),
                                           ("adjoint_method", adjoint_method), ("adjoint_options", adjoint_options))
                  if value is not None]
        if unused:
            warnings.warn(f"{', '.join(unused)} set the backward solve of gradient='adjoint'; odeint_adjoint gives "
                          f"the exact gradient (gradient={mode.name!r}), which has no backward solve, so they are "
                          f"not used. Pass gradient='adjoint' for torchdiffeq's continuous adjoint", SymadjWarning,
                          stacklevel=2)
    return _solve(func, y0, t, rtol, atol, method, options, event_fn, mode, adjoint_params)


def _default_adjoint_gradient(func: Any, adjoint_options: Mapping[str, Any] | None) -> str:
    """``"symplectic"``, unless the call brings code written to run in torchdiffeq's backward
    solve: the exact modes have none, so that code would silently never run."""
    backward_code = [f"func.{name}" for name in _ADJOINT_CALLBACKS if callable(getattr(func, name, None))]
    if adjoint_options is not None and callable(adjoint_options.get("norm")):
        backward_code.append('adjoint_options["norm"]')
    if not backward_code:
        return "symplectic"
    warnings.warn(f"{' and '.join(backward_code)} run in the backward solve of torchdiffeq's continuous adjoint, so "
                  f"odeint_adjoint runs it (gradient='adjoint'); pass gradient='symplectic' for the exact gradient, "
                  f"which has no backward solve to call them", SymadjWarning, stacklevel=3)
    return "adjoint"


def odeint_event(func: Callable[..., Any], y0: Any, t0: Any, *, event_fn: Callable[[Any, Any], Any],
                 reverse_time: bool = False, odeint_interface: Callable[..., Any] | None = None,
                 **kwargs: Any) -> tuple[Any, Any]:
    """torchdiffeq's ``odeint_event``: integrate from ``t0`` until ``event_fn`` crosses zero.

    Gradients flow to the event time and the event state exactly (symadj's events), so no
    rerouting through the implicit function theorem is needed on top.

    Args:
        func: ``func(t, y)``.
        y0: the initial state.
        t0: the initial time (a 0-d or one-element tensor).
        event_fn: ``event_fn(t, y)``; the solve stops where it (any entry) crosses zero.
        reverse_time: integrate towards decreasing times.
        odeint_interface: the solver to call, :func:`odeint` (default) or :func:`odeint_adjoint`.
        kwargs: passed on to it (``rtol``, ``method``, ``options``, ...).

    Returns:
        ``(event_t, solution)``: the event time, and the states at ``t0`` and at the event.

    Raises:
        As :func:`odeint`.
    """
    start = torch.as_tensor(t0).reshape(-1)[:1]
    step = -1.0 if reverse_time else 1.0
    t = torch.cat([start, start.detach() + step])
    return (odeint_interface or odeint)(func, y0, t, event_fn=event_fn, **kwargs)


# -- translation -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _State:
    """What the translation needs to know of ``y0``."""

    shapes: tuple[torch.Size, ...]
    single: bool  # a tensor, not a tuple of them
    dtype: torch.dtype
    device: torch.device

    @classmethod
    def of(cls, y0: Any) -> _State:
        if isinstance(y0, torch.Tensor):
            return cls((y0.shape,), True, y0.dtype, y0.device)
        if isinstance(y0, tuple) and y0 and all(isinstance(y, torch.Tensor) for y in y0):
            return cls(tuple(y.shape for y in y0), False, y0[0].dtype, y0[0].device)
        raise InvalidArgumentError(f"y0 must be a tensor or a tuple of tensors, got {type(y0).__name__}")

    @property
    def size(self) -> int:
        return sum(shape.numel() for shape in self.shapes)

    def split(self, flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """A flat (concatenated) state as the tensors it was made of."""
        sizes = [shape.numel() for shape in self.shapes]
        return tuple(part.reshape(shape) for part, shape in zip(torch.split(flat, sizes), self.shapes))


def _solve(func: Callable[..., Any], y0: Any, t: Any, rtol: Any, atol: Any, method: str | None,
           options: Mapping[str, Any] | None, event_fn: Callable[..., Any] | None, mode: GradientMode,
           adjoint_params: Sequence[Any] | None) -> Any:
    state = _State.of(y0)
    tableau = _tableau(method)
    symadj_options, tableau = _translate(options, tableau, method, state, func, y0, t)
    rtol, atol = _tolerance("rtol", rtol, state), _tolerance("atol", atol, state)
    _warn_of_fixed_step_callbacks(func, tableau)
    if event_fn is None:
        return solve(func, y0, t, method=tableau, rtol=rtol, atol=atol, gradient=mode, options=symadj_options,
                      adjoint_params=adjoint_params).ys
    times = torch.as_tensor(t)
    if times.ndim != 1 or times.shape[0] != 2:
        raise InvalidArgumentError(
            f"event_fn needs t with two times, the start and one giving the direction, got shape "
            f"{tuple(times.shape)}; use odeint_event(func, y0, t0, event_fn=...) to give the start alone")
    direction = 1.0 if bool(times[1] > times[0]) else -1.0
    start = times[:1].to(torch.float64)
    horizon = torch.cat([start, start.detach() + direction * _EVENT_HORIZON])
    bounded = {"max_steps": _EVENT_MAX_STEPS, **symadj_options}
    sol = solve(func, y0, horizon, method=tableau, rtol=rtol, atol=atol, gradient=mode, options=bounded,
                adjoint_params=adjoint_params, event=_combined_event(event_fn, times[0], y0), throw=False)
    if not bool(sol.event.fired):
        raise _event_search_failure(sol, bounded["max_steps"])
    event_t = sol.event.t.to(times.dtype)
    if state.single:
        return event_t, torch.stack([y0, sol.event.y])
    return event_t, tuple(torch.stack([first, last]) for first, last in zip(y0, sol.event.y))


def _warn_of_fixed_step_callbacks(func: Any, tableau: Tableau) -> None:
    """torchdiffeq warns that its fixed-grid solvers take no accept/reject callbacks; so do we,
    saying what symadj does with them."""
    given = [name for name in ("callback_accept_step", "callback_reject_step") if hasattr(func, name)]
    if given and not tableau.adaptive:
        warnings.warn(f"method {tableau.name!r} takes fixed steps, which torchdiffeq's fixed-grid solvers do not "
                      f"report through {' or '.join(given)}; symadj calls callback_accept_step after every step "
                      f"and never callback_reject_step", stacklevel=4)


def _event_search_failure(sol: Any, max_steps: int) -> SolverError:
    """The error of an event search that ended without the event."""
    where = f"at t={float(sol.stats.t_final):.6g}, after {int(sol.stats.n_attempts)} step attempts"
    if sol.status is Status.MAX_STEPS:
        return MaxStepsError(f"event_fn did not cross zero within max_num_steps={max_steps} step attempts "
                             f"({where}); check that it changes sign along the solution, or raise "
                             f"options['max_num_steps']")
    if sol.status is Status.STEP_UNDERFLOW:
        return StepSizeUnderflowError(f"the event search's step size fell below min_step {where}; the problem may "
                                      f"be stiff or singular there")
    if sol.status is Status.NONFINITE:
        return NonFiniteError(f"the state became NaN or infinite during the event search, {where}")
    return SolverError(f"event_fn did not cross zero within {_EVENT_HORIZON:g} time units of t[0]; check that it "
                       f"changes sign along the solution")


def _tableau(method: str | None) -> Tableau:
    name = "dopri5" if method is None else method
    if name in _OUT_OF_SCOPE:
        raise InvalidArgumentError(
            f"method={name!r} ({_OUT_OF_SCOPE[name]}) is out of scope for symadj, which integrates with "
            f"explicit Runge–Kutta methods; use one of {sorted(METHODS)}")
    if name in METHODS:
        return get_tableau(METHODS[name])
    if name in list_tableaux():
        return get_tableau(name)
    raise UnknownNameError("method", name, sorted({*METHODS, *_OUT_OF_SCOPE}),
                           hint="or any symadj tableau, see symadj.list_tableaux()")


def _translate(options: Mapping[str, Any] | None, tableau: Tableau, method: str | None, state: _State,
               func: Any, y0: Any, t: Any) -> tuple[dict[str, Any], Tableau]:
    """symadj's options (and the tableau, for linear interpolation) for torchdiffeq's ``options``."""
    given = dict(options or {})
    known = _ADAPTIVE_OPTIONS if tableau.adaptive else _FIXED_OPTIONS
    ignored = sorted(set(given) - known)
    if ignored:
        # torchdiffeq warns about options its solver does not take, and goes on.
        warnings.warn(f"method={method or 'dopri5'!r} takes no option(s) {ignored}; ignored, as torchdiffeq does",
                      SymadjWarning, stacklevel=4)
    given = {key: value for key, value in given.items() if key in known}
    given.pop("dtype", None)  # the time dtype: symadj keeps times in float64 whatever it says
    if tableau.adaptive:
        return _adaptive_options(given, state), tableau
    given.pop("norm", None)  # fixed-step methods have no error norm
    return _fixed_options(given, tableau, func, y0, t)


def _adaptive_options(given: dict[str, Any], state: _State) -> dict[str, Any]:
    renamed = {"min_step": "step_floor", "max_num_steps": "max_steps"}
    result = {renamed.get(key, key): value for key, value in given.items()}
    for key in ("step_floor", "max_step", "first_step", "safety", "ifactor", "dfactor"):
        if key in result and isinstance(result[key], torch.Tensor):
            result[key] = float(result[key])
    if result.get("max_step") == float("inf"):
        del result["max_step"]
    if "max_steps" in result:
        result["max_steps"] = int(result["max_steps"])
    norm = result.get("norm")
    if not state.single:
        result["norm"] = _tuple_norm(norm if norm is not None else _mixed_norm, state)
    return result


def _fixed_options(given: dict[str, Any], tableau: Tableau, func: Any, y0: Any, t: Any
                   ) -> tuple[dict[str, Any], Tableau]:
    # torchdiffeq's perturb is symadj's: func evaluated one ulp inside each step at its ends.
    perturb = {"perturb": True} if given.get("perturb") else {}
    interp = given.get("interp", "linear")
    if interp not in ("linear", "cubic"):
        raise UnknownNameError("interp", interp, ["linear", "cubic"])
    step_size, grid_constructor = given.get("step_size"), given.get("grid_constructor")
    if step_size is not None and grid_constructor is not None:
        raise InvalidArgumentError("options['step_size'] and options['grid_constructor'] exclude each other; "
                                   "give one")
    if grid_constructor is not None:
        grid = torch.as_tensor(grid_constructor(func, y0, torch.as_tensor(t)))
        return {"step_t": grid[1:-1].detach(), **perturb}, tableau
    if step_size is None:
        return perturb, tableau
    step = float(step_size)
    # torchdiffeq interpolates linearly between fixed steps by default; "cubic" takes the
    # scheme's own continuous extension here (see docs/migration.md).
    return {"step_size": step, **perturb}, _linear(tableau) if interp == "linear" else tableau


@functools.cache
def _linear(tableau: Tableau) -> Tableau:
    """``tableau`` with the linear interpolant y0 + θ (y1 − y0): b_i(θ) = b_i θ."""
    return Tableau(f"{tableau.name}_linear", tableau.c, tableau.a, tableau.b, tableau.order,
                   description=f"{tableau.name}, outputs interpolated linearly inside steps",
                   fsal=tableau.fsal, dense=(1, [[b] for b in tableau.b]), partner=tableau.partner)


def _tolerance(name: str, value: Any, state: _State) -> Any:
    """Per-tensor tolerances of a tuple state as one flat tensor over the concatenated state."""
    if state.single or isinstance(value, (int, float)) or (
            isinstance(value, torch.Tensor) and value.ndim == 0):
        return value
    values = tuple(value)
    if len(values) != len(state.shapes):
        raise InvalidArgumentError(
            f"{name} has {len(values)} entries for a tuple state of {len(state.shapes)} tensors; give one each")
    return torch.cat([torch.as_tensor(v, dtype=state.dtype.to_real(), device=state.device).expand(shape.numel())
                      for v, shape in zip(values, state.shapes)])


def _mixed_norm(parts: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """torchdiffeq's norm of a tuple state: the largest RMS norm of its tensors (of magnitudes, if complex)."""
    return torch.stack([part.abs().pow(2).mean().sqrt() for part in parts]).max()


def _tuple_norm(norm: Any, state: _State) -> Any:
    if isinstance(norm, str):
        return norm

    def flat_norm(scaled: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(norm(state.split(scaled)))

    return flat_norm


def _combined_event(event_fn: Callable[..., Any], t0: Any, y0: Any) -> Callable[..., Any]:
    """One value for symadj's event: the entries turned positive at the start, their minimum,
    so the solve stops where the first entry crosses zero (torchdiffeq's combination)."""
    with torch.no_grad():
        first = torch.as_tensor(event_fn(torch.as_tensor(t0), y0))
    if first.is_complex():
        raise InvalidArgumentError(
            f"event_fn returned dtype {first.dtype}: an event is where a real value changes sign; return a real "
            f"one (the real or imaginary part of an entry, or |y|² − r²)")
    signs = torch.sign(first)

    def combined(t: Any, y: Any) -> Any:
        return torch.min(torch.as_tensor(event_fn(t, y)) * signs)

    return combined


def _continuous_adjoint(func: Any, y0: Any, t: Any, method: str | None, options: Mapping[str, Any] | None,
                        rtol: Any, atol: Any, adjoint_method: str | None, adjoint_options: Mapping[str, Any] | None,
                        adjoint_params: Sequence[Any] | None) -> ContinuousAdjoint:
    """torchdiffeq's backward solve settings as a symadj :class:`ContinuousAdjoint`."""
    if adjoint_options is None and options is not None:
        if adjoint_method is not None and adjoint_method != method:
            raise InvalidArgumentError("adjoint_method differs from method, so options cannot serve the backward "
                                       "solve: give adjoint_options too (as torchdiffeq asks)")
        adjoint_options = {key: value for key, value in options.items() if key != "norm"}
    backward = _tableau(adjoint_method if adjoint_method is not None else method)
    translated = None
    if adjoint_options is not None:
        state = _State.of(y0)
        norm = adjoint_options.get("norm")
        # The backward state is (y, adj_y, adj_params) flat: no tuple norm of y's tensors.
        translated, backward = _translate({k: v for k, v in adjoint_options.items() if k != "norm"}, backward,
                                          adjoint_method or method, replace(state, single=True), func, y0, t)
        if norm is not None and backward.adaptive:
            translated["norm"] = norm if isinstance(norm, str) else _adjoint_norm(norm, state, adjoint_params)
    return ContinuousAdjoint(rtol=rtol, atol=atol, options=translated, method=backward)


def _adjoint_norm(norm: Callable[[Any], Any], state: _State, adjoint_params: Sequence[Any] | None
                  ) -> Callable[[Any], Any]:
    """A norm of torchdiffeq's adjoint state ``(t, *y, *adj_y, *adj_params)`` on symadj's flat
    ``(y, adj_y, adj_params)``; without ``adjoint_params`` the parameters come as one tensor."""
    params = [p for p in adjoint_params or () if p.requires_grad]
    sizes = [p.numel() for p in params]

    def flat_norm(scaled: torch.Tensor) -> torch.Tensor:
        n = state.size
        y, adj_y, rest = scaled[:n], scaled[n:2 * n], scaled[2 * n:]
        if adjoint_params is not None and sum(sizes) == rest.numel():
            parts = [part.reshape(p.shape) for part, p in zip(torch.split(rest, sizes), params)]
        else:
            parts = [rest]
        t = torch.zeros((), dtype=scaled.dtype, device=scaled.device)  # symadj's backward solve has no time row
        return torch.as_tensor(norm((t, *state.split(y), *state.split(adj_y), *parts)))

    return flat_norm
