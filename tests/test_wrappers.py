"""Model wrappers: symadj.torch.NeuralODE (an nn.Module) and symadj.equinox.NeuralODE."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest

import symadj


def test_import_symadj_imports_no_wrapper_and_no_array_library():
    code = ("import sys, symadj; loaded = {'torch', 'jax', 'equinox', 'symadj.torch', 'symadj.equinox'} "
            "& set(sys.modules); assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True)


# -- PyTorch -------------------------------------------------------------------------


def _torch_model(**kwargs):
    torch = pytest.importorskip("torch")
    import symadj.torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)).double()
    return torch, symadj.torch.NeuralODE(net, torch.linspace(0.0, 1.0, 6, dtype=torch.float64), **kwargs)


def test_torch_module_solves_like_odeint_and_exposes_the_field_parameters():
    torch, model = _torch_model(rtol=1e-8, atol=1e-10)
    y0 = torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert [p for _, p in model.named_parameters()] == list(model.field.parameters())
    ys = model(y0)
    want = symadj.odeint(lambda t, y: model.field(y), y0, model.t, rtol=1e-8, atol=1e-10, gradient="backprop")
    torch.testing.assert_close(ys, want, rtol=1e-13, atol=1e-13)
    got = torch.autograd.grad(ys.pow(2).sum(), list(model.parameters()))
    expected = torch.autograd.grad(want.pow(2).sum(), list(model.parameters()))
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)
    assert model.solve(y0).stats.n_accepted > 0
    assert "gradient='auto'" in repr(model)


def test_torch_module_trains_and_round_trips_its_state_dict():
    torch, model = _torch_model(gradient="checkpoint")
    y0 = torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    target = torch.zeros(6, 8, 2, dtype=torch.float64)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(3):
        optimiser.zero_grad()
        loss = (model(y0) - target).pow(2).mean()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    assert losses[2] < losses[0]
    _, fresh = _torch_model(gradient="checkpoint")
    fresh.load_state_dict(model.state_dict())
    torch.testing.assert_close(fresh(y0), model(y0), rtol=0, atol=0)
    fresh.t = torch.linspace(0.0, 2.0, 3, dtype=torch.float64)
    assert fresh(y0).shape == (3, 8, 2) and model(y0, torch.tensor([0.0, 0.5])).shape == (2, 8, 2)


def test_torch_module_moves_with_to_and_takes_time_dependent_fields_and_events():
    torch = pytest.importorskip("torch")
    import symadj.torch

    class Decay(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rate = torch.nn.Parameter(torch.tensor(1.0))

        def forward(self, t, y):
            return -self.rate * y * (1 + 0 * t)

    model = symadj.torch.NeuralODE(Decay(), [0.0, 1.0, 2.0], event=lambda t, y: y[0] - 0.5).to(torch.float64)
    assert model.t.dtype == torch.float64 and model.field.rate.dtype == torch.float64
    sol = model.solve(torch.ones(1, dtype=torch.float64))
    assert abs(sol.event.t.item() - 0.6931471805599453) < 1e-6
    (grad,) = torch.autograd.grad(sol.event.t, [model.field.rate])
    assert abs(float(grad) + 0.6931471805599453) < 1e-6  # tau = ln 2 / rate


@pytest.mark.slow  # torch.compile: a few seconds of Dynamo
def test_torch_compile_of_a_model_around_the_module():
    torch, model = _torch_model()
    head = torch.nn.Linear(2, 1).double()
    y0 = torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))

    def loss_of(y0):
        return head(model(y0)[-1]).pow(2).sum()

    params = [*model.parameters(), *head.parameters()]
    want = torch.autograd.grad(loss_of(y0), params)
    compiled = torch.compile(loss_of, backend="eager")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", symadj.SymadjWarning)
        got = torch.autograd.grad(compiled(y0), params)
    for g, e in zip(got, want):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=0)


# -- Equinox -------------------------------------------------------------------------


@pytest.mark.slow
def test_equinox_module_gradients_equal_a_direct_solve():
    jax = pytest.importorskip("jax")
    eqx = pytest.importorskip("equinox")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    import symadj.equinox

    mlp = eqx.nn.MLP(2, 2, width_size=8, depth=1, key=jax.random.PRNGKey(0))
    model = symadj.equinox.NeuralODE(mlp, jnp.linspace(0.0, 1.0, 5))
    y0 = jnp.array([1.0, -0.5])

    @eqx.filter_jit
    @eqx.filter_grad
    def grad(model):
        return jnp.sum(model(y0) ** 2)

    def direct(mlp):
        ys = symadj.odeint(lambda t, y, mlp: mlp(y), y0, jnp.linspace(0.0, 1.0, 5), args=mlp, gradient="backprop")
        return jnp.sum(ys**2)

    got = grad(model)
    want = eqx.filter_grad(direct)(mlp)
    for g, w in zip(jax.tree_util.tree_leaves(got.field), jax.tree_util.tree_leaves(want)):
        assert float(jnp.max(jnp.abs(g - w))) <= 1e-10 * max(1.0, float(jnp.max(jnp.abs(w))))
    assert got.t.shape == (5,)  # the output times are differentiable leaves too
    timed = symadj.equinox.NeuralODE(lambda t, y: -y * (1 + t), jnp.array([0.0, 1.0]), gradient="backprop")
    assert abs(float(timed(jnp.ones(1))[-1, 0]) - float(jnp.exp(-1.5))) < 1e-6
