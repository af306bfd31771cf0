"""Half-precision states, tolerances below a dtype's resolution, and torch.autocast."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import symadj
from symadj import InvalidArgumentError, SymadjWarning

torch = pytest.importorskip("torch")

HALF = [torch.float16, torch.bfloat16]
MODES = ["symplectic", "checkpoint", "backprop", "adjoint"]


@pytest.mark.parametrize("dtype", HALF)
def test_half_precision_states_solve_at_tolerances_they_can_meet(dtype):
    """The error norm is taken in float32: float16's atol=1e-4 is representable there, and a
    scaled error does not overflow 65504."""
    y0 = torch.tensor([1.0, 2.0], dtype=dtype)
    t = torch.tensor([0.0, 1.0, 2.0])
    sol = symadj.solve(lambda t, y: -y, y0, t, rtol=1e-2, atol=1e-4)
    assert sol.ys.dtype == dtype and int(sol.stats.n_accepted) < 20
    exact = np.exp(-2.0) * np.array([1.0, 2.0])
    # Each step rounds the state to 11 (float16) or 8 (bfloat16) significant bits.
    assert np.allclose(sol.ys[-1].float().numpy(), exact, rtol=3e-2 if dtype == torch.float16 else 1.5e-1)


@pytest.mark.parametrize("dtype", HALF)
def test_tolerance_below_a_half_dtypes_resolution_is_refused_up_front(dtype):
    calls = []

    def func(t, y):
        calls.append(t)
        return -y

    with pytest.raises(InvalidArgumentError, match=rf"rtol=1e-07 is below the resolution of {str(dtype)[6:]} states "
                       r"\(unit roundoff .*\).*Pass rtol of at least .*torch\.autocast"):
        symadj.odeint(func, torch.ones(2, dtype=dtype), torch.tensor([0.0, 1.0]))  # the default rtol
    assert not calls
    # Fixed steps use no tolerance.
    ys = symadj.odeint(func, torch.ones(2, dtype=dtype), torch.tensor([0.0, 1.0]), method="rk4",
                       options={"step_size": 0.1})
    assert ys.dtype == dtype


def test_tolerance_below_float32_resolution_warns():
    with pytest.warns(SymadjWarning, match=r"rtol=1e-10 is below the resolution of float32 states"):
        symadj.odeint(lambda t, y: -y, torch.ones(2), torch.tensor([0.0, 1.0]), rtol=1e-10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        symadj.odeint(lambda t, y: -y, torch.ones(2), torch.tensor([0.0, 1.0]))  # 1e-7: torchdiffeq's default
        symadj.odeint(lambda t, y: -y, torch.ones(2, dtype=torch.float64), torch.tensor([0.0, 1.0]), rtol=1e-14)


def test_jax_half_precision():
    pytest.importorskip("jax")
    import jax.numpy as jnp

    ys = symadj.odeint(lambda t, y: -y, jnp.ones(2, dtype=jnp.float16), jnp.array([0.0, 1.0]), rtol=1e-2, atol=1e-4)
    assert ys.dtype == jnp.float16 and abs(float(ys[-1, 0]) - np.exp(-1.0)) < 1e-2
    with pytest.raises(InvalidArgumentError, match="below the resolution of float16"):
        symadj.odeint(lambda t, y: -y, jnp.ones(2, dtype=jnp.float16), jnp.array([0.0, 1.0]))


# -- torch.autocast ------------------------------------------------------------------------


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 32), torch.nn.Tanh(), torch.nn.Linear(32, 3))


def _gradients(net, func, mode, under_autocast):
    net.zero_grad()
    y0 = torch.linspace(-1.0, 1.0, 15).reshape(5, 3).requires_grad_(True)
    t = torch.linspace(0.0, 1.0, 7)
    context = torch.autocast("cpu", dtype=torch.bfloat16) if under_autocast else warnings.catch_warnings()
    with context:
        sol = symadj.solve(func, y0, t, gradient=mode, rtol=1e-3, atol=1e-4)
    sol.ys.square().sum().backward()
    return sol.ys.detach(), y0.grad, [p.grad.clone() for p in net.parameters()], sol.ys.dtype


@pytest.mark.parametrize("mode", MODES)
def test_autocast_runs_func_in_low_precision_and_keeps_the_state_dtype(mode):
    """Under torch.autocast, func computes in bfloat16 and its derivative comes back as float32,
    in forward and backward passes alike: values and gradients are those of a func that casts by hand."""
    net = _net()

    def by_hand(t, y):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return net(y).float()

    ys, y0_grad, param_grads, dtype = _gradients(net, lambda t, y: net(y), mode, under_autocast=True)
    reference = _gradients(net, by_hand, mode, under_autocast=False)
    assert dtype == torch.float32
    assert torch.equal(ys, reference[0]) and torch.equal(y0_grad, reference[1])
    assert all(torch.equal(a, b) for a, b in zip(param_grads, reference[2]))
    # Low precision did happen: full precision differs.
    assert not torch.equal(ys, _gradients(net, lambda t, y: net(y), mode, under_autocast=False)[0])
