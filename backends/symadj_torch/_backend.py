"""PyTorch: eager loops, ``torch.autograd`` VJPs, and an ``autograd.Function`` around the solve."""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import array_api_compat.torch as xp_torch
import torch

from symadj import Backend, Field, GradientNotSupportedError, InvalidArgumentError, SymadjWarning
from symadj._state import call_with_args


class TorchField(Field):
    """``func`` on flat states; ``params`` are the module's parameters or ``adjoint_params``."""

    def __init__(self, f: Callable[[Any, Any], Any], params: Sequence[torch.Tensor]) -> None:
        self._f = f
        self.params = tuple(params)

    def __call__(self, t: Any, y: Any) -> Any:
        return self._f(t, y)


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


class TorchBackend(Backend):
    """Gradient modes for ``torch.Tensor`` states, on any device."""

    name = "torch"

    def namespace(self) -> Any:
        return xp_torch

    def handles(self, x: Any) -> bool:
        return isinstance(x, torch.Tensor)

    def as_times(self, t: Any, like: torch.Tensor) -> torch.Tensor:
        # MPS has no float64: keep times in the state's precision there.
        dtype = torch.float32 if like.device.type == "mps" else torch.float64
        if isinstance(t, torch.Tensor):
            return t.detach().to(dtype=dtype)
        return torch.as_tensor(t, dtype=dtype, device=like.device)

    def requires_grad(self, x: Any) -> bool:
        return isinstance(x, torch.Tensor) and x.requires_grad and torch.is_grad_enabled()

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
        return TorchField(layout.wrap(xp_torch, call_with_args(func, args)), params)

    @_eager
    def while_loop(self, cond, body, carry, *, max_iterations, differentiable=False):
        return super().while_loop(cond, body, carry, max_iterations=max_iterations, differentiable=differentiable)

    @_eager
    def check_params_found(self, field: Field, ts: Any, y0: Any) -> None:
        if not torch.is_grad_enabled():
            return
        # Only the graph's structure is needed, never a backward: save no activations.
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(_discard, _discard):
            probe = field(ts[0], y0.detach())
        known = {id(p) for p in field.params}
        hidden = [leaf for leaf in _graph_leaves(probe) if id(leaf) not in known]
        if hidden:
            shapes = ", ".join(str(tuple(h.shape)) for h in hidden[:5])
            raise InvalidArgumentError(
                f"func uses tensors that require grad but are not among its parameters (shapes {shapes}); "
                f"their gradients would be lost. Make func an nn.Module that owns them, or pass "
                f"adjoint_params=(...) listing every tensor to differentiate"
            )

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
                grads = torch.autograd.grad(out, inputs, cotangent, allow_unused=True)
            else:
                grads = (None,) * len(inputs)
        grads = [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads)]
        return out.detach(), grads[0], grads[1:]

    @_eager
    def custom_vjp(self, forward, backward, y0, params):
        aux: list[Any] = []
        outputs = _Solve.apply(forward, backward, aux, y0, *params)
        return outputs, aux[0]


class _Solve(torch.autograd.Function):
    """The solve as one autograd node: no graph is kept between forward and backward."""

    @staticmethod
    def forward(ctx, forward, backward, aux, y0, *params):
        with torch.no_grad():
            # The real parameters, not detached copies: the backward VJPs differentiate
            # with respect to the very tensors func uses.
            outputs, stats, residuals = forward(y0.detach(), list(params))
        aux.append(stats)
        ctx.residuals = residuals
        ctx.backward_fn = backward
        return outputs

    @staticmethod
    def backward(ctx, outputs_cotangent):
        if torch.is_grad_enabled():
            raise GradientNotSupportedError(
                "create_graph=True (higher-order gradients) needs gradient='backprop'; the "
                "symplectic, checkpoint and adjoint modes give first-order gradients"
            )
        y0_bar, params_bar = ctx.backward_fn(ctx.residuals, outputs_cotangent)
        return (None, None, None, y0_bar, *params_bar)


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


def _graph_leaves(output: torch.Tensor) -> list[torch.Tensor]:
    """Leaf tensors requiring grad that ``output`` was computed from."""
    if output.grad_fn is None:
        return [output] if output.requires_grad else []
    leaves, seen, stack = [], set(), [output.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)
        if variable is not None:
            leaves.append(variable)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return leaves

