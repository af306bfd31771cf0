"""Issue 19, the rest: ``symadj.odeint`` behaving as torchdiffeq users expect, the shipped
torchdiffeq tableaux, and the ``symadj.torchdiffeq`` compatibility module.

References are independent of the code under test: closed-form solutions, hand-written
steps, and ``gradient="backprop"`` (autodiff through the same discrete solve) for exact
gradients, in float64 to 1e-10 relative.
"""

from __future__ import annotations

import functools
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
    assert int(sol.stats.n_attempts) >= 5000
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

    ys = symadj.odeint(func, y0, ts, gradient=symadj.ContinuousAdjoint(method="rk4", options={"step_size": 0.25}))
    used.clear()
    ys[-1].sum().backward()
    # rk4 with four steps: 4 evaluations each (VJPs under enable_grad), plus the one at the start.
    assert len(used) == 17
    reference = [p.grad.clone() for p in net.parameters()]
    for p in net.parameters():
        p.grad = None
    symadj.odeint(func, y0, ts, gradient="backprop", rtol=1e-10, atol=1e-12)[-1].sum().backward()
    assert all(torch.allclose(r, p.grad, atol=1e-4) for r, p in zip(reference, net.parameters()))


# -- the tableaux torchdiffeq ships ------------------------------------------------------------


def _hand_step(func, t, y, h, c, a, b):
    k = []
    for i, ci in enumerate(c):
        k.append(func(t + ci * h, y + h * sum((aij * kj for aij, kj in zip(a[i], k)), torch.zeros_like(y))))
    return y + h * sum(bi * ki for bi, ki in zip(b, k))


HEUN3 = ([0, 1 / 3, 2 / 3], [[], [1 / 3], [0, 2 / 3]], [1 / 4, 0, 3 / 4])
KUTTA_3_8 = ([0, 1 / 3, 2 / 3, 1], [[], [1 / 3], [-1 / 3, 1], [1, -1, 1]], [1 / 8, 3 / 8, 3 / 8, 1 / 8])


@pytest.mark.parametrize(("method", "scheme"), [("heun3", HEUN3), ("rk4", KUTTA_3_8)])
def test_fixed_methods_step_as_torchdiffeqs_coefficients_say(method, scheme):
    from symadj.torchdiffeq import odeint

    def func(t, y):
        return torch.cos(t) * y - y ** 2

    y0, h = torch.tensor([0.7, -0.2], dtype=F64), 0.125
    ys = odeint(func, y0, torch.tensor([0.0, 1.0], dtype=F64), method=method, options={"step_size": h})
    y, t = y0, torch.tensor(0.0, dtype=F64)
    for _ in range(8):
        y, t = _hand_step(func, t, y, h, *scheme), t + h
    assert torch.allclose(ys[-1], y, rtol=1e-14, atol=1e-15)


def test_dopri8_is_prince_dormand_87_and_eighth_order():
    from symadj.torchdiffeq import odeint

    tab = symadj.get_tableau("dopri87")
    assert (tab.order, tab.embedded_order, tab.stages, tab.fsal) == (8, 7, 14, True)
    assert float(tab.c[1]) == pytest.approx(1 / 18)
    assert float(symadj.get_tableau("dopri8").c[1]) != pytest.approx(1 / 18)  # DOP853 differs
    errors = []
    for h in (0.2, 0.1):  # steps held at h: min_step (a floor that forces acceptance) = max_step = h
        ys = odeint(lambda t, y: 3 * torch.cos(t) * y, torch.ones(1, dtype=F64), torch.tensor([0.0, 4.0], dtype=F64),
                    method="dopri8", options={"first_step": h, "min_step": h, "max_step": h}, rtol=1e-30, atol=1e-30)
        errors.append(abs(float(ys[-1, 0]) - math.exp(3 * math.sin(4.0))))
    assert 2 ** 7.5 < errors[0] / errors[1] < 2 ** 9.5


@pytest.mark.parametrize("method", ["heun3", "dopri87"])
def test_new_tableaux_give_exact_gradients(method):
    net = torch.nn.Sequential(torch.nn.Linear(2, 6), torch.nn.Tanh(), torch.nn.Linear(6, 2)).double()
    y0 = torch.tensor([[0.3, -0.4], [1.0, 0.2]], dtype=F64, requires_grad=True)
    ts = torch.tensor([0.0, 0.6, 1.5], dtype=F64)
    kwargs = {"options": {"step_size": 0.05}} if method == "heun3" else {"rtol": 1e-8, "atol": 1e-8}
    grads = {}
    for mode in ("backprop", "symplectic", "checkpoint"):
        ys = symadj.odeint(lambda t, y: net(y), y0, ts, method=method, gradient=mode, **kwargs)
        grads[mode] = torch.autograd.grad((ys ** 2).sum(), [y0, *net.parameters()])
    for mode in ("symplectic", "checkpoint"):
        for got, want in zip(grads[mode], grads["backprop"]):
            assert float((got - want).norm() / want.norm()) < 1e-10


# -- symadj.torchdiffeq ----------------------------------------------------------------------------

tdq = pytest.importorskip("symadj.torchdiffeq")


def test_method_names_map_to_the_same_coefficients():
    assert tdq.METHODS["rk4"] == "rk38" and tdq.METHODS["dopri8"] == "dopri87"
    assert tdq.METHODS["adaptive_heun"] == "heun_euler"
    for name in tdq.METHODS.values():
        symadj.get_tableau(name)


@pytest.mark.parametrize("method", ["explicit_adams", "implicit_adams", "scipy_solver"])
def test_out_of_scope_methods_are_refused_with_the_reason(method):
    with pytest.raises(symadj.InvalidArgumentError, match="out of scope"):
        tdq.odeint(_decay, torch.ones(1), torch.tensor([0.0, 1.0]), method=method)


def test_unknown_method_lists_torchdiffeqs_names():
    with pytest.raises(symadj.UnknownNameError, match="'dopri5'"):
        tdq.odeint(_decay, torch.ones(1), torch.tensor([0.0, 1.0]), method="dopri6")


def test_single_time_and_method_none():
    y0 = torch.tensor([1.0, 3.0])
    assert torch.equal(tdq.odeint(_decay, y0, torch.tensor([2.0])), y0[None])
    ys = tdq.odeint(_decay, y0, torch.tensor([0.0, 1.0]), method=None)
    assert torch.allclose(ys[-1], y0 * math.exp(-1.0), rtol=1e-6)


def test_fixed_step_outputs_are_linear_between_steps_by_default():
    # Euler with h = 0.5 from y0 = 1: y(0.5) = 0.5, y(1) = 0.25; t = 0.75 lies half way.
    ts = torch.tensor([0.0, 0.75, 1.0], dtype=F64)
    ys = tdq.odeint(_decay, torch.ones(1, dtype=F64), ts, method="euler", options={"step_size": 0.5})
    assert torch.allclose(ys[:, 0], torch.tensor([1.0, 0.375, 0.25], dtype=F64), rtol=0, atol=1e-15)
    # rk4 (3/8 rule), linear: the chord between the two step ends.
    h = 0.5
    step = 1 - h + h ** 2 / 2 - h ** 3 / 6 + h ** 4 / 24
    ys = tdq.odeint(_decay, torch.ones(1, dtype=F64), ts, method="rk4", options={"step_size": h})
    assert float(ys[1, 0]) == pytest.approx((step + step ** 2) / 2, abs=1e-15)
    cubic = tdq.odeint(_decay, torch.ones(1, dtype=F64), ts, method="rk4", options={"step_size": h, "interp": "cubic"})
    assert abs(float(cubic[1, 0]) - math.exp(-0.75)) < abs(float(ys[1, 0]) - math.exp(-0.75))


def test_grid_constructor_sets_the_steps():
    def grid(func, y0, t):
        return torch.linspace(float(t[0]), float(t[-1]), 11)

    ys = tdq.odeint(lambda t, y: y, torch.tensor(1.0, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64),
                    method="euler", options={"grid_constructor": grid})
    assert float(ys[-1]) == pytest.approx(1.1 ** 10, rel=1e-13)
    with pytest.raises(symadj.InvalidArgumentError, match="exclude each other"):
        tdq.odeint(_decay, torch.ones(1), torch.tensor([0.0, 1.0]), method="euler",
                   options={"grid_constructor": grid, "step_size": 0.1})


def test_step_size_on_an_adaptive_method_is_ignored_with_a_warning():
    y0, ts = torch.ones(1, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64)
    with pytest.warns(symadj.SymadjWarning, match="step_size"):
        ys = tdq.odeint(_decay, y0, ts, options={"step_size": 0.5})
    assert torch.equal(ys, tdq.odeint(_decay, y0, ts))


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4", "heun3"])
@pytest.mark.parametrize("adjoint", [False, True])
def test_perturb_keeps_func_off_the_grid_points_forward_and_backward(dtype, method, adjoint):
    # Steps of 0.5 on [0, 1]: with perturb, func never sees the grid points 0, 0.5 and 1, but
    # the times one ulp inside each step, in the state's dtype; without it, it sees them.
    ts = torch.tensor([0.0, 1.0])
    seen = []

    def func(t, y):
        assert t.dtype == dtype
        seen.append(t.item())
        return -y

    for perturb in (True, False):
        seen.clear()

        y0 = torch.tensor([1.0, 2.0], dtype=dtype, requires_grad=True)
        # odeint's default ("auto") backpropagates this short solve: no call of func to see backward.
        solve = tdq.odeint_adjoint if adjoint else functools.partial(tdq.odeint, gradient="symplectic")
        ys = solve(func, y0, ts, method=method, options={"step_size": 0.5, "perturb": perturb})
        forward, seen[:] = list(seen), []
        ys.sum().backward()
        after = torch.nextafter(torch.tensor(0.5, dtype=dtype), torch.tensor(1.0, dtype=dtype)).item()
        if perturb:
            assert not {0.0, 0.5, 1.0} & {*forward, *seen}
            assert after in forward and after in seen
        else:
            assert {0.0, 0.5} <= set(forward) and 0.5 in seen
        if perturb and method == "rk4":  # a stage at c = 1 (3/8 rule): one ulp before 0.5 and 1
            before = torch.nextafter(torch.tensor(1.0, dtype=dtype), torch.tensor(0.0, dtype=dtype)).item()
            assert before in forward and before in seen


def test_perturb_false_and_on_an_adaptive_method_changes_nothing():
    y0, ts = torch.ones(1, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64)
    plain = tdq.odeint(_decay, y0, ts, method="euler", options={"step_size": 0.5})
    assert torch.equal(tdq.odeint(_decay, y0, ts, method="euler", options={"step_size": 0.5, "perturb": False}),
                       plain)
    with pytest.warns(symadj.SymadjWarning, match="perturb"):  # a fixed-step option, as in torchdiffeq
        ys = tdq.odeint(_decay, y0, ts, options={"perturb": True})
    assert torch.equal(ys, tdq.odeint(_decay, y0, ts))


@pytest.mark.parametrize("gradient", ["symplectic", "checkpoint", "adjoint"])
def test_perturbed_gradients_through_a_jump_at_a_grid_point(gradient):
    # y' = -y before 0.5, -3y after: rk4 with steps of 1/8 and perturb is within its order of
    # y0 e^{-2}; gradients are backprop's through the same solve (the adjoint's within its tolerances).
    def func(t, y):
        return -y if t < 0.5 else -3.0 * y

    def solve(gradient):
        y0 = torch.tensor([1.0, 2.0], dtype=F64, requires_grad=True)
        ys = tdq.odeint(func, y0, torch.tensor([0.0, 1.0], dtype=F64), method="rk4",
                        options={"step_size": 0.125, "perturb": True}, gradient=gradient)
        (grad,) = torch.autograd.grad((ys[-1] ** 2).sum(), y0)
        return ys[-1].detach(), grad

    ys, grad = solve(gradient)
    ys_ref, grad_ref = solve("backprop")
    assert torch.allclose(ys, torch.tensor([1.0, 2.0], dtype=F64) * math.exp(-2.0), rtol=1e-3)
    tolerance = 1e-10 if gradient != "adjoint" else 1e-5
    assert float((grad - grad_ref).norm() / grad_ref.norm()) <= tolerance


def test_max_num_steps_min_step_max_step_and_dtype_are_torchdiffeqs():
    y0, ts = torch.ones(1, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64)
    with pytest.raises(symadj.MaxStepsError):
        tdq.odeint(_decay, y0, ts, options={"max_num_steps": 3, "max_step": 0.01})
    calls = []

    def counted(t, y):
        calls.append(float(t))
        return -y

    tdq.odeint(counted, y0, ts, method="bosh3", rtol=1e-12, atol=1e-12,
               options={"min_step": 0.25, "first_step": 0.25, "dtype": torch.float64})
    assert len(calls) == 1 + 4 * 3  # f(t0) (no first-step heuristic), four FSAL steps of three evaluations


def test_tuple_state_norm_receives_the_tuple_and_tolerances_go_per_tensor():
    seen = []

    def norm(parts):
        seen.append(tuple(p.shape for p in parts))
        return max(p.abs().max() for p in parts)

    y0 = (torch.tensor(1.0, dtype=F64), torch.ones(2, 2, dtype=F64))
    ys = tdq.odeint(lambda t, y: (-y[0], -2 * y[1]), y0, torch.tensor([0.0, 1.0], dtype=F64),
                    rtol=(1e-9, 1e-6), atol=(1e-12, 1e-8), options={"norm": norm})
    assert seen and all(shapes == ((), (2, 2)) for shapes in seen)
    assert float(ys[0][-1]) == pytest.approx(math.exp(-1.0), rel=1e-8)
    with pytest.raises(symadj.InvalidArgumentError, match="rtol has 3 entries"):
        tdq.odeint(lambda t, y: y, y0, torch.tensor([0.0, 1.0]), rtol=(1e-6, 1e-6, 1e-6))


def test_tensor_state_norm_receives_the_tensor():
    seen = []

    def norm(x):
        seen.append(x.shape)
        return x.abs().max()

    tdq.odeint(_decay, torch.ones(()), torch.tensor([0.0, 1.0]), options={"norm": norm})
    assert seen and all(shape == () for shape in seen)


def _net():
    torch.manual_seed(1)
    return torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).double()


@pytest.mark.parametrize("solver", ["odeint", "odeint_adjoint"])
def test_both_entry_points_give_the_exact_gradient_by_default(solver):
    net = _net()
    y0 = torch.tensor([[0.5, -1.0]], dtype=F64, requires_grad=True)
    ts = torch.tensor([0.0, 0.5, 1.0], dtype=F64)
    ys = getattr(tdq, solver)(lambda t, y: net(y), y0, ts, rtol=1e-6, atol=1e-8)
    got = torch.autograd.grad(ys.pow(2).sum(), [y0, *net.parameters()])
    ys = symadj.odeint(lambda t, y: net(y), y0, ts, rtol=1e-6, atol=1e-8, gradient="backprop")
    want = torch.autograd.grad(ys.pow(2).sum(), [y0, *net.parameters()])
    assert all(float((g - w).norm() / w.norm()) < 1e-10 for g, w in zip(got, want))


def test_continuous_adjoint_on_request_with_its_own_settings():
    net = _net()
    y0 = torch.tensor([[0.5, -1.0]], dtype=F64, requires_grad=True)
    ts = torch.tensor([0.0, 1.0], dtype=F64)
    seen = []

    def adjoint_norm(parts):
        seen.append(len(parts))
        return max(p.abs().max() for p in parts)

    params = tuple(net.parameters())
    ys = tdq.odeint_adjoint(lambda t, y: net(y), y0, ts, rtol=1e-8, atol=1e-8, gradient="adjoint",
                            adjoint_params=params, adjoint_method="dopri8", adjoint_rtol=1e-10,
                            adjoint_atol=1e-10, adjoint_options={"norm": adjoint_norm, "max_num_steps": 1000})
    got = torch.autograd.grad(ys.sum(), [y0, *params])
    assert seen and set(seen) == {1 + 2 + len(params)}  # (t, y, adj_y, *adj_params)
    ys = tdq.odeint(lambda t, y: net(y), y0, ts, rtol=1e-10, atol=1e-10)
    want = torch.autograd.grad(ys.sum(), [y0, *params])
    assert all(float((g - w).norm() / w.norm()) < 1e-6 for g, w in zip(got, want))
    with pytest.raises(symadj.InvalidArgumentError, match="adjoint_options too"):
        tdq.odeint_adjoint(lambda t, y: net(y), y0, ts, gradient="adjoint", adjoint_method="bosh3",
                           options={"max_num_steps": 100})


def test_event_fn_returns_the_event_time_and_the_two_states():
    y0 = torch.tensor([1.0, 2.0], dtype=F64, requires_grad=True)
    event_t, ys = tdq.odeint(_decay, y0, torch.tensor([0.0, 0.1], dtype=F64), event_fn=lambda t, y: y[0] - 0.5,
                             rtol=1e-10, atol=1e-12)
    assert float(event_t.detach()) == pytest.approx(math.log(2.0), rel=1e-9)
    assert ys.shape == (2, 2) and torch.equal(ys[0], y0.detach())
    (grad,) = torch.autograd.grad(event_t, y0)  # t* = ln y0[0] - ln 0.5
    assert torch.allclose(grad, torch.tensor([1.0, 0.0], dtype=F64), atol=1e-8)


def test_event_fn_with_several_entries_stops_at_the_first_crossing_backward_in_time():
    y0 = (torch.tensor([1.0], dtype=F64), torch.tensor([3.0], dtype=F64))
    event_t, (a, b) = tdq.odeint(lambda t, y: (y[0], y[1]), y0, torch.tensor([0.0, -1.0], dtype=F64),
                                 event_fn=lambda t, y: torch.cat([y[0] - 0.5, y[1] - 1.0]), rtol=1e-10, atol=1e-12)
    assert float(event_t) == pytest.approx(math.log(0.5), rel=1e-9)  # y[0] reaches 0.5 before y[1] reaches 1
    assert a.shape == (2, 1) and float(b[-1, 0]) == pytest.approx(1.5, rel=1e-8)


def test_odeint_event_from_a_start_time():
    event_t, ys = tdq.odeint_event(_decay, torch.tensor([2.0], dtype=F64), torch.tensor(1.0, dtype=F64),
                                   event_fn=lambda t, y: y[0] - 1.0, rtol=1e-10, atol=1e-12,
                                   odeint_interface=tdq.odeint_adjoint)
    assert float(event_t) == pytest.approx(1.0 + math.log(2.0), rel=1e-9)
    assert float(ys[-1, 0]) == pytest.approx(1.0, rel=1e-8)


def test_module_docstring_examples_run():
    import doctest

    import symadj_torch.torchdiffeq

    for module in (tdq, symadj_torch.torchdiffeq):
        failures, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        assert tried and failures == 0


def test_event_closing_over_a_tensor_made_from_the_parameters_survives_two_backward_passes():
    # As torchdiffeq's event test: the event function's target is computed from func's parameters
    # (a graph with saved tensors, made before the solve), and two backward passes follow.
    rate = torch.tensor(1.0, dtype=F64, requires_grad=True)
    target = 0.5 + 0.0 * rate ** 2
    y0 = torch.tensor([1.0], dtype=F64, requires_grad=True)
    event_t, ys = tdq.odeint(lambda t, y: -rate * y, y0, torch.tensor([0.0, 1.0], dtype=F64),
                             event_fn=lambda t, y: torch.sum(y - target), rtol=1e-10, atol=1e-12)
    event_t.backward(retain_graph=True)
    ys[-1].sum().backward()
    # t* = ln(y0 / 0.5) / rate: dt*/dy0 = 1; y(t*) is the target whatever y0: no more.
    assert float(y0.grad) == pytest.approx(1.0, abs=1e-8)
    assert float(rate.grad) == pytest.approx(-math.log(2.0), abs=1e-8)


@pytest.mark.parametrize("name", ["callback_accept_step", "callback_reject_step"])
@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_accept_and_reject_callbacks_on_a_fixed_step_method_warn_as_torchdiffeq_does(method, name):
    from symadj.torchdiffeq import odeint

    accepted = []

    def func(t, y):
        return -y

    setattr(func, name, lambda t, y, dt: accepted.append(float(t)))
    with pytest.warns(UserWarning, match=rf"method '.*' takes fixed steps.*{name}"):
        odeint(func, torch.ones(2, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64), method=method,
               options={"step_size": 0.25})
    assert accepted == ([0.0, 0.25, 0.5, 0.75] if name == "callback_accept_step" else [])


def test_an_event_that_never_comes_ends_the_search_with_max_steps_error():
    from symadj.torchdiffeq import odeint_event

    start = torch.tensor(0.0, dtype=F64)
    with pytest.raises(symadj.MaxStepsError, match=r"event_fn did not cross zero within max_num_steps=50 step "
                       r"attempts \(at t=.*\); check that it changes sign"):
        odeint_event(_decay, torch.ones(2, dtype=F64), start, event_fn=lambda t, y: y[0] + 1.0,
                     options={"max_num_steps": 50})
    t, _ = odeint_event(_decay, torch.ones(2, dtype=F64), start, event_fn=lambda t, y: y[0] - 0.5)
    assert abs(float(t) - math.log(2.0)) < 1e-6


def test_adjoint_settings_without_the_continuous_adjoint_warn_that_they_are_unused():
    import warnings

    from symadj.torchdiffeq import odeint_adjoint

    y0, t = torch.ones(2, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64)
    with pytest.warns(symadj.SymadjWarning, match=r"adjoint_rtol, adjoint_options set the backward solve .*"
                      r"gradient='symplectic'.*Pass gradient='adjoint'"):
        odeint_adjoint(_decay, y0, t, adjoint_rtol=1e-6, adjoint_options={"norm": "seminorm"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        odeint_adjoint(_decay, y0, t, adjoint_rtol=1e-6, gradient="adjoint")
        odeint_adjoint(_decay, y0, t)


@pytest.mark.parametrize("backward_code", ["callback_step_adjoint", "callback_accept_step_adjoint", "norm"])
def test_odeint_adjoint_runs_the_backward_solve_that_the_call_brings_code_for(backward_code):
    # Code written to run in torchdiffeq's backward solve (an _adjoint callback, a callable adjoint
    # norm) would silently never run in the exact modes: odeint_adjoint runs the continuous adjoint.
    from symadj.torchdiffeq import odeint_adjoint

    called = []

    def func(t, y):
        return -y

    adjoint_options = None
    if backward_code == "norm":
        def norm(parts):
            called.append(len(parts))
            return torch.cat([part.reshape(-1) for part in parts]).abs().max()

        adjoint_options = {"norm": norm}
    else:
        setattr(func, backward_code, lambda t, y, dt: called.append(float(t)))
    y0 = torch.tensor([1.0, 2.0], dtype=F64, requires_grad=True)
    with pytest.warns(symadj.SymadjWarning, match=r"run in the backward solve.*gradient='adjoint'.*"
                      r"pass gradient='symplectic'"):
        ys = odeint_adjoint(func, y0, torch.tensor([0.0, 1.0], dtype=F64), adjoint_options=adjoint_options)
    assert not called
    (grad,) = torch.autograd.grad(ys[-1].sum(), y0)
    assert called  # the backward solve called it
    assert torch.allclose(grad, torch.full((2,), math.exp(-1.0), dtype=F64), rtol=1e-6)


def test_odeint_adjoint_given_a_gradient_keeps_it_whatever_backward_code_the_call_brings():
    import warnings

    from symadj.torchdiffeq import odeint_adjoint

    called = []

    def func(t, y):
        return -y

    func.callback_step_adjoint = lambda t, y, dt: called.append(float(t))
    y0 = torch.tensor([1.0, 2.0], dtype=F64, requires_grad=True)
    ts = torch.tensor([0.0, 1.0], dtype=F64)
    with pytest.warns(symadj.SymadjWarning, match=r"_adjoint callbacks run in the backward solves.*not called"):
        ys = odeint_adjoint(func, y0, ts, gradient="symplectic")
    (grad,) = torch.autograd.grad(ys[-1].sum(), y0)
    want = torch.autograd.grad(symadj.odeint(_decay, y0, ts, gradient="backprop")[-1].sum(), y0)[0]
    assert not called and float((grad - want).abs().max()) < 1e-15
    del func.callback_step_adjoint
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a call without backward code: exact, and nothing to say
        odeint_adjoint(func, y0, ts)
