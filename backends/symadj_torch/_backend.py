"""PyTorch: eager loops, ``torch.autograd`` VJPs, and an ``autograd.Function`` around the solve."""

from __future__ import annotations

import contextlib
import functools
import threading
import warnings
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import array_api_compat.torch as xp_torch
import torch
from torch.overrides import TorchFunctionMode

from symadj import GradientNotSupportedError, InvalidArgumentError, ParameterModifiedError, SymadjWarning
from symadj.backend import EagerBackend, Field, GraphMeter, StateLayout, call_with_args

from . import _torch_internals as internals


class TorchField(Field):
    """``func`` on flat states; ``params`` are what gradients flow to: ``adjoint_params``
    (``explicit``), or the module's parameters and the tensors requiring grad in ``args``;
    the exact modes and the adjoint add every other tensor func reads during the forward
    solve (see :class:`_Reads`).

    ``func`` gets ``t`` in the state's (real) dtype, as torchdiffeq gives it; the engine keeps
    times in float64 (see ``as_times``). With ``autocast`` (the ``torch.autocast`` settings
    of the solve's caller) func runs under them, in forward and backward passes alike, and
    its derivatives are cast back to the state's dtype: the solver's own arithmetic stays
    in the state's precision. ``names`` maps ``id`` of a parameter to its attribute name, for messages.
    """

    def __init__(self, func: Callable[[Any, Any], Any], layout: StateLayout, params: Sequence[torch.Tensor],
                 explicit: bool, autocast: tuple[str, torch.dtype] | None = None,
                 names: dict[int, str] | None = None) -> None:
        self._func = func
        self._layout = layout
        self.params = tuple(params)
        self.explicit = explicit
        self.names = names or {}
        self._flat = layout.wrap(xp_torch, self._call_user)
        self._autocast = autocast

    def _call_user(self, t: torch.Tensor, y: Any) -> Any:
        t = t.to(self._layout.dtype.to_real())
        reads = getattr(_SOLVING, "reads", None)
        if reads is not None:
            return reads.evaluate(self, t, y)
        return self.evaluate(t, y)

    def evaluate(self, t: torch.Tensor, y: Any) -> Any:
        """func at ``(t, y)`` (the user's state), under the caller's autocast settings."""
        if self._autocast is None:
            return self._func(t, y)
        device_type, dtype = self._autocast
        # No cast cache: it would outlive this call inside the caller's autocast region, and
        # the parameters' gradients would then be summed over evaluations in low precision.
        with torch.autocast(device_type, dtype=dtype, cache_enabled=False):
            derivative = self._func(t, y)
        return _cast_tensors(derivative, self._layout.dtype)

    def __call__(self, t: Any, y: Any) -> Any:
        return self._flat(t, y)


def _eager(method: Callable) -> Callable:
    """``method``, kept out of torch.compile's graphs.

    Dynamo cannot trace a solve: the number of steps and every accept/reject branch depend
    on the state's values, so it would recompile for each step count. The loop and the
    custom-gradient node run eagerly instead (one graph break
    each); the rest of the model still compiles, and so does a func compiled on its own.
    ``torch.compiler.disable`` imports Dynamo (seconds), so it is applied on the first call
    made while Dynamo is loaded; a program that never compiles never imports it.
    """
    disabled: list[Callable] = []

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        if not internals.dynamo_loaded():
            return method(*args, **kwargs)
        if not disabled:
            disabled.append(internals.compiler_disable(method, reason="symadj runs its ODE solve eagerly"))
        return disabled[0](*args, **kwargs)

    return call


COMPILE_WARNING = (
    "symadj.odeint under torch.compile: the ODE solve runs eagerly (a graph break), the code around it "
    "is compiled. To compile the vector field, compile func itself: odeint(torch.compile(func), ...)"
)


class TorchBackend(EagerBackend):
    """Gradient modes for ``torch.Tensor`` states, on any device."""

    name = "torch"
    # Buffers grow as steps come and "auto" checkpoints thin to a memory budget: as
    # torchdiffeq, no step bound unless asked for.
    default_max_steps = None
    conjugate_cotangents = True  # .grad of a complex tensor is dL/dx + i dL/dy

    def namespace(self) -> Any:
        return xp_torch

    def handles(self, x: Any) -> bool:
        return isinstance(x, torch.Tensor)

    def split_state(self, y0):
        leaves, split, rebuild = super().split_state(y0)
        if any(isinstance(x, torch.Tensor) and internals.is_batched(x) for x in leaves):
            raise InvalidArgumentError(
                "y0 is batched by torch.func.vmap, which cannot run a solve: its loop branches on the state's values "
                "(step acceptance, non-finite checks). Put the batch in the state instead: "
                "odeint(func, y0_batch, t) with y0_batch of shape (batch, ...) solves every sample at once "
                "(func gets the whole batch; one step size for all, the error norm over the batch)"
            )
        return leaves, split, rebuild

    def as_times(self, t: Any, like: torch.Tensor) -> torch.Tensor:
        # MPS has no float64: keep times in the state's precision there.
        dtype = torch.float32 if like.device.type == "mps" else torch.float64
        if isinstance(t, torch.Tensor):
            return t.detach().to(dtype=dtype)
        return torch.as_tensor(t, dtype=dtype, device=like.device)

    def requires_grad(self, x: Any) -> bool:
        return isinstance(x, torch.Tensor) and x.requires_grad and torch.is_grad_enabled()

    def time_inputs(self, t, ts, supported, refusal):
        if not self.requires_grad(t):
            return ts, None
        if supported:
            return ts, t
        # Whether a gradient reaches t is known only in the backward pass (loss.backward()
        # asks for it, torch.autograd.grad(loss, params) does not): the solve's times come
        # from t through a node that raises refusal() if it is ever reached; make_field
        # connects the outputs to it.
        return _RefusedGradient.apply(t, ts, refusal), None

    def stop_gradient(self, x: Any) -> Any:
        return x.detach()

    def make_field(self, func, args, y0, ts, adjoint_params, layout) -> Field:
        if adjoint_params is not None:
            candidates = list(adjoint_params)
        else:
            candidates = list(func.parameters()) if isinstance(func, torch.nn.Module) else []
            candidates += [a for a in _tensors_in(args)]
        if torch.compiler.is_compiling():
            warnings.warn(COMPILE_WARNING, SymadjWarning, stacklevel=2)
        for p in candidates:
            if not isinstance(p, torch.Tensor):
                raise InvalidArgumentError(f"adjoint_params must hold tensors, got {type(p).__name__}")
        params = _unique([p for p in candidates if p.requires_grad])
        if ts.requires_grad and torch.is_grad_enabled():
            # Times carrying time_inputs' refusal: a parameter func never sees, so that the
            # outputs of every mode lead to the refusing node (its cotangent is zero).
            params.append(ts)
        device_type = y0.device.type
        autocast = ((device_type, internals.autocast_dtype(device_type))
                    if internals.autocast_enabled(device_type) else None)
        return TorchField(call_with_args(func, args), layout, params, explicit=adjoint_params is not None,
                          autocast=autocast, names=_parameter_names(func, adjoint_params))

    @_eager
    def while_loop(self, cond, body, carry, *, max_iterations, differentiable=False):
        with _without_autocast():
            return super().while_loop(cond, body, carry, max_iterations=max_iterations,
                                      differentiable=differentiable)

    def stackable(self, like):
        return not torch.is_grad_enabled()

    def to_host(self, x):
        if x.device.type == "cpu":
            return x
        if not torch.cuda.is_available():
            return x.to("cpu")
        # Pinned memory lets the copy run asynchronously; the stream orders it before any reuse.
        host = torch.empty(x.shape, dtype=x.dtype, pin_memory=True)
        return host.copy_(x, non_blocking=True)

    def to_device(self, x, like):
        if x.device == like.device:
            return x
        return x.to(like.device, non_blocking=x.is_pinned())

    def accumulate(self, totals, increments):
        if totals:  # one fused kernel per device and dtype instead of one per parameter tensor
            internals.foreach_add_(totals, increments)
        return totals

    def vjp(self, fn, y, params, cotangent):
        known = getattr(_SOLVING, "known", None)
        with torch.enable_grad():
            y = y.detach().requires_grad_(True)
            marker = None if known is None or known.walked else internals.sequence_nr_now()
            out = fn(y, params)
            if known is not None:
                known.check(out, y, marker)
            inputs = (y, *params)
            if out.requires_grad:
                # Retained: the graph may reach into the caller's (a closure over sol = model(x),
                # differentiated with respect to model's parameters), which a later backward needs.
                grads = torch.autograd.grad(out, inputs, cotangent, allow_unused=True, retain_graph=True)
            else:
                grads = (None,) * len(inputs)
        grads = [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads)]
        return out.detach(), grads[0], grads[1:]

    def graph_meter(self):
        return _metered() if internals.saved_tensors_hooks_enabled() else None

    @_eager
    def custom_vjp(self, forward, backward, y0, params):
        """The solve as one autograd node whose inputs are ``y0``, ``params`` and every other
        tensor requiring grad that func (or an event function) reads in any evaluation of
        the forward solve: it runs first, under :class:`_Reads`, and the node is made after
        it with what was found (appended to ``params``, which the residuals hold)."""
        if internals.functorch_level() is not None:
            raise GradientNotSupportedError(
                "the symplectic, checkpoint and adjoint modes compute their gradient with torch.autograd, which "
                "torch.func transforms (grad, vjp, jacrev, hessian) cannot run inside; use loss.backward() or "
                "torch.autograd.grad for their exact gradient at low memory, or gradient='backprop', which "
                "torch.func.grad and jacrev differentiate"
            )
        params = list(params)
        # (A solve inside func's evaluation in an outer forward solve runs without gradients:
        # the outer solve's mode, still on torch's stack, sees what its func reads.)
        reads = _Reads(params, internals.sequence_nr_now()) if torch.is_grad_enabled() else None
        with _solving(reads=reads), torch.no_grad(), _without_autocast():
            # The real parameters, not detached copies: the backward VJPs differentiate
            # with respect to the very tensors func uses.
            outputs, stats, residuals = forward(y0.detach(), params)
        if reads is not None:
            params.extend(reads.new_params())
        flat, rebuild = _flattened(outputs)
        node = _Node(backward, residuals, flat, rebuild, _Known(params, reads))
        return rebuild(_Solve.apply(node, y0, *params)), stats


class _SavedBytes(GraphMeter):
    """The bytes autograd saves, each storage counted once while a tensor saved on it lives
    (the address of a storage freed with a rejected step's graph may come back); a view saved
    from inside a storage counts the whole storage again (more, never less). Each tensor goes
    on to the caller's hooks (``outer``), as if these were not there."""

    def __init__(self, outer: tuple[Callable, Callable] | None) -> None:
        self.saved = 0
        self._seen: dict[int, weakref.ref] = {}
        self._counted: list[tuple[int, int]] = []
        self._outer_pack, self.unpack = outer if outer is not None else (None, _unchanged)
        # The hook runs for every tensor saved (a small network's step saves ~100): kept short.
        self.pack = self._pack if outer is None else self._pack_on

    def _pack(self, tensor: torch.Tensor) -> Any:
        seen = self._seen.get(tensor.data_ptr())
        if seen is None or seen() is None:
            self._count(tensor)
        return tensor

    def _pack_on(self, tensor: torch.Tensor) -> Any:
        return self._outer_pack(self._pack(tensor))

    def _count(self, tensor: torch.Tensor) -> None:
        key, size = tensor.data_ptr(), tensor.untyped_storage().nbytes()
        self._seen[key] = weakref.ref(tensor)
        self._counted.append((key, size))
        self.saved += size

    def mark(self) -> int:
        return len(self._counted)

    def drop(self, mark: int) -> None:
        while len(self._counted) > mark:
            key, size = self._counted.pop()
            self._seen.pop(key, None)
            self.saved -= size


@contextlib.contextmanager
def _metered() -> Any:
    """A :class:`_SavedBytes` counting what autograd saves inside the context."""
    meter = _SavedBytes(internals.outer_saved_tensors_hooks())
    with torch.autograd.graph.saved_tensors_hooks(meter.pack, meter.unpack):
        yield meter


def _unchanged(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


def _flattened(outputs: Any) -> tuple[tuple[torch.Tensor, ...], Callable[[Sequence[Any]], Any]]:
    """The tensors of ``outputs`` (a tensor, or a tuple or NamedTuple of tensors and ``None``)
    as an ``autograd.Function`` returns them, and a function putting such tensors back in
    that structure (``None`` where it has ``None``)."""
    if isinstance(outputs, torch.Tensor):
        return (outputs,), lambda flat: flat[0]
    present = [x is not None for x in outputs]
    make = getattr(type(outputs), "_make", type(outputs))

    def rebuild(flat: Sequence[Any]) -> Any:
        tensors = iter(flat)
        return make([next(tensors) if here else None for here in present])

    return tuple(x for x in outputs if x is not None), rebuild


class _Node:
    """What the autograd node of a solve holds: the backward function and its residuals,
    the forward's outputs (flat, with the function restoring their structure), and the
    parameters as the backward pass must find them."""

    def __init__(self, backward: Callable, residuals: Any, outputs: tuple[torch.Tensor, ...],
                 rebuild: Callable[[Sequence[Any]], Any], known: _Known) -> None:
        self.backward, self.residuals, self.known = backward, residuals, known
        self.outputs, self.rebuild = outputs, rebuild


class _Solve(torch.autograd.Function):
    """The solve as one autograd node: no graph is kept between forward and backward. The
    forward solve has run already (see :meth:`TorchBackend.custom_vjp`)."""

    @staticmethod
    def forward(node, y0, *params):
        return node.outputs

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.node = inputs[0]
        inputs[0].outputs = None  # the node's output holds them now

    @staticmethod
    def backward(ctx, *outputs_cotangents):
        # Unused outputs come with zero cotangents (materialized: torch's default).
        if torch.is_grad_enabled():
            raise GradientNotSupportedError(
                "create_graph=True (higher-order gradients) needs gradient='backprop'; the "
                "symplectic, checkpoint and adjoint modes give first-order gradients"
            )
        node = ctx.node
        node.known.check_versions()
        node.known.reads.marker = internals.sequence_nr_now()
        with _solving(known=node.known, reads=node.known.reads), _without_autocast():
            y0_bar, params_bar = node.backward(node.residuals, node.rebuild(outputs_cotangents))
        return (None, y0_bar, *params_bar)


class _RefusedGradient(torch.autograd.Function):
    """``values``, computed from ``source`` for the graph's sake: raise ``refusal()`` if a
    gradient reaches ``source`` through them."""

    @staticmethod
    def forward(ctx, source, values, refusal):
        ctx.refusal = refusal
        return values.clone()

    @staticmethod
    def backward(ctx, _):
        raise ctx.refusal()


_SOLVING = threading.local()  # .reads during a forward solve, .known during its backward pass


@contextlib.contextmanager
def _solving(**state: Any) -> Any:
    """``_SOLVING`` set as ``state`` says for this thread (nested solves restore the outer one's)."""
    before = {name: getattr(_SOLVING, name, None) for name in state}
    for name, value in state.items():
        setattr(_SOLVING, name, value)
    try:
        yield
    finally:
        for name, value in before.items():
            setattr(_SOLVING, name, value)


#: Tensor uses that backprop does not differentiate through, though they return a float tensor.
_UNDIFFERENTIATED = frozenset({torch.Tensor.detach, torch.Tensor.detach_, torch.Tensor.requires_grad_,
                               torch.Tensor.data.__get__, torch.Tensor.grad.__get__})


class _Reads(TorchFunctionMode):
    """The tensors requiring grad that func and the event functions read, over every
    evaluation of a forward solve (:meth:`evaluate` runs each under this mode).

    A tensor is read when it goes into a torch operation that returns a floating-point (or
    complex) tensor and was not made during the solve: the evaluation's ``(t, y)`` (a CNF
    field marking its state ``requires_grad_()`` reads no parameter through it), leaves
    made inside it, the tensors a ``torch.func`` transform inside func wraps, and tensors
    whose graph node was made after ``marker`` (a sequence number taken as the solve, or
    its backward pass, begins: made by func's operations, or by a path the mode does not
    see, such as an ``autograd.Function`` or a transform's internals) are not read. Leaves
    and tensors computed before the solve (``z = enc(x)``, whose gradient must flow on into
    ``enc``) are read alike.
    """

    def __init__(self, params: Sequence[torch.Tensor], marker: int) -> None:
        super().__init__()
        self.params = {id(p) for p in params}
        self.marker = marker
        self.found: dict[int, torch.Tensor] = {}
        self.inside: dict[int, torch.Tensor] = {}
        self.explicit = False
        self.names: dict[int, str] = {}
        self._fields: set[int] = set()

    def evaluate(self, field: TorchField, t: torch.Tensor, y: Any) -> Any:
        if id(field) not in self._fields:
            self._fields.add(id(field))
            self.explicit |= field.explicit
            self.names.update(field.names)
        outer = self.inside
        # Held, not only their ids: an id may be reused once its tensor is gone.
        self.inside = {id(x): x for x in (t, *_tensors_in(y))}
        try:
            with self:
                return field.evaluate(t, y)
        finally:
            self.inside = outer

    def __torch_function__(self, func, types, args=(), kwargs=None):
        # Called for every torch operation func makes: kept lean. The parameters, read by
        # nearly every operation, are settled by one set lookup; the outputs of operations
        # are told apart by their graph node's age (see _read), not recorded one by one.
        out = func(*args, **kwargs) if kwargs else func(*args)
        params = self.params
        for x in args:
            if isinstance(x, torch.Tensor):
                if x.requires_grad and id(x) not in params:
                    self._read(func, x, out)
            elif isinstance(x, (list, tuple)):
                for item in x:
                    if isinstance(item, torch.Tensor) and item.requires_grad and id(item) not in params:
                        self._read(func, item, out)
        if kwargs:
            for x in _tensors_in(kwargs):
                if x.requires_grad and id(x) not in params:
                    self._read(func, x, out)
        if isinstance(out, torch.Tensor):
            if out.requires_grad and out.grad_fn is None:  # a leaf made here: requires_grad=True
                self.inside[id(out)] = out
        elif isinstance(out, (list, tuple)):
            self.inside.update((id(o), o) for o in _tensors_in(out) if o.requires_grad and o.grad_fn is None)
        return out

    def _read(self, func: Any, x: torch.Tensor, out: Any) -> None:
        node = x.grad_fn
        if node is not None and internals.sequence_nr(node) >= self.marker:
            return  # made during the solve (or its backward pass), by func or the solver
        if id(x) in self.inside or id(x) in self.found or func in _UNDIFFERENTIATED:
            return
        if internals.is_transformed(x):  # made inside func by a torch.func transform it runs
            return
        if any(o.is_floating_point() or o.is_complex() for o in _tensors_in(out)):
            self.found[id(x)] = x

    def new_params(self) -> list[torch.Tensor]:
        """The tensors read that were not among the parameters; with ``adjoint_params``, raise if any."""
        found = list(self.found.values())
        if found and self.explicit:
            raise InvalidArgumentError(
                f"func (or an event function) uses tensors that require grad but are not in adjoint_params "
                f"({', '.join(_describe(x) for x in found[:5])}); their gradients would be lost. Add them to "
                f"adjoint_params, or detach them"
            )
        return found


class _Known:
    """The parameters of a solve as its backward pass checks them: none may have changed in
    place since the forward pass (:meth:`check_versions`), and every tensor requiring grad
    that func reads must be one (:meth:`check`).

    The backward pass's evaluations run under :attr:`reads`, as the forward solve's did: a
    tensor read only there (only while gradients are recorded, or at the continuous
    adjoint's backward points) is found at once. A use torch's mode cannot see (inside a
    TorchScript function or a C++ extension) shows only in the graph: the graph of the
    backward pass's first evaluation is walked too (a walk of every one would cost as much
    as the rest of the check).
    """

    def __init__(self, params: Sequence[torch.Tensor], reads: _Reads | None) -> None:
        self.params = params
        self.versions = [internals.version(p) for p in params]
        self.explicit = reads is not None and reads.explicit  # adjoint_params given
        self.names = {} if reads is None else reads.names
        self.reads = _Reads(params, internals.sequence_nr_now())  # its marker is set anew as a backward pass begins
        self.walked = False
        self._leaves = {id(p) for p in params if p.grad_fn is None}
        self._edges = {(p.grad_fn, p.output_nr) for p in params if p.grad_fn is not None}

    def check_versions(self) -> None:
        for index, (p, before) in enumerate(zip(self.params, self.versions)):
            if internals.version(p) != before:
                raise ParameterModifiedError(
                    f"{self._name(index)}, {_describe(p)}, was changed in place between the forward pass and "
                    f"the backward pass (optimizer.step() or zero_() before loss.backward(), an in-place update "
                    f"of a buffer): its gradient would be taken at the new values. Call loss.backward() before "
                    f"changing parameters, or change them out of place"
                )

    def _name(self, index: int) -> str:
        name = self.names.get(id(self.params[index]))
        if name is None:
            return f"a tensor func reads (parameter {index} of the solve)"
        return name if name.startswith("adjoint_params[") else f"parameter {name!r}"

    def check(self, out: torch.Tensor, y: torch.Tensor, marker: int | None) -> None:
        """Raise if func read a tensor requiring grad that is not a parameter (its gradient
        would be lost): one seen by :attr:`reads`, or, with ``marker``, one that ``out``
        (made from ``y`` since ``marker``, a sequence number) depends on in the graph."""
        missing = [_describe(x) for x in self.reads.found.values()]
        if marker is not None and out.requires_grad:
            self.walked = True
            missing += _graph_inputs(out, self._leaves | {id(y)} | set(self.reads.found), self._edges, marker)
        if not missing:
            return
        fix = ("add them to adjoint_params" if self.explicit else
               "pass them in adjoint_params, e.g. adjoint_params=(*net.parameters(), z)")
        raise InvalidArgumentError(
            f"func reads tensors that require grad in the backward pass that the forward solve did not see it "
            f"read ({', '.join(missing[:5])}): a branch taken only at the backward pass's points (the adjoint's "
            f"backward solve evaluates func at other times and states), or a use torch cannot observe (TorchScript, "
            f"a C++ extension); their gradients would be lost. To send gradients to them, {fix}; or detach them"
        )


def _describe(x: torch.Tensor) -> str:
    made = "a leaf" if x.grad_fn is None else f"made by {x.grad_fn.name()}"
    return f"shape {tuple(x.shape)} ({made})"


def _parameter_names(func: Any, adjoint_params: Any) -> dict[int, str]:
    """``id`` of each parameter to its name: ``"adjoint_params[i]"`` where they are given,
    else its attribute name in the modules func is, is a bound method of, closes over or
    names as globals (``"net.weight"`` for a closure over ``net``)."""
    if adjoint_params is not None:
        return {id(p): f"adjoint_params[{i}]" for i, p in enumerate(adjoint_params)}
    owners = []
    for owner in (func, getattr(func, "__self__", None)):
        if isinstance(owner, torch.nn.Module):
            owners.append(("", owner))
    code = getattr(func, "__code__", None)
    for name, cell in zip(code.co_freevars if code else (), getattr(func, "__closure__", None) or ()):
        try:
            value = cell.cell_contents
        except ValueError:  # a cell not yet filled
            continue
        if isinstance(value, torch.nn.Module):
            owners.append((f"{name}.", value))
    module_globals = getattr(func, "__globals__", {})
    for name in code.co_names if code else ():
        if isinstance(module_globals.get(name), torch.nn.Module):
            owners.append((f"{name}.", module_globals[name]))
    return {id(p): prefix + name for prefix, owner in owners for name, p in owner.named_parameters()}


AUTOCAST_DEVICES = ("cpu", "cuda", "mps", "xpu")


@contextlib.contextmanager
def _without_autocast() -> Any:
    """torch.autocast switched off for the solver's own arithmetic (func turns it back on)."""
    with contextlib.ExitStack() as stack:
        for device_type in AUTOCAST_DEVICES:
            if internals.autocast_enabled(device_type):
                stack.enter_context(torch.autocast(device_type, enabled=False))
        yield


def _cast_tensors(tree: Any, dtype: torch.dtype) -> Any:
    """The tensors of ``tree`` (a tensor, or a tuple or list of them) in ``dtype``."""
    if isinstance(tree, torch.Tensor):
        return tree if tree.dtype == dtype else tree.to(dtype)
    if isinstance(tree, (tuple, list)):
        return type(tree)(_cast_tensors(x, dtype) for x in tree)
    return tree


def _tensors_in(args: Any) -> list[torch.Tensor]:
    if isinstance(args, torch.Tensor):
        return [args]
    if isinstance(args, (tuple, list)):
        return [t for a in args for t in _tensors_in(a)]
    if isinstance(args, dict):
        return [t for a in args.values() for t in _tensors_in(a)]
    return []


def _unique(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    seen: set[int] = set()
    return [t for t in tensors if not (id(t) in seen or seen.add(id(t)))]


def _graph_inputs(output: torch.Tensor, leaves: set[int], edges: set[tuple[Any, int]], marker: int) -> list[str]:
    """What the tensors requiring grad are that ``output`` was computed from, through the
    graph made since ``marker`` (a sequence number), other than the leaves whose ids are in
    ``leaves`` and the non-leaf tensors whose ``(grad_fn, output_nr)`` are in ``edges``.

    The walk stops at a leaf, at a node made before ``marker`` and at a known tensor.
    (Sequence numbers count per thread: a tensor made in another thread during func's call
    would be taken as made before it.) Nodes, not their ids, are held: a node's Python
    object is made on demand, and an id may be reused once it is gone.
    """
    if output.grad_fn is None:
        return [] if id(output) in leaves else [_describe(output)]
    missing, visited, expanded = [], set(), set()
    stack = [(output.grad_fn, output.output_nr)]
    while stack:
        edge = stack.pop()
        node = edge[0]
        if node is None or edge in visited:
            continue
        visited.add(edge)
        leaf = getattr(node, "variable", None)
        if leaf is not None:
            if id(leaf) not in leaves:
                missing.append(_describe(leaf))
        elif edge in edges:
            continue
        elif internals.sequence_nr(node) < marker:
            missing.append(f"made by {node.name()}")
        elif node not in expanded:
            expanded.add(node)
            stack.extend(node.next_functions)
    return missing
