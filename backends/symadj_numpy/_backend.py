"""Forward solves for any array-API namespace; no gradients."""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace

from symadj.backend import EagerBackend, Field, ForwardField, call_with_args


class ArrayAPIBackend(EagerBackend):
    """Eager forward-only backend: solves work, gradient modes all run the plain forward solve."""

    differentiable = False

    def __init__(self, name: str, module: Any) -> None:
        self.name = name
        self._module = module
        self._xp = array_namespace(module.asarray(0.0))

    def namespace(self) -> Any:
        return self._xp

    def handles(self, x: Any) -> bool:
        return type(x).__module__.split(".")[0] == self._module.__name__.split(".")[0]

    def make_field(self, func, args, y0, ts, adjoint_params, layout) -> Field:
        return ForwardField(layout.wrap(self._xp, call_with_args(func, args)))
