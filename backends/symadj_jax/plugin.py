"""Registers the JAX backend without importing jax."""

from __future__ import annotations

from symadj import BackendInfo, hookimpl


def _load():
    from ._backend import JaxBackend

    return JaxBackend()


@hookimpl
def symadj_register_backends() -> list[BackendInfo]:
    return [BackendInfo("jax", library="jax", extra="symadj[jax]", array_modules=("jax", "jaxlib"), load=_load)]
