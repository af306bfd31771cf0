"""The exceptions symadj raises, all rooted at :class:`SymadjError`."""

from __future__ import annotations

from collections.abc import Iterable


class SymadjError(Exception):
    """Base class of every error symadj raises.

    Each subclass also derives from the built-in exception it refines (``ValueError``,
    ``ImportError``, ``RuntimeError``, ...), and its message names the argument, the value
    and the fix.

    Examples:
        >>> import numpy as np, symadj
        >>> try:
        ...     symadj.odeint(lambda t, y: -y, np.ones(1), [0.0, 1.0], method="dopri6")
        ... except symadj.SymadjError as exc:
        ...     print(type(exc).__name__)
        UnknownNameError
    """


class SymadjWarning(UserWarning):
    """Base class of every warning symadj emits.

    Examples:
        >>> import warnings, symadj
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore", symadj.SymadjWarning)  # silence symadj's warnings here
        ...     names = symadj.list_tableaux()
        >>> issubclass(symadj.PluginLoadWarning, symadj.SymadjWarning)
        True
    """


class TableauError(SymadjError, ValueError):
    """A Butcher tableau is malformed or fails its verification.

    The message names the source (file or tableau), the field and the condition.

    Examples:
        >>> import symadj
        >>> symadj.Tableau("bad", c=["0", "1"], a=[[], ["1"]], b=["1/2", "1/3"], order=1)
        Traceback (most recent call last):
            ...
        symadj.errors.TableauError: tableau 'bad': field 'b' violates the order-1 condition ...
    """


class InvalidArgumentError(SymadjError, ValueError):
    """An argument of a public function has an invalid value.

    Examples:
        >>> import numpy as np, symadj
        >>> symadj.odeint(lambda t, y: -y, np.ones(1), [0.0, 1.0], rtol=-1.0)
        Traceback (most recent call last):
            ...
        symadj.errors.InvalidArgumentError: rtol must be a positive finite number, got -1.0
    """


class UnknownNameError(InvalidArgumentError):
    """A method, backend, option or gradient mode name is not known.

    The message lists the names that exist; so do the attributes.

    Attributes:
        kind: what was looked up: ``"method"``, ``"backend"``, ``"gradient"``, ``"option"``, ...
        name: the name that was given.
        known: the names that exist, sorted.

    Examples:
        >>> import numpy as np, symadj
        >>> try:
        ...     symadj.odeint(lambda t, y: -y, np.ones(1), [0.0, 1.0], gradient="sympletic")
        ... except symadj.UnknownNameError as exc:
        ...     print(exc.kind, exc.known)
        gradient ['adjoint', 'auto', 'backprop', 'checkpoint', 'reversible', 'symplectic']
    """

    def __init__(self, kind: str, name: object, known: Iterable[str], hint: str = "") -> None:
        self.kind = kind
        self.name = name
        self.known = sorted(known)
        listed = ", ".join(repr(k) for k in self.known) or "(none)"
        message = f"unknown {kind} {name!r}; known: {listed}"
        super().__init__(f"{message}. {hint}" if hint else message)


class DuplicateNameError(SymadjError, ValueError):
    """A tableau or backend is registered under a name that is taken.

    Examples:
        >>> import symadj
        >>> symadj.register_tableau(symadj.get_tableau("rk4"))
        Traceback (most recent call last):
            ...
        symadj.errors.DuplicateNameError: a tableau named 'rk4' is already registered; pass replace=True to replace it
    """


class BackendUnavailableError(SymadjError, ImportError):
    """A backend's array library is not installed; the message gives the pip command.

    Examples:
        >>> import symadj
        >>> symadj.register_backend(symadj.BackendInfo(
        ...     name="absent", library="no_such_library", extra="symadj[absent]",
        ...     array_modules=(), load=lambda: None), replace=True)
        >>> symadj.get_backend("absent")
        Traceback (most recent call last):
            ...
        symadj.errors.BackendUnavailableError: backend 'absent' needs no_such_library, ... pip install 'symadj[absent]'
    """


class GradientNotSupportedError(SymadjError, NotImplementedError):
    """A gradient was requested that the chosen gradient mode cannot give.

    For example a higher-order gradient from a mode other than ``"backprop"``, or per-row
    events with ``"adjoint"``. With torch a gradient refused is raised by the backward pass
    that asks for it.

    Examples:
        >>> import torch, symadj
        >>> y0 = torch.ones(1, requires_grad=True)
        >>> ys = symadj.odeint(lambda t, y: -y, y0, [0.0, 1.0], gradient="symplectic")
        >>> (grad,) = torch.autograd.grad(ys.sum(), y0, create_graph=True)
        Traceback (most recent call last):
            ...
        symadj.errors.GradientNotSupportedError: create_graph=True (higher-order gradients) needs ...
    """


class SolverError(SymadjError, RuntimeError):
    """The integration could not be completed: the base of the three ways a solve fails.

    ``symadj.solve(..., throw=False)`` returns the partial solution and its
    :class:`~symadj.Status` instead of raising.

    Examples:
        >>> import numpy as np, symadj
        >>> try:
        ...     symadj.odeint(lambda t, y: -y, np.ones(1), [0.0, 10.0], options={"max_steps": 2})
        ... except symadj.SolverError as exc:
        ...     print(type(exc).__name__)
        MaxStepsError
    """


class MaxStepsError(SolverError):
    """The solver needed more than ``options["max_steps"]`` step attempts.

    Examples:
        >>> import numpy as np, symadj
        >>> symadj.odeint(lambda t, y: -y, np.ones(1), [0.0, 10.0], options={"max_steps": 2})
        Traceback (most recent call last):
            ...
        symadj.errors.MaxStepsError: max_steps=2 step attempts were not enough: ...
    """


class StepSizeUnderflowError(SolverError):
    """The step size fell below ``min_step`` (or below what the time resolution allows).

    Examples:
        >>> import numpy as np, symadj
        >>> symadj.odeint(lambda t, y: y * y, np.ones(1), [0.0, 2.0])  # blows up at t = 1
        Traceback (most recent call last):
            ...
        symadj.errors.StepSizeUnderflowError: the step size fell below min_step=0.0 ...
    """


class NonFiniteError(SolverError, FloatingPointError):
    """The state or its derivative became NaN or infinite (or ``y0`` already was).

    Examples:
        >>> import numpy as np, symadj
        >>> symadj.odeint(lambda t, y: -y, np.array([np.nan]), [0.0, 1.0])
        Traceback (most recent call last):
            ...
        symadj.errors.NonFiniteError: y0 contains NaN or infinity at the initial time t[0]
    """


class RecomputationError(SymadjError, RuntimeError):
    """The backward pass recomputed a step differently from the forward pass.

    The exact modes (``"symplectic"``, ``"checkpoint"``) recompute each step from its
    checkpoint; a func that is not a function of ``(t, y)`` alone (dropout in training
    mode, hidden state, non-deterministic kernels) makes their gradient that of another
    solve. Raised by the backward pass; ``recomputation="warn"`` on the mode object warns
    with :class:`RecomputationWarning` instead.

    Examples:
        >>> import torch, symadj
        >>> _ = torch.manual_seed(0)
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Dropout(0.5), torch.nn.Linear(16, 2))
        >>> y0 = torch.ones(4, 2, requires_grad=True)
        >>> ys = symadj.odeint(lambda t, y: net(y), y0, torch.linspace(0.0, 1.0, 5), method="rk4",
        ...                    options={"step_size": 0.1}, gradient="symplectic")
        >>> ys.sum().backward()
        Traceback (most recent call last):
            ...
        symadj.errors.RecomputationError: gradient='symplectic': the backward pass recomputed ...
    """


class ReconstructionError(RecomputationError):
    """The reversible mode's backward pass did not reconstruct the initial state.

    ``gradient="reversible"`` reconstructs each step's state from the next one; the
    reconstructed y_0 and z_0 are compared with the true y_0. They drift apart where func is
    not a function of ``(t, y)`` alone (as for :class:`RecomputationError`), or where rounding
    errors grow through the steps (a coupling λ far below 1, a stiff field, many steps): the
    gradient would be that of another solve, or inaccurate. A :class:`RecomputationError`, so
    a handler of that catches this too; ``symadj.Reversible(reconstruction="warn")`` warns
    with :class:`ReconstructionWarning` instead.

    Examples:
        >>> import torch, symadj
        >>> calls = []
        >>> def drifting(t, y):  # hidden state: each call differs
        ...     calls.append(1)
        ...     return -y + 1e-3 * len(calls)
        >>> y0 = torch.ones(2, dtype=torch.float64, requires_grad=True)
        >>> ys = symadj.odeint(drifting, y0, [0.0, 1.0], method="rk4", gradient="reversible",
        ...                    options={"step_size": 0.1})
        >>> ys[-1].sum().backward()
        Traceback (most recent call last):
            ...
        symadj.errors.ReconstructionError: gradient='reversible': the backward pass reconstructed ...
    """


class ParameterModifiedError(SymadjError, RuntimeError):
    """A parameter of a solve was changed in place between its forward and backward pass.

    The symplectic, checkpoint and adjoint modes evaluate func again in the backward pass,
    with the parameters as they are then: after ``optimizer.step()`` (or any in-place
    update) that is another function than the one solved. The message names the tensor
    (its position in ``adjoint_params``, or its attribute name) and its shape.

    Examples:
        >>> import torch, symadj
        >>> net = torch.nn.Linear(2, 2)
        >>> ys = symadj.odeint(lambda t, y: net(y), torch.ones(1, 2), torch.linspace(0.0, 1.0, 3),
        ...                    gradient="symplectic")
        >>> with torch.no_grad():
        ...     _ = net.weight.add_(1.0)  # optimizer.step() before loss.backward()
        >>> ys.sum().backward()
        Traceback (most recent call last):
            ...
        symadj.errors.ParameterModifiedError: parameter 'net.weight', shape (2, 2) (a leaf), was changed in place ...
    """


class RecomputationWarning(SymadjWarning):
    """The backward pass recomputed a step differently from the forward pass, and the mode
    was told to warn (``recomputation="warn"``) rather than raise :class:`RecomputationError`.

    Examples:
        >>> import symadj
        >>> symadj.Symplectic(recomputation="warn")
        Symplectic(recomputation='warn')
    """


class ReconstructionWarning(RecomputationWarning):
    """The reversible mode's backward pass did not reconstruct the initial state, and the mode
    was told to warn (``reconstruction="warn"``) rather than raise :class:`ReconstructionError`.

    Examples:
        >>> import symadj
        >>> symadj.Reversible(reconstruction="warn")
        Reversible(reconstruction='warn')
    """


class PluginLoadWarning(SymadjWarning):
    """A plugin failed to load; the others were loaded.

    Each failure is warned once and listed by :func:`symadj.plugin_errors`.

    Examples:
        >>> import warnings, symadj
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     warnings.warn("plugin 'x' failed to load", symadj.PluginLoadWarning)
        >>> caught[0].category.__name__
        'PluginLoadWarning'
    """
