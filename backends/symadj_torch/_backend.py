"""PyTorch: eager loops, ``torch.autograd`` VJPs, and an ``autograd.Function`` around the solve."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import array_api_compat.torch as xp_torch
import torch

from symadj import Backend, Field, GradientNotSupportedError, InvalidArgumentError
from symadj._state import call_with_args


class TorchField(Field):
    """``func`` on flat states; ``params`` are the module's parameters or ``adjoint_params``."""

    def __init__(self, f: Callable[[Any, Any], Any], params: Sequence[torch.Tensor]) -> None:
        self._f = f
        self.params = tuple(params)

    def __call__(self, t: Any, y: Any) -> Any:
        return self._f(t, y)


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
        for p in candidates:
            if not isinstance(p, torch.Tensor):
                raise InvalidArgumentError(f"adjoint_params must hold tensors, got {type(p).__name__}")
        params = _unique([p for p in candidates if p.requires_grad])
        return TorchField(layout.wrap(xp_torch, call_with_args(func, args)), params)

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
        for total, inc in zip(totals, increments):
            total.add_(inc)
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

