"""Registers the PyTorch backend without importing torch."""

from __future__ import annotations

from symadj import BackendInfo, hookimpl


def _load():
    from ._backend import TorchBackend

    return TorchBackend()


@hookimpl
def symadj_register_backends() -> list[BackendInfo]:
    return [BackendInfo("torch", library="torch", extra="symadj[torch]", array_modules=("torch",), load=_load)]
