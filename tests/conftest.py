"""Shared fixtures: array namespaces and the shipped tableaux."""

from __future__ import annotations

import importlib.util
import os

import pytest
from hypothesis import HealthCheck, settings

import symadj

# Property tests: CI runs a bounded number of examples from a fixed seed (derandomize), so a
# failure reproduces; HYPOTHESIS_PROFILE=dev explores more, with fresh random examples.
settings.register_profile("ci", max_examples=25, derandomize=True, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=300, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

SHIPPED = [
    "euler", "midpoint", "heun2", "ralston2", "heun_euler", "fehlberg2", "bosh3", "rk4", "rk38",
    "ssprk3", "cash_karp", "dopri5", "tsit5", "dopri8",
]


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.fixture(params=["numpy", "array_api_strict", "torch", "jax"])
def xp_name(request: pytest.FixtureRequest) -> str:
    """Name of an array library the engine must run on (forward solves)."""
    if not _has(request.param):
        pytest.skip(f"{request.param} is not installed")
    if request.param == "jax" and "jax" not in {b.name for b in symadj.list_backends()}:
        pytest.skip("the jax backend plugin is not registered")
    return request.param


def make_array(name: str, values, dtype: str = "float64"):
    """An array of library ``name`` holding ``values``."""
    if name == "numpy":
        import numpy as np

        return np.asarray(values, dtype=dtype)
    if name == "array_api_strict":
        import array_api_strict as xs

        return xs.asarray(values, dtype=getattr(xs, dtype))
    if name == "torch":
        import torch

        return torch.as_tensor(values, dtype=getattr(torch, dtype))
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    return jnp.asarray(values, dtype=dtype)
