"""PyTorch: eager loops, ``torch.autograd`` VJPs, and an ``autograd.Function`` around the solve."""

from __future__ import annotations

import contextlib
import functools
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import array_api_compat.torch as xp_torch
import torch
from torch.overrides import TorchFunctionMode

from symadj import GradientNotSupportedError, InvalidArgumentError, SymadjWarning
from symadj.backend import EagerBackend, Field, StateLayout, call_with_args


class TorchField(Field):
    """``func`` on flat states; ``params`` are what gradients flow to: ``adjoint_params``
    (``explicit``), or the module's parameters and the tensors the probe finds
    (:meth:`TorchBackend.check_params_found`).

    ``func`` gets ``t`` in the state's (real) dtype, as torchdiffeq gives it; the engine keeps
    times in float64 (see ``as_times``). With ``autocast`` (the ``torch.autocast`` settings
    of the solve's caller) func runs under them, in forward and backward passes alike, and
    its derivatives are cast back to the state's dtype: the solver's own arithmetic stays
    in the state's precision.
    """

    def __init__(self, func: Callable[[Any, Any], Any], layout: StateLayout, params: Sequence[torch.Tensor],
                 explicit: bool, first: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
                 autocast: tuple[str, torch.dtype] | None = None) -> None:
        self._func = func
        self._layout = layout
        self.params = tuple(params)
        self.explicit = explicit
        self._flat = layout.wrap(xp_torch, self._call_user)
        self._first = first
        self._autocast = autocast

    def _call_user(self, t: torch.Tensor, y: Any) -> Any:
        t = t.to(self._layout.dtype.to_real())
        if self._autocast is None:
            return self._func(t, y)
        device_type, dtype = self._autocast
        # No cast cache: it would outlive this call inside the caller's autocast region, and
        # the parameters' gradients would then be summed over evaluations in low precision.
        with torch.autocast(device_type, dtype=dtype, cache_enabled=False):
            derivative = self._func(t, y)
        return _cast_tensors(derivative, self._layout.dtype)

    def __call__(self, t: Any, y: Any) -> Any:
        if self._first is not None and not torch.is_grad_enabled():
            # The solve's first evaluation (dy0, without gradients): the probe's value, so
            # that func is not called once more than the solve needs.
            t0, y0, value = self._first
            self._first = None
            if torch.equal(t, t0) and y.shape == y0.shape and torch.equal(y, y0):
                return value
        return self._flat(t, y)

    def with_more_params(self, found: Sequence[torch.Tensor]) -> TorchField:
        """This field, its gradients flowing to ``found`` as well."""
        return TorchField(self._func, self._layout, [*self.params, *found], self.explicit, self._first,
                          self._autocast)

    def with_first_value(self, t0: torch.Tensor, y0: torch.Tensor, value: torch.Tensor) -> TorchField:
        """This field, its next call without gradients at ``(t0, y0)`` answered by ``value``
        (an evaluation already made there) instead of calling func."""
        return TorchField(self._func, self._layout, self.params, self.explicit,
                          (t0.detach(), y0.detach(), value.detach()), self._autocast)


def _eager(method: Callable) -> Callable:
    """``method``, kept out of torch.compile's graphs.

    Dynamo cannot trace a solve: the number of steps and every accept/reject branch depend
    on the state's values, so it would recompile for each step count. The loop, the
    custom-gradient node and the parameter probe run eagerly instead (one graph break
    each); the rest of the model still compiles, and so does a func compiled on its own.
    ``torch.compiler.disable`` imports Dynamo (seconds), so it is applied on the first call
    made while Dynamo is loaded; a program that never compiles never imports it.
    """
    disabled: list[Callable] = []

    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        if "torch._dynamo" not in sys.modules:
            return method(*args, **kwargs)
        if not disabled:
            disabled.append(torch.compiler.disable(method, reason="symadj runs its ODE solve eagerly"))
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
        if any(isinstance(x, torch.Tensor) and torch._C._functorch.is_batchedtensor(x) for x in leaves):
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
        autocast = ((device_type, torch.get_autocast_dtype(device_type))
                    if torch.is_autocast_enabled(device_type) else None)
        return TorchField(call_with_args(func, args), layout, params, explicit=adjoint_params is not None,
                          autocast=autocast)

    @_eager
    def while_loop(self, cond, body, carry, *, max_iterations, differentiable=False):
        with _without_autocast():
            return super().while_loop(cond, body, carry, max_iterations=max_iterations,
                                      differentiable=differentiable)

    @_eager
    def check_params_found(self, field: TorchField, ts: Any, y0: Any) -> TorchField:
        """``field``, its gradients flowing also to every tensor requiring grad that func's
        output depends on; with ``adjoint_params`` given, raise if there are such tensors.

        The modes other than backprop compute parameter gradients themselves, so they must
        know every tensor func uses: one call of func gives them (its value is the solve's
        first evaluation, so a counter in func sees no extra call), as the ends of its
        graph: leaves, and tensors computed before the call (``z = enc(x)`` in a closure),
        where the walk stops so that their gradient flows on into ``enc`` through the caller's graph. A tensor listed in
        ``adjoint_params`` stops the walk as well. A tensor used only at later times
        (behind a branch on ``t``) is not seen: list it in ``adjoint_params``.
        """
        if not torch.is_grad_enabled():
            return field
        marker = _sequence_nr_now()
        # Only the graph's structure is needed, never a backward: save no activations.
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.enable_grad())
            if not _under_torch_func():  # torch.func refuses saved-tensor hooks
                stack.enter_context(torch.autograd.graph.saved_tensors_hooks(_discard, _discard))
            # Captured tensors are found from func's calls into torch; not needed when
            # adjoint_params fixes the parameters (and then no compiled func recompiles).
            recorder = None if field.explicit else stack.enter_context(_CapturedTensors(marker))
            probe = field(ts[0].detach(), y0.detach())
        captured = {} if recorder is None else recorder.tensors
        found, unresolved = _graph_inputs(probe, field.params, captured, marker)
        if field.explicit and (found or unresolved):
            described = [f"shape {tuple(x.shape)}" for x in found] + [f"made by {name}" for name in unresolved]
            raise InvalidArgumentError(
                f"func uses tensors that require grad but are not in adjoint_params ({', '.join(described[:5])}); "
                f"their gradients would be lost. Add them to adjoint_params, or detach them"
            )
        if unresolved:
            raise InvalidArgumentError(
                f"func uses a tensor computed outside it that requires grad (made by {', '.join(unresolved[:3])}), "
                f"which symadj could not find to send its gradient back; pass it explicitly, "
                f"adjoint_params=(*net.parameters(), z) for a closure over z = encoder(x), "
                f"or use gradient='backprop'"
            )
        field = field.with_more_params(found) if found else field
        return field.with_first_value(ts[0], y0, probe)

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
            torch._foreach_add_(totals, list(increments))
        return totals

    def vjp(self, fn, y, params, cotangent):
        with torch.enable_grad():
            y = y.detach().requires_grad_(True)
            out = fn(y, params)
            inputs = (y, *params)
            if out.requires_grad:
                # Retained: the graph may reach into the caller's (a closure over sol = model(x),
                # differentiated with respect to model's parameters), which a later backward needs.
                grads = torch.autograd.grad(out, inputs, cotangent, allow_unused=True, retain_graph=True)
            else:
                grads = (None,) * len(inputs)
        grads = [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads)]
        return out.detach(), grads[0], grads[1:]

    @_eager
    def custom_vjp(self, forward, backward, y0, params):
        if _under_torch_func():
            raise GradientNotSupportedError(
                "the symplectic, checkpoint and adjoint modes compute their gradient with torch.autograd, which "
                "torch.func transforms (grad, vjp, jacrev, hessian) cannot run inside; use loss.backward() or "
                "torch.autograd.grad for their exact gradient at low memory, or gradient='backprop', which "
                "torch.func.grad and jacrev differentiate"
            )
        aux = _Aux()
        outputs = _Solve.apply(forward, backward, aux, y0, *params)
        return outputs, aux.stats


class _Aux:
    """What the forward pass hands out besides its outputs: an object, not a list, which
    torch.func would take apart as a pytree."""

    stats: Any = None
    residuals: Any = None


class _Solve(torch.autograd.Function):
    """The solve as one autograd node: no graph is kept between forward and backward.

    Written with ``setup_context`` so that ``torch.func.grad``/``vjp`` can run it."""

    @staticmethod
    def forward(forward, backward, aux, y0, *params):
        with torch.no_grad(), _without_autocast():
            # The real parameters, not detached copies: the backward VJPs differentiate
            # with respect to the very tensors func uses.
            outputs, stats, residuals = forward(y0.detach(), list(params))
        aux.stats, aux.residuals = stats, residuals
        return outputs

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, backward, aux, *_ = inputs
        ctx.residuals = aux.residuals
        ctx.backward_fn = backward

    @staticmethod
    def backward(ctx, outputs_cotangent):
        if torch.is_grad_enabled():
            raise GradientNotSupportedError(
                "create_graph=True (higher-order gradients) needs gradient='backprop'; the "
                "symplectic, checkpoint and adjoint modes give first-order gradients"
            )
        with _without_autocast():
            y0_bar, params_bar = ctx.backward_fn(ctx.residuals, outputs_cotangent)
        return (None, None, None, y0_bar, *params_bar)


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


class _CapturedTensors(TorchFunctionMode):
    """Records the tensors func passes to torch that were computed before ``marker`` (a
    sequence number): a graph node does not lead back to its tensor, these do."""

    def __init__(self, marker: int) -> None:
        super().__init__()
        self.marker = marker
        self.tensors: dict[tuple[Any, int], torch.Tensor] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        for x in _tensors_in((args, kwargs)):
            node = x.grad_fn
            if node is not None and node._sequence_nr() < self.marker:
                self.tensors.setdefault((node, x.output_nr), x)
        return func(*args, **kwargs)


AUTOCAST_DEVICES = ("cpu", "cuda", "mps", "xpu")


@contextlib.contextmanager
def _without_autocast() -> Any:
    """torch.autocast switched off for the solver's own arithmetic (func turns it back on)."""
    with contextlib.ExitStack() as stack:
        for device_type in AUTOCAST_DEVICES:
            if torch.is_autocast_enabled(device_type):
                stack.enter_context(torch.autocast(device_type, enabled=False))
        yield


def _cast_tensors(tree: Any, dtype: torch.dtype) -> Any:
    """The tensors of ``tree`` (a tensor, or a tuple or list of them) in ``dtype``."""
    if isinstance(tree, torch.Tensor):
        return tree if tree.dtype == dtype else tree.to(dtype)
    if isinstance(tree, (tuple, list)):
        return type(tree)(_cast_tensors(x, dtype) for x in tree)
    return tree


def _under_torch_func() -> bool:
    """Whether a torch.func transform (grad, vjp, jacrev, vmap, ...) is running."""
    return torch._C._functorch.maybe_current_level() is not None


def _sequence_nr_now() -> int:
    """The sequence number of a graph node made now: later ones (in this thread) have larger."""
    with torch.enable_grad():
        return torch.zeros((), requires_grad=True).view(()).grad_fn._sequence_nr()


def _discard(_: Any) -> None:
    return None


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


def _graph_inputs(output: torch.Tensor, known: Sequence[torch.Tensor], captured: dict[tuple[Any, int], torch.Tensor],
                  marker: int) -> tuple[list[torch.Tensor], list[str]]:
    """The tensors requiring grad, outside ``known``, that ``output`` was computed from in
    the graph made since ``marker``: leaves, and tensors made before it (found in
    ``captured``); and the names of the nodes that made those not found there.

    The walk goes through the nodes made since ``marker`` only; it stops at a leaf, at a
    node made before, and at a tensor of ``known``, leaf or not. (Sequence numbers count
    per thread: a tensor made in another thread during func's call would be taken as made
    before it.) Nodes, not their ids, are held: a node's Python object is made on demand,
    and an id may be reused once it is gone.
    """
    if output.grad_fn is None:
        return ([output] if output.requires_grad and all(output is not p for p in known) else []), []
    known_leaves = {id(p) for p in known if p.grad_fn is None}
    known_edges = {(p.grad_fn, p.output_nr) for p in known if p.grad_fn is not None}
    captured = {**captured, (output.grad_fn, output.output_nr): output}  # func may return such a tensor as is
    found, unresolved, visited, expanded = [], [], set(), set()
    stack = [(output.grad_fn, output.output_nr)]
    while stack:
        edge = stack.pop()
        node = edge[0]
        if node is None or edge in visited:
            continue
        visited.add(edge)
        leaf = getattr(node, "variable", None)
        if leaf is not None:
            if id(leaf) not in known_leaves:
                found.append(leaf)
        elif node._sequence_nr() < marker:
            if edge in known_edges:
                continue
            if edge in captured:
                found.append(captured[edge])
            else:
                unresolved.append(node.name())
        elif node not in expanded:
            expanded.add(node)
            stack.extend(node.next_functions)
    return _unique(found), unresolved
