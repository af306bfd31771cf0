"""The methods the benchmark compares: symadj's gradient modes on each backend, and the peers.

Backends and peers come from the plugins' benchmark cases (hook ``symadj_bench_cases``).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from .. import _plugins
from ..errors import UnknownNameError
from .cases import BenchCaseInfo

SYMADJ_MODES = ("auto", "symplectic", "checkpoint", "backprop", "adjoint", "reversible")


@dataclass(frozen=True)
class Method:
    """One way of computing the gradient of a solve.

    Attributes:
        name: ``"library:mode"``, e.g. ``"symadj-<backend>:symplectic"`` or ``"<peer>:<mode>"``.
        library: ``"symadj"`` or the peer's name.
        backend: the backend whose benchmark case runs it.
        mode: the gradient mode, peer function or peer adjoint class.
        requires: modules that must be importable.
        install: the pip command that installs what is missing.
        quick: whether ``--quick`` runs it when ``--method`` does not name it.

    Examples:
        >>> Method("mypeer:odeint", "mypeer", "mylib", "odeint", ("no_such_module",), "pip install mypeer").available
        False
    """

    name: str
    library: str
    backend: str
    mode: str
    requires: tuple[str, ...]
    install: str
    quick: bool = True

    @property
    def available(self) -> bool:
        """Whether every required module can be imported (checked without importing it)."""
        return all(importlib.util.find_spec(module) is not None for module in self.requires)


def bench_cases() -> list[BenchCaseInfo]:
    """The benchmark cases the backend plugins bring, in table order (their ``order``, then backend name)."""
    return _plugins.registry.bench_cases()


def get_case(backend: str) -> BenchCaseInfo:
    """The benchmark case of ``backend``.

    Raises:
        UnknownNameError: no plugin brings a case for that backend.
    """
    cases = {case.backend: case for case in bench_cases()}
    try:
        return cases[backend]
    except KeyError:
        raise UnknownNameError("benchmark backend", backend, cases) from None


def all_methods() -> list[Method]:
    """Every method the benchmark knows, installed or not, in table order: each case's
    symadj modes, then its peers'."""
    methods = []
    for case in bench_cases():
        methods += [Method(f"symadj-{case.backend}:{mode}", "symadj", case.backend, mode, (case.library,),
                           f"pip install '{case.extra}'") for mode in SYMADJ_MODES]
        for peer in case.peers:
            methods += [Method(f"{peer.library}:{mode}", peer.library, case.backend, mode,
                               (case.library, *peer.requires), peer.install, quick=mode not in peer.slow_modes)
                        for mode in peer.modes]
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
