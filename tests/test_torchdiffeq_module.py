"""Issue 19, the rest: ``symadj.odeint`` behaving as torchdiffeq users expect, the shipped
torchdiffeq tableaux, and the ``symadj.torchdiffeq`` compatibility module.

References are independent of the code under test: closed-form solutions, hand-written
steps, and ``gradient="backprop"`` (autodiff through the same discrete solve) for exact
gradients, in float64 to 1e-10 relative.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
import symadj  # noqa: E402

F64 = torch.float64


def _decay(t, y):
    return -y


# -- symadj.odeint: single output time, method=None, max_steps, the probe ------------------------


@pytest.mark.parametrize("gradient", ["symplectic", "checkpoint", "backprop", "adjoint"])
def test_single_output_time_returns_y0_with_a_leading_axis_and_calls_nothing(gradient):
    y0 = torch.tensor([1.0, 2.0], dtype=F64, requires_grad=True)
    calls = []

    def func(t, y):
        calls.append(t)
        return -y

    ys = symadj.odeint(func, y0, torch.tensor([0.5], dtype=F64), gradient=gradient)
    assert ys.shape == (1, 2) and torch.equal(ys[0], y0) and not calls
    (grad,) = torch.autograd.grad(ys.sum(), y0)
    assert torch.equal(grad, torch.ones(2, dtype=F64))


def test_single_output_time_keeps_a_tuple_state():
    y0 = (torch.ones(2, dtype=F64), torch.zeros(3, dtype=F64))
    ys = symadj.odeint(lambda t, y: y, y0, [0.0])
    assert [tuple(y.shape) for y in ys] == [(1, 2), (1, 3)]


def test_method_none_is_dopri5():
    y0, ts = torch.ones(1, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64)
    sol_none = symadj.solve(_decay, y0, ts, method=None)
    sol_dopri5 = symadj.solve(_decay, y0, ts, method="dopri5")
    assert torch.equal(sol_none.ys, sol_dopri5.ys)
    assert int(sol_none.stats.n_fevals) == int(sol_dopri5.stats.n_fevals)


def test_torch_has_no_default_step_bound_and_an_explicit_one_still_holds():
    assert symadj.get_backend("torch").default_max_steps is None
    y0, ts = torch.ones(1, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64)
    # 5000 fixed steps: more than the 4096 the bound used to be.
    sol = symadj.solve(_decay, y0, ts, method="euler", options={"step_size": 1 / 5000})
    assert int(sol.stats.n_steps) >= 5000
    with pytest.raises(symadj.MaxStepsError, match="max_steps=100"):
        symadj.odeint(_decay, y0, ts, method="euler", options={"step_size": 1 / 5000, "max_steps": 100})


def test_jax_keeps_its_static_bound():
    if "jax" not in {b.name for b in symadj.list_backends() if b.available}:
        pytest.skip("jax is not installed")
    assert symadj.get_backend("jax").default_max_steps == 4096


def test_the_parameter_probe_is_the_solves_first_evaluation():
    net = torch.nn.Linear(2, 2).double()
    y0, ts = torch.ones(3, 2, dtype=F64), torch.tensor([0.0, 0.5, 1.0], dtype=F64)
    counted = []

    def func(t, y):
        counted.append(1)
        return torch.tanh(net(y))

    sol = symadj.solve(func, y0, ts, rtol=1e-6, atol=1e-8)
    assert len(counted) == int(sol.stats.n_fevals)
    with torch.no_grad():
        reference = symadj.solve(func, y0, ts, rtol=1e-6, atol=1e-8)
    assert torch.equal(sol.ys.detach(), reference.ys)
    assert int(sol.stats.n_fevals) == int(reference.stats.n_fevals)
    sol.ys.sum().backward()  # the gradient pass evaluates func afresh
    assert all(p.grad is not None for p in net.parameters())


# -- core options torchdiffeq's need: max_step, step_floor; the adjoint's own method ------------


def test_max_step_caps_every_adaptive_step():
    y0, ts = torch.ones(1, dtype=F64), torch.tensor([0.0, 10.0], dtype=F64)
    free = symadj.solve(_decay, y0, ts, rtol=1e-3, atol=1e-6)
    capped = symadj.solve(_decay, y0, ts, rtol=1e-3, atol=1e-6, options={"max_step": 0.25})
    assert int(free.stats.n_accepted) < 40 <= int(capped.stats.n_accepted)
    assert abs(float(capped.ys[-1, 0]) - math.exp(-10.0)) < 1e-6


def test_step_floor_forces_acceptance_where_the_estimate_would_reject():
    y0, ts = torch.ones(1, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64)
    # Tolerances no step of 0.1 meets: without a floor the steps shrink, with it each 0.1 step is taken.
    strict = symadj.solve(_decay, y0, ts, rtol=1e-8, atol=1e-8, method="bosh3")
    floored = symadj.solve(_decay, y0, ts, rtol=1e-8, atol=1e-8, method="bosh3",
                           options={"step_floor": 0.1, "first_step": 0.1})
    assert int(strict.stats.n_accepted) > 30
    assert int(floored.stats.n_accepted) == 10 and int(floored.stats.n_rejected) == 0


@pytest.mark.parametrize(("options", "message"), [
    ({"max_step": 0.0}, "max_step"), ({"step_floor": -1.0}, "step_floor"),
    ({"step_floor": 1.0, "max_step": 0.5}, "exceeds options\\['max_step'\\]"),
])
def test_bad_step_bounds_name_the_option(options, message):
    with pytest.raises(symadj.InvalidArgumentError, match=message):
        symadj.odeint(_decay, torch.ones(1), [0.0, 1.0], options=options)


def test_adjoint_backward_solve_takes_its_own_method():
    net = torch.nn.Linear(2, 2).double()
    y0, ts = torch.ones(2, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64)
    used = []

    def func(t, y):
        used.append(torch.is_grad_enabled())
        return torch.tanh(net(y))

    ys = symadj.odeint(func, y0, ts, gradient=symadj.Adjoint(method="rk4", options={"step_size": 0.25}))
    used.clear()
    ys[-1].sum().backward()
    # rk4 with four steps: 4 evaluations each (VJPs under enable_grad), plus the one at the start.
    assert len(used) == 17
    reference = [p.grad.clone() for p in net.parameters()]
    for p in net.parameters():
        p.grad = None
    symadj.odeint(func, y0, ts, gradient="backprop", rtol=1e-10, atol=1e-12)[-1].sum().backward()
    assert all(torch.allclose(r, p.grad, atol=1e-4) for r, p in zip(reference, net.parameters()))
