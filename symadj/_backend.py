"""The contract between the generic engine and an array library's plugin.

The engine is written against :class:`Backend` only, grouped by concern: inputs and
outputs, control flow, storage (:class:`Buffer`), autodiff. :class:`EagerBackend` fulfils
the control flow and storage for libraries that run Python as it comes; the public face
of this module, with the state layout a backend needs, is :mod:`symadj.backend`.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from ._array_api import device_of, is_array
from ._solution import Status
from ._state import StateLayout
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
        modules: the public ``symadj`` modules this plugin implements, as pairs
            (``"torchdiffeq"`` for ``symadj.torchdiffeq``, the plugin's module that holds
            its contents): ``import symadj.torchdiffeq`` imports that module then.

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
    modules: tuple[tuple[str, str], ...] = ()


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


class ForwardField(Field):
    """A field without parameters, for a forward-only backend: ``f(t, flat)`` as it is.

    Examples:
        >>> import numpy as np, symadj
        >>> field = symadj.backend.ForwardField(lambda t, y: -y)
        >>> field.params, field(0.0, np.ones(2))
        ((), array([-1., -1.]))
    """

    params = ()

    def __init__(self, f: Callable[[Any, Any], Any]) -> None:
        self._f = f

    def __call__(self, t: Any, y: Any) -> Any:
        return self._f(t, y)


class Buffer(abc.ABC):
    """Storage for up to :attr:`capacity` arrays of one shape, made by :meth:`Backend.buffer`.

    The engine keeps in buffers what a loop produces one entry at a time: output values,
    the times, step sizes and states of accepted steps (checkpoints). It touches a buffer
    through these four members only, so a buffer may hold a list (an eager library), one
    preallocated array updated functionally (a tracing library), or host memory.

    Invariants the engine keeps: ``index`` is below :attr:`capacity`; every value has the
    shape and dtype of the ``like`` the buffer was made for; on a backend whose loops run in
    Python (``staged_loops`` false), entries are written in order, each ``index`` at most
    one past the highest written so far (an earlier entry may be written again), so that
    a buffer may grow as entries come. A buffer carried through :meth:`Backend.while_loop` and its siblings is
    part of the carry: a tracing library must be able to carry it (a JAX pytree).

    Examples:
        >>> import numpy as np, symadj
        >>> buffer = symadj.get_backend("numpy").buffer(3, np.zeros(2))
        >>> isinstance(buffer, symadj.Buffer), buffer.capacity
        (True, 3)
        >>> buffer = buffer.write(0, np.ones(2)).write(1, np.full(2, 2.0))
        >>> buffer.read(1)
        array([2., 2.])
        >>> buffer.stack(2, np.zeros(2))
        array([[1., 1.],
               [2., 2.],
               [0., 0.]])
    """

    @property
    @abc.abstractmethod
    def capacity(self) -> int:
        """How many entries the buffer was made for: a Python integer, fixed when it is made
        (a tracing library sizes compiled storage by it before any loop runs)."""

    @abc.abstractmethod
    def write(self, index: Any, value: Any) -> Buffer:
        """The buffer with ``value`` as entry ``index``.

        Use the buffer returned, never the one written to: an eager buffer may write in
        place and return itself, an immutable one returns a new buffer. ``index`` may be a
        Python integer or, inside a staged loop, a traced integer array.
        """

    @abc.abstractmethod
    def read(self, index: Any) -> Any:
        """Entry ``index``: the value last written there. What an entry never written reads
        as is unspecified (a preallocated buffer gives its initial value; a list raises)."""

    @abc.abstractmethod
    def stack(self, count: Any, fill: Any = None) -> Any:
        """One array of shape ``(capacity, *entry)``: the first ``count`` entries, then
        ``fill`` (an array like an entry; not needed when ``count`` is the capacity)."""


#: Entries of at most this many elements go into a :class:`StackedBuffer`.
STACKED_ENTRY_SIZE = 256


class ListBuffer(Buffer):
    """An eager library's buffer of one array object per entry (large entries, or entries an
    autograd library records: a copy into a shared array would enter its graph).

    Examples:
        >>> import numpy as np, symadj
        >>> buffer = symadj.backend.ListBuffer(np, 4).write(0, np.ones(3))
        >>> buffer.capacity, buffer.read(0).shape
        (4, (3,))
    """

    def __init__(self, xp: Any, capacity: int) -> None:
        self.xp, self._capacity = xp, capacity
        self._entries: list[Any] = []

    @property
    def capacity(self) -> int:
        return self._capacity

    def write(self, index: Any, value: Any) -> ListBuffer:
        index = int(index)
        if index == len(self._entries):
            self._entries.append(value)
        else:
            self._entries[index] = value
        return self

    def read(self, index: Any) -> Any:
        return self._entries[int(index)]

    def stack(self, count: Any, fill: Any = None) -> Any:
        count = int(count)
        entries = self._entries[:count] + [fill] * (self._capacity - count)
        return self.xp.stack(entries)


class StackedBuffer(Buffer):
    """An eager library's buffer of small arrays (times, step sizes, small states): one
    stacked array that doubles when full, where a list would hold an array object per entry
    (about a kilobyte each in PyTorch, more than a small state).

    Examples:
        >>> import numpy as np, symadj
        >>> buffer = symadj.backend.StackedBuffer(np, 100, np.zeros(2))
        >>> buffer = buffer.write(0, np.ones(2))
        >>> buffer.capacity, buffer.stack(1, np.zeros(2)).shape
        (100, (100, 2))
    """

    def __init__(self, xp: Any, capacity: int, like: Any, data: Any = None) -> None:
        self.xp, self._capacity = xp, capacity
        if data is None:
            data = xp.zeros((min(capacity, 64), *like.shape), dtype=like.dtype, device=device_of(like))
        self.data = data

    @classmethod
    def of(cls, xp: Any, array: Any) -> StackedBuffer:
        """A buffer whose entries are the rows of ``array`` (written in place from now on)."""
        return cls(xp, array.shape[0], None, data=array)

    @property
    def capacity(self) -> int:
        return self._capacity

    def write(self, index: Any, value: Any) -> StackedBuffer:
        index = int(index)
        if index == self.data.shape[0]:
            self.data = self.xp.concat([self.data, self.xp.zeros_like(self.data)])
        self.data[index, ...] = value
        return self

    def read(self, index: Any) -> Any:
        return self.data[int(index), ...]

    def stack(self, count: Any, fill: Any = None) -> Any:
        count = int(count)
        filled = self.data[:count, ...]
        if count == self._capacity:
            return filled
        return self.xp.concat([filled, self.xp.stack([fill] * (self._capacity - count))])


class GraphMeter(abc.ABC):
    """The bytes a library's autodiff saves for its backward pass, counted while the meter is
    open (:meth:`Backend.graph_meter`): each array saved once, however many operations save it.

    Examples:
        >>> from symadj.backend import GraphMeter
        >>> class Counted(GraphMeter):
        ...     saved = 0
        ...     def mark(self): return self.saved
        ...     def drop(self, mark): self.saved = mark
        >>> meter = Counted(); meter.saved = 96; meter.drop(64); meter.saved
        64
    """

    saved: int

    @abc.abstractmethod
    def mark(self) -> Any:
        """A point in the count, for :meth:`drop`."""

    @abc.abstractmethod
    def drop(self, mark: Any) -> None:
        """Forget what was saved since ``mark`` (a graph that was let go: a rejected step's)."""


class Backend(abc.ABC):
    """The contract an array library's plugin fulfils: what the generic engine asks of it.

    Grouped by concern; *abstract* methods every backend writes, the others have defaults
    written with the array API alone (correct for any library, overridden for speed or for
    what a library can do more):

    - **inputs and outputs**: :meth:`namespace`\\*, :meth:`handles`\\*, :meth:`make_field`\\*,
      :meth:`split_state`, :meth:`as_times`, :meth:`time_inputs`, :meth:`check_params_found`, :meth:`share_params`;
    - **control flow**: :meth:`while_loop`\\*, :meth:`fori_loop`\\*, :meth:`cond`\\*,
      :meth:`select`\\*, :meth:`check`\\*, :meth:`host_callback`\\*;
    - **storage**: :meth:`buffer`\\*, :meth:`buffer_of`\\*, :meth:`host_buffer`,
      :meth:`check_host_storage`, :meth:`to_host`, :meth:`to_device`, :meth:`accumulate`;
    - **autodiff** (only where :attr:`differentiable`): :meth:`requires_grad`,
      :meth:`stop_gradient`, :meth:`vjp`, :meth:`custom_vjp`, :meth:`time_terms`,
      :meth:`deferred_time_terms`, :meth:`graph_meter`.

    An eager library (one that runs Python loops as they come: NumPy, PyTorch) subclasses
    :class:`EagerBackend`, which writes the control flow and storage for it: a forward-only
    backend is then :meth:`namespace`, :meth:`handles` and :meth:`make_field`. A tracing
    library (JAX) subclasses this class and stages them. Register a backend with a
    :class:`BackendInfo` (see docs/plugins.md, which walks through one).

    What the engine guarantees in return: it calls the array library only through
    :meth:`namespace` and these methods; it never writes into an array it did not make;
    loop bodies and branches are pure functions of their carry (no Python side effects
    but through :meth:`host_callback`), so a tracing library may run them once, to trace.

    Examples:
        >>> import numpy as np, symadj
        >>> backend = symadj.get_backend("numpy")
        >>> isinstance(backend, symadj.Backend), backend.handles(np.ones(1))
        (True, True)
    """

    name: str
    #: Whether gradient modes are available (``False`` for forward-only backends: every
    #: gradient mode then runs the plain forward solve).
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

    # -- inputs and outputs ---------------------------------------------------------
    @abc.abstractmethod
    def namespace(self) -> Any:
        """The array-API namespace of this library: all array arithmetic of the engine goes
        through it (``xp.concat``, ``xp.where``, ...), none through the library itself."""

    @abc.abstractmethod
    def handles(self, x: Any) -> bool:
        """Whether ``x`` is an array of this backend's library (how ``backend=None`` picks a
        backend from ``y0``; it must not import a library the caller has not imported)."""

    @abc.abstractmethod
    def make_field(self, func: Callable[..., Any], args: Any, y0: Any, ts: Any, adjoint_params: Any,
                   layout: StateLayout) -> Field:
        """Bind the user's ``func(t, state[, args])`` into a :class:`Field` on flat states.

        ``layout.wrap(xp, call_with_args(func, args))`` gives the flat function and checks
        what ``func`` returns; the field's ``params`` are what gradients flow to (empty for
        a forward-only backend), found in ``args`` or ``adjoint_params`` as the library's
        users expect. ``y0`` (flat) and ``ts`` are the solve's, for a backend that probes.
        """

    def split_state(self, y0: Any) -> tuple[list[Any], Callable[[Any], list[Any]], Callable[[list[Any]], Any]]:
        """The arrays of a state, a function splitting any state of that structure into its
        arrays, and one rebuilding the structure from arrays.

        Arrays and tuples/lists of arrays by default; a backend may accept its pytrees.
        The engine then steps one flat array (see :class:`StateLayout`).
        """
        if isinstance(y0, (tuple, list)):
            if not y0:
                raise InvalidArgumentError("y0 is an empty sequence; give at least one array")
            kind = type(y0)
            return list(y0), _split_sequence, lambda leaves: kind(leaves)
        return [y0], lambda state: [state], lambda leaves: leaves[0]

    def as_times(self, t: Any, like: Any) -> Any:
        """Output times as a 1-D array on the device of ``like``, float64 where available
        (the engine keeps times real and in at least the state's precision)."""
        xp = self.namespace()
        return xp.asarray(t, dtype=xp.float64, device=device_of(like))

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

    def check_params_found(self, field: Field, ts: Any, y0: Any) -> Field | None:
        """Make sure ``field.params`` holds every array needing gradients that ``func`` uses.

        Modes with their own backward pass would otherwise return no gradient for them. A
        backend returns the field with the arrays it found added, raises where it cannot
        find them, or returns ``None`` to keep ``field`` (the default: parameters come only
        from ``args``/``adjoint_params``). One call sees func at one point only: a backend
        that can observe every evaluation finds them in :meth:`custom_vjp` instead (torch).
        """

    def share_params(self, fields: Sequence[Field]) -> tuple[Field, ...]:
        """``func``'s field and the event functions' fields, taking one parameter list.

        The gradient modes bind every field of a solve with the same ``params``
        (:meth:`Field.with_params`) and add up their gradients. The default keeps the
        fields: their parameters come from ``args``/``adjoint_params`` alone, the same for
        all. A backend whose fields find parameters of their own (JAX: the traced arrays
        each function closes over) returns fields reading each its own from the joint list.
        """
        return tuple(fields)

    # -- control flow ----------------------------------------------------------------
    # Bodies and branches are pure functions of their carry, a (nested) tuple of arrays,
    # Python numbers and buffers; what they return has the carry's structure and dtypes.
    @abc.abstractmethod
    def while_loop(self, cond: Callable[[Carry], Any], body: Callable[[Carry], Carry], carry: Carry,
                   *, max_iterations: int, differentiable: bool = False) -> Carry:
        """Run ``body`` while ``cond(carry)`` holds; the engine guarantees it stops within
        ``max_iterations`` iterations (a bound a staged loop may be sized by).

        ``differentiable`` asks for a loop that the library's reverse mode can go through
        (``gradient="backprop"``); otherwise the loop is never differentiated.
        """

    @abc.abstractmethod
    def fori_loop(self, lower: int, upper: Any, body: Callable[[Any, Carry], Carry], carry: Carry) -> Carry:
        """``for i in range(lower, upper): carry = body(i, carry)``; ``upper`` may be a
        traced integer, ``lower`` is a Python integer."""

    @abc.abstractmethod
    def cond(self, pred: Any, on_true: Callable[[Carry], Carry], on_false: Callable[[Carry], Carry],
             carry: Carry) -> Carry:
        """``on_true(carry)`` if ``pred`` else ``on_false(carry)``: one branch runs (a
        scalar boolean ``pred``; both branches return the carry's structure)."""

    @abc.abstractmethod
    def select(self, pred: Any, on_true: Any, on_false: Any) -> Any:
        """``on_true`` if the scalar ``pred`` else ``on_false``, two values (Python numbers,
        arrays, tuples of them) of one structure, both already computed."""

    @abc.abstractmethod
    def check(self, ok: Any, error: Callable[..., Exception], *operands: Any) -> None:
        """Raise ``error(*operands)`` unless ``ok``.

        A tracing backend may defer the check to run time; it then calls ``error`` with
        the operands' run-time values, so ``error`` must read values from its arguments,
        never from arrays it closes over.
        """

    @abc.abstractmethod
    def host_callback(self, fn: Callable[..., Any], *operands: Any) -> None:
        """Call ``fn(*operands)`` for its side effect (a progress meter), in program order.

        A tracing backend calls it when the compiled program runs, with the operands'
        values; ``fn`` reads values from its arguments only.
        """

    def check_status(self, stats: Any, error: Callable[..., Exception], *operands: Any) -> None:
        """Raise ``error(stats, *operands)`` unless the solve succeeded (through :meth:`check`)."""
        self.check(stats.status == int(Status.SUCCESS), error, stats, *operands)

    # -- storage (see symadj/_checkpoint_policies.py) -------------------------------------
    @abc.abstractmethod
    def buffer(self, capacity: int, like: Any) -> Buffer:
        """An empty :class:`Buffer` of ``capacity`` (a Python integer) entries like ``like``
        (an array, or a Python number: an integer entry)."""

    @abc.abstractmethod
    def buffer_of(self, array: Any) -> Buffer:
        """A :class:`Buffer` whose entries are the rows of ``array`` (its capacity the length
        of the first axis): an index table a staged policy computes with the namespace."""

    def host_buffer(self, capacity: int, like: Any) -> Buffer:
        """An empty buffer in host memory for ``capacity`` values of :meth:`to_host` of
        arrays like ``like``; by default :meth:`buffer`: arrays live in host memory."""
        return self.buffer(capacity, like)

    def check_host_storage(self) -> None:
        """Raise :class:`InvalidArgumentError` if states cannot be kept in host memory
        (``checkpoints="offload"``); by default arrays live in host memory already."""

    def to_host(self, x: Any) -> Any:
        """``x`` copied to host memory, asynchronously where the library can (the identity
        by default)."""
        return x

    def to_device(self, x: Any, like: Any) -> Any:
        """``x`` (from :meth:`to_host`) back in the memory of ``like``, asynchronously where
        possible (the identity by default)."""
        return x

    def accumulate(self, totals: list, increments: Sequence[Any]) -> list:
        """``totals + increments`` entry by entry; a backend may add in place into ``totals``,
        which the engine owns and never differentiates."""
        return [total + inc for total, inc in zip(totals, increments)]

    # -- autodiff (where differentiable) ------------------------------------------------
    def requires_grad(self, x: Any) -> bool:
        """Whether the caller asked for a gradient of ``x`` (``t``, say) that the mode must
        honour (never, by default)."""
        return False

    def stop_gradient(self, x: Any) -> Any:
        """``x`` as a constant for the library's autodiff (the identity by default)."""
        return x

    def time_terms(self, rates_of: Callable[[Any], Any], fixed: Any, shift: Any) -> Any:
        """Zero-valued terms carrying the gradient with respect to the output times:
        ``rates_of(fixed) * shift`` along the first axis, where ``shift`` (times − their
        constant copy) is zero and ``rates_of`` gives f(t_k, y_k) for the outputs ``fixed``
        (constants). The rates cost a field evaluation per output, spent here, at once:
        forward-mode autodiff may go through these terms (``gradient="backprop"``).
        """
        xp = self.namespace()
        return rates_of(fixed) * xp.reshape(shift, (-1, *(1,) * (fixed.ndim - 1)))

    def deferred_time_terms(self, rates_of: Callable[[Any], Any], fixed: Any, shift: Any) -> Any:
        """:meth:`time_terms` for a solve that no forward-mode autodiff goes through: a
        backend that learns only in the backward pass whether the times are differentiated
        may evaluate the rates there, and only then (JAX does). :meth:`time_terms` by default.
        """
        return self.time_terms(rates_of, fixed, shift)

    def vjp(self, fn: Callable[[Any, Params], Any], y: Any, params: Params, cotangent: Any
            ) -> tuple[Any, Any, list[Any]]:
        """``fn(y, params)`` and the cotangents of ``y`` and ``params`` for output cotangent ``cotangent``.

        Must work whatever the caller's autodiff context (gradients on or off); a parameter
        ``fn`` does not use gets a zero cotangent, never ``None``.
        """
        raise NotImplementedError(f"backend {self.name!r} has no vector-Jacobian products")

    def graph_meter(self) -> AbstractContextManager[GraphMeter] | None:
        """A context that counts the bytes the library's autodiff saves inside it (a
        :class:`GraphMeter`), for ``gradient="auto"``; ``None`` (the default) where the
        backend cannot count them: ``"auto"`` then runs ``"symplectic"``."""
        return None

    def custom_vjp(self, forward: Callable, backward: Callable, y0: Any, params: Params) -> tuple[Any, Any]:
        """Wrap a solve into the library's autodiff.

        ``forward(y0, params) -> (outputs, aux, residuals)`` runs without recording a
        graph; ``backward(residuals, outputs_cotangent) -> (y0_cotangent, params_cotangents)``
        runs when gradients are requested. Returns ``(outputs, aux)``.

        ``outputs`` is an array or a tuple (a ``NamedTuple`` too) of arrays and ``None``:
        the engine gives the outputs, event state and event time of a solve as one
        ``NamedTuple``, the event entries ``None`` without events. ``outputs_cotangent``
        has the structure of ``outputs``: ``None`` where it holds ``None``, zeros for an
        output the caller's gradient does not reach.

        ``params`` is a list; a backend that finds, while ``forward`` runs, more arrays that
        need gradients (torch: every tensor func and the event functions read) appends them
        to the list ``forward`` was given, after it returns: the residuals hold that list,
        and ``backward`` then returns a cotangent for each of its entries, in order.
        """
        raise NotImplementedError(f"backend {self.name!r} has no custom-gradient wrapper")


class EagerBackend(Backend):
    """The contract's control flow and storage for a library that runs Python as it comes
    (NumPy, PyTorch, CuPy, array-api-strict): Python loops and branches, checks that raise
    at once, and buffers that grow as entries come (:class:`StackedBuffer` for small
    entries, :class:`ListBuffer` for the others).

    A subclass writes :meth:`namespace`, :meth:`handles` and :meth:`make_field`; for
    gradients, the autodiff group too.

    Examples:
        >>> import numpy as np, symadj
        >>> class Forward(symadj.EagerBackend):
        ...     name, differentiable = "forward_numpy", False
        ...     def namespace(self):
        ...         import array_api_compat.numpy
        ...         return array_api_compat.numpy
        ...     def handles(self, x):
        ...         return isinstance(x, np.ndarray)
        ...     def make_field(self, func, args, y0, ts, adjoint_params, layout):
        ...         return symadj.backend.ForwardField(layout.wrap(self.namespace(), func))
        >>> backend = Forward()
        >>> backend.fori_loop(0, 3, lambda i, total: total + i, 0)
        3
    """

    def while_loop(self, cond, body, carry, *, max_iterations, differentiable=False):
        while bool(cond(carry)):
            carry = body(carry)
        return carry

    def fori_loop(self, lower, upper, body, carry):
        for i in range(lower, int(upper)):
            carry = body(i, carry)
        return carry

    def cond(self, pred, on_true, on_false, carry):
        return on_true(carry) if bool(pred) else on_false(carry)

    def select(self, pred, on_true, on_false):
        return on_true if bool(pred) else on_false

    def check(self, ok, error, *operands):
        if not bool(ok):
            raise error(*operands)

    def host_callback(self, fn, *operands):
        fn(*operands)

    def buffer(self, capacity, like):
        if capacity > 0 and is_array(like) and math.prod(like.shape) <= STACKED_ENTRY_SIZE and self.stackable(like):
            return StackedBuffer(self.namespace(), capacity, like)
        return ListBuffer(self.namespace(), capacity)

    def buffer_of(self, array):
        return StackedBuffer.of(self.namespace(), array)

    def host_buffer(self, capacity, like):
        # Holds whatever to_host gives, where buffer() allocates like `like`.
        return ListBuffer(self.namespace(), capacity)

    def stackable(self, like: Any) -> bool:
        """Whether arrays like ``like`` may be copied into a :class:`StackedBuffer` (an
        autograd backend says no while it records: a copy would enter its graph)."""
        return True


def _split_sequence(state: Any) -> list[Any]:
    if not isinstance(state, (tuple, list)):
        raise InvalidArgumentError(
            f"func returned a {type(state).__name__} for a tuple state; return a tuple of derivatives"
        )
    return list(state)
