"""The same guarantees on an accelerator: exact gradients on the device, the same numbers as
on the CPU, and ``checkpoints="offload"`` really holding the states in host memory.

CI has no GPU, so these run where one is present (the device machine): each test is
parametrised over the accelerators found, and reports itself skipped where there is none.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from conftest import jax_rotating_problem, torch_rotating_field

import symadj


def _torch_accelerators() -> list[str]:
    if importlib.util.find_spec("torch") is None:
        return []
    import torch

    return ["cuda"] if torch.cuda.is_available() else []


def _jax_accelerators() -> list[str]:
    if importlib.util.find_spec("jax") is None:
        return []
    import jax

    return [jax.default_backend()] if jax.default_backend() != "cpu" else []


def _over(devices: list[str], library: str):
    if devices:
        return pytest.mark.parametrize("device", devices)
    missing = pytest.param("none", marks=pytest.mark.skip(reason=f"no {library} accelerator on this machine"))
    return pytest.mark.parametrize("device", [missing])


ON_TORCH_ACCELERATORS = _over(_torch_accelerators(), "torch")
ON_JAX_ACCELERATORS = _over(_jax_accelerators(), "JAX")
TOL = 1e-8


def _relative_error(got, want) -> float:
    got, want = np.asarray(got), np.asarray(want)
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


# -- PyTorch -----------------------------------------------------------------------------


def _torch_field(device, width=16):
    return torch_rotating_field(width).to(device)


def _torch_gradients(func, y0, ts, **kwargs):
    y0 = y0.detach().clone().requires_grad_(True)
    func.zero_grad()
    sol = symadj.solve(func, y0, ts, rtol=TOL, atol=TOL, **kwargs)
    (sol.ys ** 2 + sol.ys).sum().backward()
    grads = [y0.grad, *(p.grad for p in func.parameters())]
    return [g.detach().cpu().numpy() for g in grads], sol.ys.detach().cpu().numpy()


@ON_TORCH_ACCELERATORS
@pytest.mark.parametrize("method", ["dopri5", "tsit5", "dopri8"])
def test_torch_exact_modes_match_backprop_on_the_device(device, method):
    import torch

    func = _torch_field(device)
    y0 = torch.randn(4, 3, dtype=torch.float64, device=device)
    ts = torch.linspace(0.0, 3.0, 4, dtype=torch.float64, device=device)
    reference, _ = _torch_gradients(func, y0, ts, method=method, gradient="backprop")
    for gradient, checkpoints in [("symplectic", None), ("symplectic", "stages"), ("symplectic", "offload"),
                                  ("symplectic", "revolve:4"), ("checkpoint", None)]:
        grads, _ = _torch_gradients(func, y0, ts, method=method, gradient=gradient, checkpoints=checkpoints)
        for got, want in zip(grads, reference):
            assert _relative_error(got, want) <= 1e-10, (gradient, checkpoints)


@ON_TORCH_ACCELERATORS
def test_torch_device_and_cpu_give_the_same_solution_and_gradient(device):
    import torch

    # Fixed steps: an adaptive controller could round one step size differently on the two.
    y0 = torch.randn(4, 3, dtype=torch.float64)
    ts = torch.linspace(0.0, 3.0, 4, dtype=torch.float64)
    results = {}
    for where in ("cpu", device):
        results[where] = _torch_gradients(_torch_field(where), y0.to(where), ts.to(where), method="rk4",
                                          options={"step_size": 0.05})
    (cpu_grads, cpu_ys), (device_grads, device_ys) = results["cpu"], results[device]
    assert _relative_error(device_ys, cpu_ys) <= 1e-10
    for got, want in zip(device_grads, cpu_grads):
        assert _relative_error(got, want) <= 1e-10


@ON_TORCH_ACCELERATORS
def test_torch_offload_holds_the_states_in_host_memory(device):
    import torch

    func = _torch_field(device, width=64)
    y0 = torch.randn(8192, 3, dtype=torch.float64, device=device)  # 192 KiB a state
    ts = torch.tensor([0.0, 3.0], dtype=torch.float64, device=device)
    state_bytes = y0.numel() * y0.element_size()

    def held_after_forward(checkpoints):
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        sol = symadj.solve(func, y0.clone().requires_grad_(True), ts, rtol=TOL, atol=TOL, checkpoints=checkpoints)
        torch.cuda.synchronize()
        return torch.cuda.memory_allocated() - before, int(sol.stats.n_accepted)

    on_device, steps = held_after_forward("all")
    offloaded, _ = held_after_forward("offload")
    assert steps >= 20
    assert on_device >= steps * state_bytes
    # The outputs (two states) stay on the device; the checkpoints do not.
    assert offloaded <= 4 * state_bytes
    reference, _ = _torch_gradients(func, y0, ts, checkpoints="all")
    grads, _ = _torch_gradients(func, y0, ts, checkpoints="offload")
    assert all(np.array_equal(got, want) for got, want in zip(grads, reference))


# -- JAX ---------------------------------------------------------------------------------


def _jax_problem():
    import jax
    import jax.numpy as jnp

    func, y0, params = jax_rotating_problem()
    return jax, jnp, func, y0, params


@ON_JAX_ACCELERATORS
@pytest.mark.parametrize("method", ["dopri5", "tsit5", "dopri8"])
def test_jax_exact_modes_match_backprop_on_the_device(device, method):
    jax, jnp, func, y0, params = _jax_problem()
    assert y0.devices().pop().platform == device
    ts = jnp.linspace(0.0, 3.0, 4)
    variants = [("backprop", None), ("symplectic", None), ("symplectic", "stages"), ("symplectic", "offload"),
                ("symplectic", "revolve:4"), ("checkpoint", None)]

    def gradients(y0, p):
        results = []
        for gradient, checkpoints in variants:
            def loss(y0, p, gradient=gradient, checkpoints=checkpoints):
                ys = symadj.odeint(func, y0, ts, args=p, method=method, rtol=TOL, atol=TOL, gradient=gradient,
                                   checkpoints=checkpoints)
                return jnp.sum(ys ** 2 + ys)

            results.append(jax.tree_util.tree_leaves(jax.grad(loss, argnums=(0, 1))(y0, p)))
        return results

    reference, *others = jax.jit(gradients)(y0, params)
    for variant, grads in zip(variants[1:], others):
        for got, want in zip(grads, reference):
            assert _relative_error(got, want) <= 1e-10, variant
