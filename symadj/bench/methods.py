"""The methods the benchmark compares: symadj's gradient modes on each backend, and the peers."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from ..errors import UnknownNameError

SYMADJ_MODES = ("symplectic", "checkpoint", "backprop", "adjoint")
DIFFRAX_ADJOINTS = ("RecursiveCheckpointAdjoint", "BacksolveAdjoint", "DirectAdjoint")


@dataclass(frozen=True)
class Method:
    """One way of computing the gradient of a solve.

    Attributes:
        name: ``"library:mode"``, e.g. ``"symadj-torch:symplectic"`` or ``"diffrax:DirectAdjoint"``.
        library: ``"symadj"``, ``"torchdiffeq"`` or ``"diffrax"``.
        backend: the array library it runs on, ``"torch"`` or ``"jax"``.
        mode: the gradient mode, peer function or peer adjoint class.
        requires: modules that must be importable.
        install: the pip command that installs what is missing.

    Examples:
        >>> get_method("torchdiffeq:odeint").backend
        'torch'
    """

    name: str
    library: str
    backend: str
    mode: str
    requires: tuple[str, ...]
    install: str

    @property
    def available(self) -> bool:
        """Whether every required module can be imported (checked without importing it)."""
        return all(importlib.util.find_spec(module) is not None for module in self.requires)


def all_methods() -> list[Method]:
    """Every method the benchmark knows, installed or not, in table order."""
    methods = []
    for backend in ("torch", "jax"):
        methods += [Method(f"symadj-{backend}:{mode}", "symadj", backend, mode, (backend,),
                           f"pip install 'symadj[{backend}]'") for mode in SYMADJ_MODES]
        if backend == "torch":
            methods += [Method(f"torchdiffeq:{mode}", "torchdiffeq", "torch", mode, ("torch", "torchdiffeq"),
                               "pip install torchdiffeq") for mode in ("odeint", "odeint_adjoint")]
        else:
            methods += [Method(f"diffrax:{mode}", "diffrax", "jax", mode, ("jax", "diffrax", "equinox"),
                               "pip install diffrax") for mode in DIFFRAX_ADJOINTS]
    return methods


def get_method(name: str) -> Method:
    """The method called ``name``.

    Raises:
        UnknownNameError: no such method.
    """
    methods = {method.name: method for method in all_methods()}
    try:
        return methods[name]
    except KeyError:
        raise UnknownNameError("benchmark method", name, methods) from None


def select(backends: list[str] | None = None, names: list[str] | None = None) -> list[Method]:
    """The known methods on the given backends (all by default) whose name is in ``names``
    or contains one of them (all by default).

    Raises:
        UnknownNameError: a backend, or a name that matches no method.
    """
    methods = all_methods()
    known_backends = sorted({method.backend for method in methods})
    for backend in backends or []:
        if backend not in known_backends:
            raise UnknownNameError("benchmark backend", backend, known_backends)
    for name in names or []:
        if not any(name in method.name for method in methods):
            raise UnknownNameError("benchmark method", name, [method.name for method in methods])
    return [method for method in methods
            if (not backends or method.backend in backends)
            and (not names or any(name in method.name for name in names))]
