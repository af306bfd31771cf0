"""Compilers: torch.compile falls back to an eager solve with our warning; jax.jit with donated buffers."""

from __future__ import annotations

import warnings

import pytest

import symadj


def _torch_model():
    torch = pytest.importorskip("torch")

    class NeuralOde(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.field = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).double()

        def forward(self, y0):
            ts = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
            ys = symadj.odeint(lambda t, y: self.field(y), y0, ts, method="dopri5", rtol=1e-7, atol=1e-9,
                               adjoint_params=list(self.field.parameters()))
            return (ys[-1] ** 2).sum()

    return torch, NeuralOde()


def _loss_and_grads(model, loss_of, y0):
    model.zero_grad()
    loss = loss_of(y0)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def _check_compiled(backend):
    torch, model = _torch_model()
    torch.compiler.reset()
    y0 = torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    expected_loss, expected = _loss_and_grads(model, model, y0)
    compiled = torch.compile(model, backend=backend)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):  # the second call reuses what the first compiled
            loss, grads = _loss_and_grads(model, compiled, y0)
            assert torch.equal(loss, expected_loss)
            assert all(torch.allclose(g, e, rtol=1e-12, atol=0) for g, e in zip(grads, expected))
    ours = [w for w in caught if issubclass(w.category, symadj.SymadjWarning)]
    assert ours and "the ODE solve runs eagerly (a graph break)" in str(ours[0].message)
    assert "torch.compile(func)" in str(ours[0].message)


def test_torch_compile_falls_back_to_an_eager_solve_with_a_warning():
    """What happens: Dynamo cannot trace the step loop (its length depends on the state's
    values), so the torch backend keeps the loop, the gradient node and the parameter probe
    out of the graph; the model compiles around them and gives the same numbers."""
    _check_compiled("eager")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_torch_compile_with_a_compiling_backend(backend):
    _check_compiled(backend)


def test_compiled_vector_field_inside_an_eager_solve():
    torch, model = _torch_model()
    y0 = torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    ts = torch.tensor([0.0, 1.0], dtype=torch.float64)
    params = list(model.field.parameters())
    eager = symadj.odeint(lambda t, y: model.field(y), y0, ts, adjoint_params=params, options={"step_size": 0.25})
    field = torch.compile(model.field, backend="aot_eager")
    compiled = symadj.odeint(lambda t, y: field(y), y0, ts, adjoint_params=params, options={"step_size": 0.25})
    assert torch.allclose(compiled, eager, rtol=1e-12, atol=0)
    compiled[-1].sum().backward()
    assert all(p.grad is not None for p in params)


def test_jax_jit_with_donated_buffers():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    def field(t, y, params):
        return jnp.tanh(y @ params["w"]) @ params["v"]

    def loss(params, y0):
        ys = symadj.odeint(field, y0, jnp.array([0.0, 0.5, 1.0]), args=params, rtol=1e-8, atol=1e-8)
        return jnp.mean(ys[-1] ** 2)

    def sgd_step(params, y0):
        grads = jax.grad(loss)(params, y0)
        return jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads)

    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    params = {"w": 0.5 * jax.random.normal(keys[0], (2, 8)), "v": 0.3 * jax.random.normal(keys[1], (8, 2))}
    y0 = jax.random.normal(keys[2], (4, 2))
    fast = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
    plain = jax.jit(sgd_step, compiler_options=fast)
    step = jax.jit(sgd_step, donate_argnums=0, compiler_options=fast)
    donated = jax.tree_util.tree_map(jnp.copy, params)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "donated buffers were not usable" would be a warning
        updated = step(donated, y0)
        updated = step(updated, y0)  # a training loop: each step's result is donated to the next
    assert all(leaf.is_deleted() for leaf in jax.tree_util.tree_leaves(donated))
    again = plain(plain(params, y0), y0)
    for key in params:
        assert jnp.allclose(updated[key], again[key], rtol=1e-12, atol=0)
