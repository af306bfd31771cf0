"""The contract between the generic engine and an array library's plugin.

The engine is written against these primitives only; a backend supplies them for
its library: loop and branch primitives, functional buffers, and what autodiff
needs (stopping gradients, vector–Jacobian products, a custom-gradient wrapper).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ._compat import device_of, is_array
from ._solution import Status
from .errors import InvalidArgumentError

Carry = Any
Params = Sequence[Any]


@dataclass(frozen=True)
class BackendInfo:
    """What a plugin declares about a backend before anything heavy is imported.

    Attributes:
        name: registry name, e.g. ``"torch"``.
        library: import name of the array library it needs.
        extra: the pip extra that installs that library, e.g. ``"symadj[torch]"``.
        array_modules: top-level module names of the array types it handles.
        load: returns the :class:`Backend`; called once, on first use.
        priority: when several backends handle a type, the highest wins.

    Examples:
        >>> import symadj
        >>> def load():  # runs on first use only: import the array library here
        ...     return symadj.get_backend("numpy")
        >>> info = symadj.BackendInfo(name="my_numpy", library="numpy", extra="symadj",
        ...                           array_modules=(), load=load)
        >>> symadj.register_backend(info, replace=True)
        >>> symadj.get_backend("my_numpy").differentiable
        False
    """

    name: str
    library: str
    extra: str
    array_modules: tuple[str, ...]
    load: Callable[[], Backend]
    priority: int = 0


class Field(abc.ABC):
    """A vector field bound to its parameters: the user's ``func`` as the engine sees it.

    ``__call__(t, y)`` evaluates dy/dt on flat states; ``params`` are the arrays that
    gradients flow to. Backends build fields in :meth:`Backend.make_field`; users never
    need to.

    Examples:
        >>> import numpy as np, symadj
        >>> class Decay(symadj.Field):
        ...     params = ()
        ...     def __call__(self, t, y):
        ...         return -y
        >>> Decay()(0.0, np.ones(2))
        array([-1., -1.])
    """

    params: tuple[Any, ...]

    @abc.abstractmethod
    def __call__(self, t: Any, y: Any) -> Any: ...

    def with_params(self, params: Params) -> Field:
        """The same field evaluated with ``params`` (backends with implicit parameters return self)."""
        return self


#: Entries of at most this many elements go into a :class:`StackedBuffer`.
STACKED_ENTRY_SIZE = 256


class ListBuffer(list):
    """A growable buffer for eagerly executing backends; ``capacity`` bounds what is stacked."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity


class StackedBuffer:
    """A growable buffer of small arrays (times, step sizes, small states) for eagerly
    executing backends: one stacked array that doubles when full, where a list would hold
    an array object per entry (about a kilobyte each in PyTorch, more than a small state)."""

    def __init__(self, xp: Any, capacity: int, like: Any) -> None:
        self.xp, self.capacity, self.count = xp, capacity, 0
        self.data = xp.zeros((min(capacity, 64), *like.shape), dtype=like.dtype, device=device_of(like))

    def write(self, index: int, value: Any) -> None:
        if index == self.data.shape[0]:
            self.data = self.xp.concat([self.data, self.xp.zeros_like(self.data)])
        self.data[index, ...] = value
        self.count = max(self.count, index + 1)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: Any) -> Any:
        return self.data[index, ...]


class Backend(abc.ABC):
    """Primitives an array library supplies to the generic engine.

    Subclass it to add an array library: implement :meth:`namespace` and
    :meth:`make_field`; an eager library inherits working loops and buffers, a tracing
    one overrides them; ``vjp`` and ``custom_vjp`` give the gradient modes. Register it
    with a :class:`BackendInfo` (see docs/plugins.md).

    Examples:
        >>> import numpy as np, symadj
        >>> backend = symadj.get_backend("numpy")
        >>> isinstance(backend, symadj.Backend), backend.handles(np.ones(1))
        (True, True)
    """

    name: str
    #: Whether gradient modes are available (``False`` for forward-only backends).
    differentiable: bool = True
    #: The largest integer a loop carry holds (``None``: unbounded Python integers).
    loop_integer_max: int | None = None
    #: Whether loops are staged into a compiled program (JAX) rather than run in Python; a
    #: staged loop that reverse mode goes through cannot hold another loop.
    staged_loops: bool = False
    #: The memory budget of ``checkpoints="auto"`` when none is given, in bytes: an upper
    #: bound on an eager backend, which allocates as steps come; allocated whole up front
    #: by a staged one, whose shapes are fixed when it compiles.
    default_checkpoint_memory: int = 1 << 30
    #: ``options["max_steps"]`` when none is given: the bound a staged backend sizes its
    #: compiled buffers by; ``None`` (no bound) suits an eager backend whose buffers grow
    #: as steps come.
    default_max_steps: int | None = 4096
    #: Whether the library's cotangent of a complex array is ∂L/∂x + i ∂L/∂y (torch's
    #: ``.grad``) rather than its conjugate (JAX's): real pairings of cotangents with
    #: tangents (time gradients, events) conjugate them first (see ``symadj/_complex.py``).
    conjugate_cotangents: bool = False

    @abc.abstractmethod
    def namespace(self) -> Any:
        """The array-API namespace of this library."""

    # -- inputs ---------------------------------------------------------------
    def handles(self, x: Any) -> bool:
        """Whether ``x`` is an array of this backend's library."""
        return False

    def split_state(self, y0: Any) -> tuple[list[Any], Callable[[Any], list[Any]], Callable[[list[Any]], Any]]:
        """The arrays of a state, a function splitting any state of that structure into its
        arrays, and one rebuilding the structure from arrays.

        Arrays and tuples/lists of arrays by default; a backend may accept its pytrees.
        """
        if isinstance(y0, (tuple, list)):
            if not y0:
                raise InvalidArgumentError("y0 is an empty sequence; give at least one array")
            kind = type(y0)
            return list(y0), _split_sequence, lambda leaves: kind(leaves)
        return [y0], lambda state: [state], lambda leaves: leaves[0]

    def as_times(self, t: Any, like: Any) -> Any:
        """Output times as a 1-D array on the device of ``like``, float64 where available."""
        xp = self.namespace()
        return xp.asarray(t, dtype=xp.float64, device=device_of(like))

    def requires_grad(self, x: Any) -> bool:
        """Whether the caller asked for a gradient of ``x`` (``t``, say) that the mode must honour."""
        return False

    def time_inputs(self, t: Any, ts: Any, supported: bool, refusal: Callable[[], Exception]) -> tuple[Any, Any]:
        """The output times for the solve, and the caller's ``t`` where a gradient with
        respect to it is wanted (else ``None``), for modes that give one.

        Raises ``refusal()`` where a gradient is wanted that the mode does not give
        (``supported`` false). A tracing backend that only learns later whether ``t`` is
        differentiated may return a differentiable copy whenever ``supported``, and
        raise ``refusal()`` as soon as the unsupported gradient is asked for.
        """
        if not self.requires_grad(t):
            return ts, None
        if not supported:
            raise refusal()
        return ts, t

    def check(self, ok: Any, error: Callable[..., Exception], *operands: Any) -> None:
        """Raise ``error(*operands)`` unless ``ok``.

        A tracing backend may defer the check to run time; it then calls ``error`` with
        the operands' run-time values, so ``error`` must read values from its arguments,
        never from arrays it closes over.
        """
        if not bool(ok):
            raise error(*operands)

    def host_callback(self, fn: Callable[..., Any], *operands: Any) -> None:
        """Call ``fn(*operands)`` for its side effect (a progress meter), in program order.

        A tracing backend calls it when the compiled program runs, with the operands'
        values; ``fn`` reads values from its arguments only.
        """
        fn(*operands)

    def check_status(self, stats: Any, error: Callable[..., Exception], *operands: Any) -> None:
        """Raise ``error(stats, *operands)`` unless the solve succeeded."""
        self.check(stats.status == int(Status.SUCCESS), error, stats, *operands)

    # -- control flow -------------------------------------------------------
    def while_loop(self, cond: Callable[[Carry], Any], body: Callable[[Carry], Carry], carry: Carry,
                   *, max_iterations: int, differentiable: bool = False) -> Carry:
        """Run ``body`` while ``cond`` holds, at most ``max_iterations`` times (eagerly, by default).

        ``differentiable`` asks for a loop that reverse-mode autodiff can go through.
        """
        while bool(cond(carry)):
            carry = body(carry)
        return carry

    def fori_loop(self, lower: int, upper: Any, body: Callable[[Any, Carry], Carry], carry: Carry) -> Carry:
        """``for i in range(lower, upper): carry = body(i, carry)``."""
        for i in range(lower, int(upper)):
            carry = body(i, carry)
        return carry

    def cond(self, pred: Any, on_true: Callable[[Carry], Carry], on_false: Callable[[Carry], Carry],
             carry: Carry) -> Carry:
        """Run one of two branches with the same carry structure."""
        return on_true(carry) if bool(pred) else on_false(carry)

    def select(self, pred: Any, on_true: Any, on_false: Any) -> Any:
        """Pick between two values of the same structure."""
        return on_true if bool(pred) else on_false

    # -- functional buffers -------------------------------------------------
    def buffer(self, capacity: int, like: Any) -> Any:
        """An empty buffer of ``capacity`` arrays shaped like ``like``."""
        if capacity > 0 and is_array(like) and math.prod(like.shape) <= STACKED_ENTRY_SIZE and self.stackable(like):
            return StackedBuffer(self.namespace(), capacity, like)
        return ListBuffer(capacity)

    def stackable(self, like: Any) -> bool:
        """Whether arrays like ``like`` may be copied into a stacked buffer (an autograd
        backend says no while it records: a copy would enter its graph)."""
        return True

    def buffer_write(self, buffer: Any, index: Any, value: Any) -> Any:
        """The buffer with ``value`` at ``index`` (``index`` <= number written so far).

        A buffer may also be an array, written in place by eager backends.
        """
        index = int(index)
        if isinstance(buffer, StackedBuffer):
            buffer.write(index, value)
            return buffer
        if not isinstance(buffer, ListBuffer):
            buffer[index] = value
            return buffer
        if index == len(buffer):
            buffer.append(value)
        else:
            buffer[index] = value
        return buffer

    def buffer_read(self, buffer: Any, index: Any) -> Any:
        return buffer[int(index)]

    def buffer_capacity(self, buffer: Any) -> int:
        """How many entries ``buffer`` was made for (a Python integer, known before the loop)."""
        return buffer.capacity if isinstance(buffer, (ListBuffer, StackedBuffer)) else int(buffer.shape[0])

    def buffer_stack(self, buffer: Any, count: Any, fill: Any) -> Any:
        """The first ``count`` entries stacked; entries past them (up to capacity) set to ``fill``."""
        xp = self.namespace()
        count = int(count)
        missing = [fill] * (buffer.capacity - count)
        if isinstance(buffer, StackedBuffer):
            filled = buffer.data[:count, ...]
            return xp.concat([filled, xp.stack(missing)]) if missing else filled
        return xp.stack(list(buffer[:count]) + missing)

    # -- checkpoint storage (see symadj/_checkpoints.py) -----------------------
    def check_host_storage(self) -> None:
        """Raise :class:`InvalidArgumentError` if states cannot be kept in host memory
        (``checkpoints="offload"``); by default arrays live in host memory already."""

    def host_buffer(self, capacity: int, like: Any) -> Any:
        """An empty buffer in host memory of ``capacity`` arrays shaped like ``like``."""
        return ListBuffer(capacity)  # holds whatever to_host gives, where buffer() allocates like `like`

    def to_host(self, x: Any) -> Any:
        """``x`` copied to host memory, asynchronously where the library can."""
        return x

    def to_device(self, x: Any, like: Any) -> Any:
        """``x`` (from :meth:`to_host`) back in the memory of ``like``, asynchronously where possible."""
        return x

    def accumulate(self, totals: list, increments: Sequence[Any]) -> list:
        """``totals + increments`` entry by entry; a backend may add in place into ``totals``,
        which the engine owns and never differentiates."""
        return [total + inc for total, inc in zip(totals, increments)]

    # -- autodiff -----------------------------------------------------------
    def stop_gradient(self, x: Any) -> Any:
        return x

    def vjp(self, fn: Callable[[Any, Params], Any], y: Any, params: Params, cotangent: Any
            ) -> tuple[Any, Any, list[Any]]:
        """``fn(y, params)`` and the cotangents of ``y`` and ``params`` for output cotangent ``cotangent``.

        Must work whatever the caller's autodiff context (gradients on or off).
        """
        raise NotImplementedError(f"backend {self.name!r} has no vector-Jacobian products")

    def custom_vjp(self, forward: Callable, backward: Callable, y0: Any, params: Params) -> tuple[Any, Any]:
        """Wrap a solve into the library's autodiff.

        ``forward(y0, params) -> (outputs, aux, residuals)`` runs without recording a
        graph; ``backward(residuals, outputs_cotangent) -> (y0_cotangent, params_cotangents)``
        runs when gradients are requested. Returns ``(outputs, aux)``.
        """
        raise NotImplementedError(f"backend {self.name!r} has no custom-gradient wrapper")

    @abc.abstractmethod
    def make_field(self, func: Callable[..., Any], args: Any, y0: Any, ts: Any, adjoint_params: Any,
                   layout: Any) -> Field:
        """Bind ``func(t, state[, args])`` into a :class:`Field` on flat states (``layout.wrap``
        does the flattening); its ``params`` are what gradients flow to."""

    def check_params_found(self, field: Field, ts: Any, y0: Any) -> Field | None:
        """Make sure ``field.params`` holds every array needing gradients that ``func`` uses.

        Modes with their own backward pass would otherwise return no gradient for them. A
        backend returns the field with the arrays it found added (the torch backend, for
        closures), raises where it cannot find them, or returns ``None`` to keep ``field``.
        """


def _split_sequence(state: Any) -> list[Any]:
    if not isinstance(state, (tuple, list)):
        raise InvalidArgumentError(
            f"func returned a {type(state).__name__} for a tuple state; return a tuple of derivatives"
        )
    return list(state)
