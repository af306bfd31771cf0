"""Every private or version-dependent torch API the torch backend uses, in one place.

Each entry of :data:`PRIVATE` names a private attribute, why the backend needs it and which
public API is lacking; ``tests/test_torch_internals.py`` fails loudly when one disappears from
the installed torch. The functions below are the only code of the backend that touches
them, or that depends on the torch version (the declared floor is torch 2.1).
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Sequence
from typing import Any

import torch

#: ``(owner, attribute)``: the private attributes used, with why and what public API is missing.
PRIVATE: dict[tuple[str, str], str] = {
    ("torch._C._functorch", "maybe_current_level"):
        "whether a torch.func transform is running (custom_vjp refuses to run under one, whose "
        "autograd.Function rules cannot hold the solve); torch.func has no public query",
    ("torch._C._functorch", "is_functorch_wrapped_tensor"):
        "whether a tensor is one a torch.func transform made inside func (not a tensor func read from "
        "outside it): no public predicate exists",
    ("torch._C._functorch", "is_batchedtensor"):
        "whether y0 is batched by torch.func.vmap (refused with the fix); no public predicate exists",
    ("torch", "_foreach_add_"):
        "one fused in-place add per device and dtype when summing parameter cotangents; the public "
        "torch.add is one kernel per tensor",
    ("torch.Tensor", "_version"):
        "the version counter of a tensor, bumped by every in-place change: how a parameter changed "
        "between the forward and the backward pass (optimizer.step() first) is detected; autograd "
        "checks it for saved tensors only, and exposes no public reader",
    ("torch._C._autograd", "_top_saved_tensors_default_hooks"):
        "the saved-tensor hooks a caller set (torch.autograd.graph.save_on_cpu, non-reentrant "
        "checkpointing): gradient='auto' counts the bytes autograd saves with hooks of its own, which "
        "replace the caller's unless they pass each tensor on to them; no public getter exists",
    ("torch._C._autograd", "_saved_tensors_hooks_is_enabled"):
        "whether saved-tensor hooks may be set here (a caller may disable them, and setting one then "
        "raises): gradient='auto' then runs the symplectic mode; no public query exists",
    ("torch.autograd.graph.Node", "_sequence_nr"):
        "the order in which graph nodes were made: tensors made during a solve (by an autograd.Function "
        "or a torch.func transform inside func) are told from those made before it, which func reads, "
        "and the backward pass's graph walk stops at nodes made before it; no public order exists",
}


def functorch_level() -> Any:
    """The current torch.func transform level, ``None`` outside any transform."""
    return torch._C._functorch.maybe_current_level()


def is_batched(x: torch.Tensor) -> bool:
    """Whether ``x`` is a tensor batched by ``torch.func.vmap``."""
    return torch._C._functorch.is_batchedtensor(x)


def is_transformed(x: torch.Tensor) -> bool:
    """Whether ``x`` is a tensor a ``torch.func`` transform wraps (made inside one)."""
    return torch._C._functorch.is_functorch_wrapped_tensor(x)


def foreach_add_(totals: list[torch.Tensor], increments: Sequence[torch.Tensor]) -> None:
    """``totals[i] += increments[i]`` in place, fused."""
    torch._foreach_add_(totals, list(increments))


def version(x: torch.Tensor) -> int:
    """The version counter of ``x``: it grows with every in-place change of ``x`` (or of a view of it)."""
    return x._version


def outer_saved_tensors_hooks() -> tuple[Callable, Callable] | None:
    """The saved-tensor hooks in force (a caller's), or ``None``."""
    return torch._C._autograd._top_saved_tensors_default_hooks(False)


def saved_tensors_hooks_enabled() -> bool:
    return bool(torch._C._autograd._saved_tensors_hooks_is_enabled())


def sequence_nr(node: Any) -> int:
    """The sequence number of a graph node: nodes made later (in one thread) have larger ones."""
    return node._sequence_nr()


def sequence_nr_now() -> int:
    """The sequence number a graph node made now would get."""
    with torch.enable_grad():
        return sequence_nr(torch.zeros((), requires_grad=True).view(()).grad_fn)


def _takes_reason() -> bool:
    try:
        return "reason" in inspect.signature(torch.compiler.disable).parameters
    except (TypeError, ValueError):
        return False


def dynamo_loaded() -> bool:
    """Whether torch.compile's Dynamo has been imported (it is imported on first use, and
    importing it takes seconds: a program that never compiles should not pay for it)."""
    return "torch._dynamo" in sys.modules


def compiler_disable(fn: Callable, reason: str) -> Callable:
    """``torch.compiler.disable(fn)``, with ``reason`` where torch takes one (2.8 on)."""
    if _takes_reason():
        return torch.compiler.disable(fn, reason=reason)
    return torch.compiler.disable(fn)


def autocast_enabled(device_type: str) -> bool:
    """Whether ``torch.autocast`` is on for ``device_type``; before torch 2.4,
    ``is_autocast_enabled`` took no device and meant CUDA (CPU had its own query)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:
        if device_type == "cuda":
            return torch.is_autocast_enabled()
        if device_type == "cpu":
            return torch.is_autocast_cpu_enabled()
        return False


def autocast_dtype(device_type: str) -> torch.dtype:
    """The dtype ``torch.autocast`` computes in on ``device_type`` (``get_autocast_dtype``
    arrived in torch 2.4)."""
    if hasattr(torch, "get_autocast_dtype"):
        return torch.get_autocast_dtype(device_type)
    if device_type == "cpu":
        return torch.get_autocast_cpu_dtype()
    return torch.get_autocast_gpu_dtype()
