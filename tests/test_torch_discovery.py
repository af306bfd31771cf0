"""Issue 26, torch: every tensor func or an event function reads gets its exact gradient, or
the call raises a SymadjError that names it.

The reference is ``gradient="backprop"`` (autodiff through the same discrete solve), float64,
1e-10 relative for the exact modes; the continuous adjoint, not exact, to its own tolerance.
"""

from __future__ import annotations

import functools

import pytest

torch = pytest.importorskip("torch")
import symadj  # noqa: E402
import symadj.torchdiffeq as tdq  # noqa: E402

F64 = torch.float64
EXACT = ("symplectic", "checkpoint")
MODES = (*EXACT, "adjoint")
TS = torch.tensor([0.0, 0.5, 1.0], dtype=F64)
RK4 = {"method": "rk4", "options": {"step_size": 0.125}}
# The continuous adjoint is not the discrete solve's gradient: it and its reference solve
# adaptively to tight tolerances instead of rk4's fixed steps.
TIGHT = {"method": "dopri5", "rtol": 1e-10, "atol": 1e-12}
TOLERANCE = {"symplectic": 1e-10, "checkpoint": 1e-10, "adjoint": 1e-5}


def _solver(mode):
    return TIGHT if mode == "adjoint" else RK4


def _linear(seed: int, size: int = 2) -> torch.nn.Linear:
    gen = torch.Generator().manual_seed(seed)
    net = torch.nn.Linear(size, size).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.5 * torch.randn(p.shape, dtype=F64, generator=gen))
    return net


def _gradients(func, tensors, mode, y0=None, solve=symadj.odeint, **kwargs):
    """The gradients of a loss on the solution with respect to ``tensors`` (zeros where none flows)."""
    y0 = torch.tensor([[1.0, -0.5]], dtype=F64) if y0 is None else y0
    ys = solve(func, y0, TS, gradient=mode, **kwargs)
    grads = torch.autograd.grad((ys ** 2).sum() + ys.sum(), tensors, allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for x, g in zip(tensors, grads)]


def _relative(got, want):
    return max(float((g - w).norm() / max(float(w.norm()), 1e-300)) for g, w in zip(got, want))


def _assert_like_backprop(func, tensors, mode, **kwargs):
    kwargs = {**_solver(mode), **kwargs}
    want = _gradients(func, tensors, "backprop", **kwargs)
    got = _gradients(func, tensors, mode, **kwargs)
    assert all(float(w.norm()) > 0 for w in want), "the reference gives every tensor a gradient"
    assert _relative(got, want) < TOLERANCE[mode]


# -- item 1: tensors read away from (t0, y0) ------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_issue_reproducer_a_module_chosen_by_t(mode):
    net1, net2 = _linear(0), _linear(1)
    params = [*net1.parameters(), *net2.parameters()]
    _assert_like_backprop(lambda t, y: net1(y) if t < 0.5 else net2(y), params, mode)


@pytest.mark.parametrize("mode", MODES)
def test_issue_reproducer_exactly_as_written_gives_every_weight_a_gradient(mode):
    net1, net2 = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    f = lambda t, y: net1(y) if t < 0.5 else net2(y)  # noqa: E731
    symadj.odeint(f, torch.ones(1, 2), torch.linspace(0, 1, 3), gradient=mode).pow(2).sum().backward()
    assert net2.weight.grad is not None and float(net2.weight.grad.abs().sum()) > 0


@pytest.mark.parametrize("mode", MODES)
def test_a_captured_tensor_behind_a_branch_on_the_state(mode):
    net = _linear(2)
    w = torch.tensor([0.3, -0.7], dtype=F64, requires_grad=True)
    _assert_like_backprop(lambda t, y: net(y) + (w * y if y.norm() > 1.5 else 0.0), [*net.parameters(), w], mode)


@pytest.mark.parametrize("mode", MODES)
def test_a_tensor_read_only_in_interior_stages(mode):
    # rk4 with steps of 1/8: the stage times t + h/2 are the only ones off the grid of 1/8.
    net = _linear(3)
    w = torch.tensor(0.8, dtype=F64, requires_grad=True)

    def f(t, y):
        interior = bool(torch.remainder(t * 8, 1.0) != 0)
        return net(y) * (w if interior else 1.0)

    _assert_like_backprop(f, [*net.parameters(), w], mode)


class _Switch(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.early, self.late = _linear(4), _linear(5)
        self.gain = torch.nn.Parameter(torch.tensor(0.5, dtype=F64))

    def forward(self, t, y):
        return self.early(y) if t < 0.5 else self.gain * self.late(y)

    def rate(self, t, y, scale):
        return scale * self.forward(t, y)


@pytest.mark.parametrize("how", ["module", "bound method", "partial", "nested closure", "args"])
@pytest.mark.parametrize("mode", MODES)
def test_every_way_of_handing_over_the_tensors(mode, how):
    switch = _Switch()
    scale = torch.tensor(1.5, dtype=F64, requires_grad=True)
    tensors = [*switch.parameters(), scale]
    kwargs = {}
    if how == "module":
        func, tensors = switch, list(switch.parameters())
    elif how == "bound method":
        func = functools.partial(switch.rate, scale=scale)
    elif how == "partial":
        func = functools.partial(_Switch.rate, switch, scale=scale)
    elif how == "nested closure":
        def outer():
            inner = lambda t, y: switch.rate(t, y, scale)  # noqa: E731
            return lambda t, y: inner(t, y)

        func = outer()
    else:
        func, kwargs = (lambda t, y, scale: switch.rate(t, y, scale)), {"args": scale}
    _assert_like_backprop(func, tensors, mode, **kwargs)


@pytest.mark.parametrize("mode", MODES)
def test_a_tensor_computed_before_the_solve_and_read_late_sends_its_gradient_on(mode):
    enc, net = _linear(6), _linear(7)
    x = torch.tensor([[0.2, 0.4]], dtype=F64)

    def encoder_gradients(how):
        z = enc(x)
        func = lambda t, y: net(y) + (z if t > 0.5 else 0.0)  # noqa: E731
        return _gradients(func, list(enc.parameters()), how, **_solver(mode))

    want = encoder_gradients("backprop")
    assert all(float(w.norm()) > 0 for w in want)
    assert _relative(encoder_gradients(mode), want) < TOLERANCE[mode]


@pytest.mark.parametrize("entry", ["odeint", "odeint_adjoint"])
@pytest.mark.parametrize("mode", MODES)
def test_the_same_rules_through_symadj_torchdiffeq(mode, entry):
    net1, net2 = _linear(8), _linear(9)
    params = [*net1.parameters(), *net2.parameters()]
    solve = getattr(tdq, entry)

    settings = {"method": "rk4", "options": {"step_size": 0.125}} if mode != "adjoint" else {
        "method": "dopri5", "rtol": 1e-10, "atol": 1e-12}

    def run(t, y, mode):
        return solve(lambda t, y: net1(y) if t < 0.5 else net2(y), y, t, gradient=mode, **settings)

    y0 = torch.tensor([[1.0, -0.5]], dtype=F64)

    def grads(mode):
        ys = run(TS, y0, mode)
        return torch.autograd.grad((ys ** 2).sum(), params)

    assert _relative(grads(mode), grads("backprop")) < TOLERANCE[mode]


def test_a_comparison_alone_gives_no_gradient_as_in_backprop():
    net = _linear(10)
    c = torch.tensor(1.0, dtype=F64, requires_grad=True)
    for mode in (*MODES, "backprop"):
        c.grad = None
        ys = symadj.odeint(lambda t, y: net(y) if y.norm() < c else -y, torch.ones(1, 2, dtype=F64), TS,
                           gradient=mode, **RK4)
        ys.sum().backward()
        assert c.grad is None, mode


@pytest.mark.parametrize("mode", MODES)
def test_adjoint_params_leaving_out_a_tensor_read_late_is_refused(mode):
    net1, net2 = _linear(11), _linear(12)
    with pytest.raises(symadj.InvalidArgumentError, match=r"not in adjoint_params \(shape \(2, 2\) \(a leaf\)"):
        symadj.odeint(lambda t, y: net1(y) if t < 0.5 else net2(y), torch.ones(1, 2, dtype=F64), TS,
                      gradient=mode, adjoint_params=list(net1.parameters()), **RK4)


@pytest.mark.parametrize("mode", MODES)
def test_a_tensor_read_only_in_the_backward_pass_is_refused_naming_it(mode):
    # func reads w only while gradients are recorded: never in the forward solve.
    net = _linear(13)
    w = torch.tensor([0.3, -0.7], dtype=F64, requires_grad=True)
    ys = symadj.odeint(lambda t, y: net(y) + (w * y if torch.is_grad_enabled() else 0.0),
                       torch.ones(1, 2, dtype=F64), TS, gradient=mode, **RK4)
    with pytest.raises(symadj.InvalidArgumentError, match=r"did not see it read \(shape \(2,\) \(a leaf\)\).*"
                                                          r"adjoint_params"):
        ys.sum().backward()


# -- item 2: tensors event functions read ---------------------------------------------------------


def _fall(t, y):
    return torch.stack([-torch.ones((), dtype=F64), y[0] * 0.0 + 1.0])


@pytest.mark.parametrize("mode", [*MODES, "backprop"])
def test_issue_reproducer_an_event_threshold_gets_its_gradient(mode):
    # y0 = 10 falls at rate 1: the event y[0] = thr at t = 10 - thr, where y = (thr, 10 - thr).
    thr = torch.tensor(5.0, dtype=F64, requires_grad=True)
    sol = symadj.solve(_fall, torch.tensor([10.0, 0.0], dtype=F64), torch.tensor([0.0, 20.0], dtype=F64),
                       event=lambda t, y: y[0] - thr, gradient=mode)
    assert float(sol.event.t.detach()) == pytest.approx(5.0, rel=1e-12)
    (d_t,) = torch.autograd.grad(sol.event.t, thr, retain_graph=True)
    (d_y,) = torch.autograd.grad((sol.event.y * torch.tensor([1.0, 10.0], dtype=F64)).sum(), thr)
    assert float(d_t) == pytest.approx(-1.0, rel=1e-10)
    assert float(d_y) == pytest.approx(1.0 - 10.0, rel=1e-10)


@pytest.mark.parametrize("mode", MODES)
def test_an_event_module_and_a_captured_tensor_match_backprop(mode):
    net = _linear(14)
    level = torch.nn.Linear(2, 1).double()
    with torch.no_grad():
        level.weight.copy_(torch.tensor([[1.0, 0.5]], dtype=F64))
        level.bias.fill_(0.1)
    offset = torch.tensor(0.3, dtype=F64, requires_grad=True)
    tensors = [*net.parameters(), *level.parameters(), offset]

    def grads(mode):
        sol = symadj.solve(lambda t, y: net(y) + 1.0, torch.tensor([[0.1, -0.2]], dtype=F64),
                           torch.tensor([0.0, 4.0], dtype=F64), gradient=mode, rtol=1e-9, atol=1e-11,
                           event=lambda t, y: level(y).sum() - offset - 1.0)
        assert bool(sol.event.fired)
        loss = sol.event.t + (sol.event.y ** 2).sum() + (sol.ys[-1] ** 2).sum()
        return torch.autograd.grad(loss, tensors, allow_unused=True)

    want, got = grads("backprop"), grads(mode)
    assert all(w is not None for w in want)
    assert _relative(got, want) < TOLERANCE[mode]


@pytest.mark.parametrize("mode", MODES)
def test_a_torchdiffeq_event_function_capturing_a_tensor(mode):
    thr = torch.tensor(5.0, dtype=F64, requires_grad=True)
    event_t, _ = tdq.odeint_event(_fall, torch.tensor([10.0, 0.0], dtype=F64), torch.tensor(0.0, dtype=F64),
                                  event_fn=lambda t, y: y[0] - thr, gradient=mode)
    event_t.backward()
    assert float(thr.grad) == pytest.approx(-1.0, rel=1e-10)


# -- item 6: fields that differentiate inside themselves -----------------------------------------


def _cnf():
    gen = torch.Generator().manual_seed(15)
    hyper = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)).double()
    with torch.no_grad():
        for p in hyper.parameters():
            p.copy_(0.5 * torch.randn(p.shape, dtype=F64, generator=gen))

    def field(t, state):
        # torchdiffeq's examples/cnf.py: the exact trace of the Jacobian, by autograd inside func.
        z, _ = state
        with torch.enable_grad():
            z = z.requires_grad_(True)
            dz = hyper(torch.cat([z, t.expand(z.shape[0], 1)], 1))
            trace = sum(torch.autograd.grad(dz[:, i].sum(), z, create_graph=True)[0][:, i] for i in range(2))
        return dz, -trace.unsqueeze(1)

    z0 = torch.randn(4, 2, dtype=F64, generator=gen)
    return hyper, field, z0


@pytest.mark.parametrize("mode", MODES)
def test_a_cnf_with_an_exact_trace_matches_backprop(mode):
    hyper, field, z0 = _cnf()
    params = list(hyper.parameters())

    def grads(mode):
        z, logp = symadj.odeint(field, (z0, torch.zeros(4, 1, dtype=F64)), torch.tensor([0.0, 1.0], dtype=F64),
                                gradient=mode, rtol=1e-9, atol=1e-11)
        return torch.autograd.grad((z[-1] ** 2).sum() + logp[-1].sum(), params)

    assert _relative(grads(mode), grads("backprop")) < TOLERANCE[mode]


@pytest.mark.parametrize("transform", ["vmap(grad)", "jacrev"])
@pytest.mark.parametrize("mode", MODES)
def test_a_field_using_torch_func_transforms_inside(mode, transform):
    w = torch.tensor([[0.4, -0.3], [0.2, 0.5]], dtype=F64, requires_grad=True)

    def energy(y):
        return (torch.tanh(y @ w) ** 2).sum()

    def field(t, y):
        if transform == "jacrev":
            return -torch.func.jacrev(energy)(y)
        return -torch.func.vmap(torch.func.grad(energy))(y)

    _assert_like_backprop(field, [w], mode, y0=torch.tensor([[1.0, -0.5], [0.3, 0.2]], dtype=F64))


# -- in-place changes between forward and backward -------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_an_optimizer_step_before_backward_is_named(mode):
    net = _linear(16)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    ys = symadj.odeint(lambda t, y: net(y), torch.ones(1, 2, dtype=F64), TS, gradient=mode, **RK4)
    ys.sum().backward(retain_graph=True)
    optimizer.step()
    with pytest.raises(symadj.ParameterModifiedError, match=r"parameter 'net\.weight', shape \(2, 2\) \(a leaf\), "
                                                            r"was changed in place"):
        ys.sum().backward()


@pytest.mark.parametrize("mode", MODES)
def test_an_in_place_change_names_the_position_in_adjoint_params(mode):
    net = _linear(17)
    scale = torch.tensor(2.0, dtype=F64, requires_grad=True)
    ys = symadj.odeint(lambda t, y: scale * net(y), torch.ones(1, 2, dtype=F64), TS, gradient=mode,
                       adjoint_params=[*net.parameters(), scale], **RK4)
    with torch.no_grad():
        scale.mul_(0.5)
    with pytest.raises(symadj.ParameterModifiedError, match=r"adjoint_params\[2\], shape \(\) \(a leaf\)"):
        ys.sum().backward()


def test_an_in_place_change_through_torchdiffeq_odeint_adjoint():
    net = _linear(18)
    ys = tdq.odeint_adjoint(lambda t, y: net(y), torch.ones(1, 2, dtype=F64), TS,
                            adjoint_params=tuple(net.parameters()))
    with torch.no_grad():
        net.bias.zero_()
    with pytest.raises(symadj.ParameterModifiedError, match=r"adjoint_params\[1\]"):
        ys.sum().backward()


@pytest.mark.parametrize("mode", MODES)
def test_an_in_place_change_with_differentiated_times_still_names_the_listed_position(mode):
    net = _linear(19)
    t = TS.clone().requires_grad_(True)
    ys = symadj.odeint(lambda t, y: net(y), torch.ones(1, 2, dtype=F64), t, gradient=mode,
                       adjoint_params=list(net.parameters()), **RK4)
    with torch.no_grad():
        net.bias.zero_()
    with pytest.raises(symadj.ParameterModifiedError, match=r"^adjoint_params\[1\], shape \(2,\)"):
        ys.sum().backward()


@pytest.mark.parametrize("mode", MODES)
def test_a_solve_inside_func_reads_for_the_outer_solve(mode):
    # func solves an inner ODE whose field reads w late: the outer solve must find w too.
    w = torch.tensor([0.4, -0.2], dtype=F64, requires_grad=True)

    def inner_field(s, u):
        return -u + (w * u if s > 0.5 else 0.0)

    def func(t, y):
        return symadj.odeint(inner_field, y, torch.tensor([0.0, 1.0], dtype=F64), gradient=mode, **RK4)[-1] - y

    if mode == "adjoint":
        assert float(_gradients(func, [w], mode, **RK4)[0].norm()) > 0
    else:
        _assert_like_backprop(func, [w], mode)
