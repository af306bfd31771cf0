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
    "ssprk3", "heun3", "cash_karp", "dopri5", "tsit5", "dopri8", "dopri87",
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


def torch_rotating_field(width: int = 16):
    """A float64 module field: a rotation plus a time-modulated tanh MLP (weights from
    seed 0); ``calls`` counts its evaluations."""
    import torch

    torch.manual_seed(0)

    class Field(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(3, width), torch.nn.Tanh(), torch.nn.Linear(width, 3))
            self.register_buffer("rotation", torch.tensor([[0.0, 3.0, 0.0], [-3.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
            self.calls = 0

        def forward(self, t, y):
            self.calls += 1
            return y @ self.rotation.T + self.net(y) * torch.cos(t)

    return Field().double()


def jax_rotating_problem():
    """The same kind of field for JAX, ``func(t, y, params)``, with float64 enabled:
    returns ``(func, y0, params)``."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    params = {"w1": jnp.asarray(rng.uniform(-0.5, 0.5, (16, 3))), "b1": jnp.zeros(16),
              "w2": jnp.asarray(rng.uniform(-0.5, 0.5, (3, 16)))}
    rotation = jnp.array([[0.0, 3.0, 0.0], [-3.0, 0.0, 0.0], [0.0, 0.0, 0.0]])

    def func(t, y, p):
        return y @ rotation.T + jnp.tanh(y @ p["w1"].T + p["b1"]) @ p["w2"].T * jnp.cos(t)

    return func, jnp.asarray(rng.normal(size=(4, 3))), params
