"""PyTorch backend: every gradient mode against backprop and against independent references."""

from __future__ import annotations

import gc
import weakref

import pytest
from conftest import SHIPPED

torch = pytest.importorskip("torch")

import symadj  # noqa: E402

FIXED_STEP = ["euler", "midpoint", "heun2", "ralston2", "rk4", "rk38", "ssprk3", "heun3"]
TOLERANCE = {"heun_euler": 1e-4, "fehlberg2": 1e-4, "bosh3": 1e-7, "dopri8": 1e-11, "dopri87": 1e-11}


class Linear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.matrix = torch.nn.Parameter(torch.tensor([[-0.1, 2.0, 0.0], [-2.0, -0.1, 0.3], [0.0, -0.3, -0.2]]))

    def forward(self, t, y):
        return y @ self.matrix.T


class Mlp(torch.nn.Module):
    def __init__(self, depth=2, width=16):
        super().__init__()
        layers = [torch.nn.Linear(3, width), torch.nn.Tanh()]
        for _ in range(depth - 1):
            layers += [torch.nn.Linear(width, width), torch.nn.Tanh()]
        self.net = torch.nn.Sequential(*layers, torch.nn.Linear(width, 3))
        self.register_buffer("rotation", torch.tensor([[0.0, 3.0, 0.0], [-3.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))

    def forward(self, t, y):
        return y @ self.rotation.T + self.net(y) * torch.cos(t)


class Pendulum(torch.nn.Module):
    """Tuple state (angle, velocity) with learnable stiffness and damping."""

    def __init__(self):
        super().__init__()
        self.stiffness = torch.nn.Parameter(torch.tensor([9.0, 4.0]))
        self.damping = torch.nn.Parameter(torch.tensor(0.1))

    def forward(self, t, state):
        angle, velocity = state
        return velocity, -self.stiffness * torch.sin(angle) - self.damping * velocity


def _problem(name):
    torch.manual_seed(0)
    if name == "linear":
        return Linear().double(), torch.tensor([[1.0, 0.5, -0.2]], dtype=torch.float64)
    if name == "mlp":
        return Mlp().double(), torch.randn(4, 3, dtype=torch.float64)
    return Pendulum().double(), (torch.tensor([1.0, -0.5], dtype=torch.float64),
                                 torch.tensor([0.0, 0.3], dtype=torch.float64))


def _leaves(state):
    return list(state) if isinstance(state, tuple) else [state]


def gradients(func, y0, method, mode, end=4.0, **kwargs):
    """Gradients of a loss over four output times, for y0's arrays and every parameter."""
    y0 = tuple(y.clone().requires_grad_() for y in y0) if isinstance(y0, tuple) else y0.clone().requires_grad_()
    ts = torch.linspace(0.0, end, 4, dtype=torch.float64)
    if method in FIXED_STEP:
        kwargs.setdefault("options", {"step_size": end / 25})
    else:
        kwargs.setdefault("rtol", TOLERANCE.get(method, 1e-6))
        kwargs.setdefault("atol", TOLERANCE.get(method, 1e-6))
    sol = symadj.solve(func, y0, ts, method=method, gradient=mode, **kwargs)
    weights = torch.tensor([0.0, 0.3, -1.0, 2.0], dtype=torch.float64)
    loss = sum((w * (ys ** 2 + ys).sum(dim=tuple(range(1, ys.ndim)))).sum() for w, ys in
               [(weights, ys) for ys in _leaves(sol.ys)])
    inputs = _leaves(y0) + list(func.parameters())
    return torch.autograd.grad(loss, inputs), sol.stats


def relative_errors(grads, reference):
    return [float((g - r).norm() / r.norm().clamp_min(1e-300)) for g, r in zip(grads, reference)]


@pytest.mark.parametrize("problem", ["linear", "mlp", "tuple"])
@pytest.mark.parametrize("method", SHIPPED)
def test_symplectic_and_checkpoint_match_backprop(method, problem):
    func, y0 = _problem(problem)
    reference, stats = gradients(func, y0, method, "backprop")
    assert int(stats.n_accepted) >= 20
    for mode in ("symplectic", "checkpoint"):
        grads, mode_stats = gradients(func, y0, method, mode)
        assert int(mode_stats.n_accepted) == int(stats.n_accepted)
        assert max(relative_errors(grads, reference)) <= 1e-10, mode


def test_backprop_matches_a_hand_written_rk4_loop():
    func, y0 = _problem("mlp")
    grads, _ = gradients(func, y0, "rk4", "backprop", end=3.0, options={"step_size": 0.25})
    y = y0.clone().requires_grad_()
    state, t, h, outputs = y, torch.tensor(0.0, dtype=torch.float64), 0.25, [y]
    for step in range(1, 13):
        k1 = func(t, state)
        k2 = func(t + h / 2, state + h / 2 * k1)
        k3 = func(t + h / 2, state + h / 2 * k2)
        k4 = func(t + h, state + h * k3)
        state, t = state + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4), t + h
        if step % 4 == 0:
            outputs.append(state)
    weights = [0.0, 0.3, -1.0, 2.0]
    loss = sum(w * (ys ** 2 + ys).sum() for w, ys in zip(weights, outputs))
    reference = torch.autograd.grad(loss, [y, *func.parameters()])
    assert max(relative_errors(grads, reference)) <= 1e-12


def test_linear_system_gradient_matches_the_matrix_exponential():
    func, y0 = _problem("linear")
    y0 = y0.clone().requires_grad_()
    ys = symadj.odeint(func, y0, torch.tensor([0.0, 2.0], dtype=torch.float64), rtol=1e-11, atol=1e-12)
    weights = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    (grad,) = torch.autograd.grad((ys[-1] * weights).sum(), [y0])
    exact = weights @ torch.linalg.matrix_exp(2.0 * func.matrix.detach())
    assert torch.allclose(grad[0], exact, rtol=1e-8)


def test_continuous_adjoint_agrees_with_torchdiffeq():
    torchdiffeq = pytest.importorskip("torchdiffeq")
    func, y0 = _problem("mlp")
    ts = torch.linspace(0.0, 2.0, 3, dtype=torch.float64)

    def grads_of(solver, **kwargs):
        y = y0.clone().requires_grad_()
        ys = solver(func, y, ts, method="dopri5", rtol=1e-9, atol=1e-9, **kwargs)
        return torch.autograd.grad((ys ** 2).sum(), [y, *func.parameters()])

    ours = grads_of(symadj.odeint, gradient="adjoint")
    theirs = grads_of(torchdiffeq.odeint_adjoint)
    seminorm = grads_of(symadj.odeint, gradient="adjoint", adjoint_options={"norm": "seminorm"})
    assert max(relative_errors(ours, theirs)) < 1e-6
    assert max(relative_errors(seminorm, theirs)) < 1e-6


def test_retained_memory_grows_with_steps_not_with_network_depth():
    class Saved:
        def __init__(self, tensor):
            self.tensor = tensor

    def retained(mode, depth, steps):
        """Bytes the autograd graph still holds after the forward, plus symadj's checkpoints."""
        torch.manual_seed(0)
        func, saved = Mlp(depth=depth, width=64).double(), []
        y0 = torch.randn(32, 3, dtype=torch.float64, requires_grad=True)

        def pack(tensor):
            holder = Saved(tensor)
            saved.append(weakref.ref(holder))
            return holder

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda holder: holder.tensor):
            # checkpoints="all": one state per step ("auto" would keep the stage states, 4 a step).
            sol = symadj.solve(func, y0, torch.tensor([0.0, 1.0], dtype=torch.float64), method="rk4",
                               gradient=mode, options={"step_size": 1.0 / steps},
                               checkpoints="all" if mode == "symplectic" else None)
        gc.collect()
        alive = [ref() for ref in saved if ref() is not None]
        graph_bytes = sum(h.tensor.numel() * h.tensor.element_size() for h in alive)
        return graph_bytes + int(sol.stats.checkpoint_bytes), sol

    state_bytes = 32 * 3 * 8
    small, sol = retained("symplectic", depth=2, steps=10)
    deep, _ = retained("symplectic", depth=8, steps=10)
    long, _ = retained("symplectic", depth=2, steps=40)
    assert small == deep == 10 * (state_bytes + 16)
    assert long == 40 * (state_bytes + 16)
    backprop_small, _ = retained("backprop", depth=2, steps=10)
    backprop_deep, _ = retained("backprop", depth=8, steps=10)
    backprop_long, _ = retained("backprop", depth=2, steps=40)
    assert backprop_deep > 2.5 * backprop_small > 50 * small
    assert backprop_long > 3.5 * backprop_small


def test_gradcheck_symplectic():
    matrix = torch.tensor([[-0.5, 1.0], [-1.0, -0.2]], dtype=torch.float64, requires_grad=True)
    y0 = torch.tensor([1.0, 0.3], dtype=torch.float64, requires_grad=True)

    def solve(y0, matrix):
        return symadj.odeint(lambda t, y: torch.tanh(matrix @ y) * (1 + t), y0,
                             torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64), method="dopri5",
                             options={"step_size": 0.1}, adjoint_params=[matrix])

    assert torch.autograd.gradcheck(solve, (y0, matrix))


def test_backward_works_when_the_caller_disables_gradients():
    func, y0 = _problem("mlp")
    y = y0.clone().requires_grad_()
    loss = symadj.odeint(func, y, torch.tensor([0.0, 1.0], dtype=torch.float64)).sum()
    with torch.no_grad():
        loss.backward()
    assert y.grad is not None and y.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in func.parameters())


def test_closure_tensors_are_never_silently_dropped():
    # A closure's tensors are found and differentiated (issue 19); with adjoint_params
    # given, one left out of it is refused.
    weight = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    other = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    y0 = torch.ones(2, dtype=torch.float64, requires_grad=True)
    ts = torch.tensor([0.0, 1.0], dtype=torch.float64)
    with pytest.raises(symadj.InvalidArgumentError, match="not in adjoint_params"):
        symadj.odeint(lambda t, y: -weight * other * y, y0, ts, adjoint_params=[weight], gradient="symplectic")
    for kwargs in ({}, {"adjoint_params": [weight]}):
        ys = symadj.odeint(lambda t, y: -weight * y, y0, ts, **kwargs)
        (grad,) = torch.autograd.grad(ys[-1].sum(), [weight])
        assert float(grad) == pytest.approx(-2.0 * torch.exp(-weight).item(), rel=1e-6)


def test_higher_order_gradients():
    rate = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    ts = torch.tensor([0.0, 1.0], dtype=torch.float64)
    ones = torch.ones(1, dtype=torch.float64)
    ys = symadj.odeint(lambda t, y: -rate * y, ones, ts, gradient="backprop", adjoint_params=[rate],
                       rtol=1e-10, atol=1e-12)
    (first,) = torch.autograd.grad(ys[-1].sum(), [rate], create_graph=True)
    (second,) = torch.autograd.grad(first, [rate])
    assert float(second) == pytest.approx(float(torch.exp(-rate.detach())), rel=1e-6)
    ys = symadj.odeint(lambda t, y: -rate * y, ones, ts, adjoint_params=[rate], gradient="symplectic")
    with pytest.raises(symadj.GradientNotSupportedError, match="create_graph=True"):
        torch.autograd.grad(ys[-1].sum(), [rate], create_graph=True)


@pytest.mark.parametrize("mode", ["symplectic", "checkpoint", "backprop", "adjoint"])
def test_every_mode_gives_time_gradients_like_torchdiffeq(mode):
    torchdiffeq = pytest.importorskip("torchdiffeq")
    func, y0 = _problem("mlp")

    def time_gradient(solver, **kwargs):
        ts = torch.tensor([0.2, 0.7, 1.1, 1.5], dtype=torch.float64, requires_grad=True)
        ys = solver(lambda t, y: func(t, y) * torch.cos(t), y0, ts, method="dopri5", rtol=1e-10, atol=1e-10,
                    **kwargs)
        return torch.autograd.grad((ys ** 2).sum() + ys[1].sum(), ts)[0]

    ours = time_gradient(symadj.odeint, gradient=mode)
    # torchdiffeq's odeint also differentiates its step-size choices: equal up to the tolerances.
    torch.testing.assert_close(ours, time_gradient(torchdiffeq.odeint), rtol=1e-4, atol=0)
    torch.testing.assert_close(ours, time_gradient(symadj.odeint, gradient="adjoint"), rtol=1e-8, atol=0)
    assert ours.abs().min() > 0


def test_float32_gradient_is_close_to_float64():
    func, y0 = _problem("mlp")
    reference, _ = gradients(func, y0, "dopri5", "symplectic", rtol=1e-6, atol=1e-6)
    func32 = func.float()
    grads, _ = gradients(func32, y0.float(), "dopri5", "symplectic", rtol=1e-6, atol=1e-6)
    assert all(g.dtype == torch.float32 for g in grads)
    assert max(relative_errors([g.double() for g in grads], reference)) < 1e-4


def test_adjoint_options_only_with_the_adjoint_mode():
    with pytest.raises(symadj.InvalidArgumentError, match="adjoint_rtol .* gradient='adjoint' only"):
        symadj.odeint(lambda t, y: -y, torch.ones(1), torch.tensor([0.0, 1.0]), adjoint_rtol=1e-3)


def test_unknown_gradient_mode_lists_the_modes():
    with pytest.raises(symadj.UnknownNameError, match=r"unknown gradient 'exact'; known: .*'symplectic'"):
        symadj.odeint(lambda t, y: -y, torch.ones(1), torch.tensor([0.0, 1.0]), gradient="exact")


def test_mismatched_devices_are_refused():
    meta_t = torch.tensor([0.0, 1.0], device="meta")
    with pytest.raises(symadj.InvalidArgumentError, match="device"):
        symadj.odeint(lambda t, y: -y, torch.ones(1), meta_t)
