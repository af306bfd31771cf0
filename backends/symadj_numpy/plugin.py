"""Registers the forward-only array-API backends (NumPy, array-api-strict)."""

from __future__ import annotations

from symadj import BackendInfo, hookimpl


def _numpy():
    import numpy as np

    from ._backend import ArrayAPIBackend

    return ArrayAPIBackend("numpy", np)


def _strict():
    import array_api_strict

    from ._backend import ArrayAPIBackend

    return ArrayAPIBackend("array_api_strict", array_api_strict)


@hookimpl
def symadj_register_backends() -> list[BackendInfo]:
    return [
        BackendInfo("numpy", library="numpy", extra="symadj", array_modules=("numpy",), load=_numpy),
        BackendInfo("array_api_strict", library="array_api_strict", extra="symadj[test]",
                    array_modules=("array_api_strict",), load=_strict),
    ]
