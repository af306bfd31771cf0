"""Issue 19: what a torchdiffeq user meets on switching the import (torch; JAX where it applies).

Gradients are compared with ``gradient="backprop"`` (autodiff through the same discrete
solve) in float64, to 1e-10 relative; the continuous adjoint, which is not exact, with a
reference computed another way.
"""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
import symadj  # noqa: E402

F64 = torch.float64
EXACT = ("symplectic", "checkpoint")
FAST = {"method": "dopri5", "rtol": 1e-6, "atol": 1e-8}


def _relative(got, want):
    return max(float((g - w).norm() / w.norm()) for g, w in zip(got, want))


def _models():
    gen = torch.Generator().manual_seed(0)
    enc = torch.nn.Linear(3, 2).double()
    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).double()
    with torch.no_grad():
        for p in [*enc.parameters(), *net.parameters()]:
            p.copy_(0.5 * torch.randn(p.shape, dtype=F64, generator=gen))
    x = torch.randn(4, 3, dtype=F64, generator=gen)
    y0 = torch.randn(4, 2, dtype=F64, generator=gen)
    return enc, net, x, y0


TS = torch.tensor([0.0, 0.4, 1.0], dtype=F64)


def _conditioned_gradients(mode, how):
    """Gradients of every weight of ``enc`` → z → ODE(net, z), with z handed over as ``how`` says."""
    enc, net, x, y0 = _models()
    z = enc(x)
    if how == "args":
        ys = symadj.odeint(lambda t, y, z: net(y) * z + torch.cos(t), y0, TS, args=z, gradient=mode, **FAST)
    else:
        listed = {"adjoint_params": (*net.parameters(), z)} if how == "adjoint_params" else {}
        ys = symadj.odeint(lambda t, y: net(y) * z + torch.cos(t), y0, TS, gradient=mode, **listed, **FAST)
    params = [*enc.parameters(), *net.parameters()]
    return torch.autograd.grad((ys ** 2).sum(), params)


# -- 1. a listed non-leaf tensor (and 6. a captured one) ------------------------------------------


@pytest.mark.parametrize("how", ["adjoint_params", "args", "closure"])
@pytest.mark.parametrize("mode", EXACT)
def test_non_leaf_tensor_sends_its_gradient_into_the_encoder(mode, how):
    assert _relative(_conditioned_gradients(mode, how), _conditioned_gradients("backprop", "closure")) < 1e-10


@pytest.mark.parametrize("how", ["adjoint_params", "closure"])
def test_non_leaf_tensor_in_adjoint_mode_is_chained_into_the_encoder(how):
    # The continuous adjoint's gradient for z, chained through enc by hand, is what reaches enc.
    got = _conditioned_gradients("adjoint", how)
    enc, net, x, y0 = _models()
    z = enc(x)
    leaf = z.detach().requires_grad_(True)
    ys = symadj.odeint(lambda t, y: net(y) * leaf + torch.cos(t), y0, TS, gradient="adjoint", **FAST)
    z_bar, *net_bars = torch.autograd.grad((ys ** 2).sum(), [leaf, *net.parameters()])
    chained = torch.autograd.grad(z, list(enc.parameters()), z_bar)
    assert _relative(got, [*chained, *net_bars]) < 1e-10
    assert _relative(got, _conditioned_gradients("backprop", "closure")) < 1e-4


# -- 2. the continuous adjoint with parameters of another dtype -------------------------------------


@pytest.mark.parametrize(("state", "param"), [(torch.float32, F64), (F64, torch.float32)])
def test_adjoint_with_parameters_in_another_dtype(state, param):
    rate = torch.tensor([0.7, 1.3], dtype=param, requires_grad=True)
    y0 = torch.tensor([1.0, 2.0], dtype=state, requires_grad=True)

    def func(t, y):
        return (-rate * y.to(param) * (1 + t.to(param))).to(state)

    def grads(mode):
        ys = symadj.odeint(func, y0, TS.to(state), gradient=mode, adjoint_params=[rate], **FAST)
        return torch.autograd.grad(ys.sum(), [y0, rate])

    got, reference = grads("adjoint"), grads("backprop")
    assert [g.dtype for g in got] == [state, param]
    assert _relative([g.double() for g in got], [r.double() for r in reference]) < 1e-5


def test_adjoint_with_a_float32_buffer_parameter_and_a_float64_state():
    enc, net, _, y0 = _models()
    scale = torch.tensor(0.8, dtype=torch.float32, requires_grad=True)

    def grads(mode):
        ys = symadj.odeint(lambda t, y: net(y) * scale.double(), y0, TS, gradient=mode,
                           adjoint_params=[*net.parameters(), scale], rtol=1e-10, atol=1e-10)
        return torch.autograd.grad((ys ** 2).sum(), [scale, *net.parameters()])

    got = grads("adjoint")
    assert got[0].dtype == torch.float32
    assert _relative([g.double() for g in got], [g.double() for g in grads("backprop")]) < 1e-6


# -- 3. a failing backward solve raises --------------------------------------------------------------


class _ScaledGradient(torch.autograd.Function):
    """The identity, whose derivative is ``factor``: the forward solve is untouched, the adjoint is not."""

    @staticmethod
    def forward(ctx, y, factor):
        ctx.factor = factor
        return y.clone()

    @staticmethod
    def backward(ctx, cotangent):
        return cotangent * ctx.factor, None


def _nan_adjoint_before(t, y):
    # A NaN derivative from the start of a segment is reported by the engine as max_steps at
    # its start (the first step size is NaN); from partway it is non-finite, as here.
    return -(_ScaledGradient.apply(y, float("nan")) if t < 0.7 else y)


@pytest.mark.parametrize(("func", "mode", "error", "message"), [
    (lambda t, y: -y * (1 + 3 * t), symadj.ContinuousAdjoint(options={"max_steps": 3}), symadj.MaxStepsError,
     r"backward \(adjoint\) solve of gradient='adjoint', from t=1 back to t=0\.4, stopped at t=.*"
     r"max_steps=3 step attempts were not enough \(set by adjoint_options\); raise it with "
     r"adjoint_options=\{'max_steps': 6\}"),
    (lambda t, y: -_ScaledGradient.apply(y, 1e4),
     symadj.ContinuousAdjoint(options={"first_step": 0.3, "min_step": 0.1}),
     symadj.StepSizeUnderflowError, r"backward \(adjoint\) solve .* fell below min_step=0\.1.*adjoint_options"),
    (_nan_adjoint_before, "adjoint", symadj.NonFiniteError,
     r"backward \(adjoint\) solve .*from t=1 back to t=0\.4, stopped at t=0\.7.*became NaN or infinite"),
])
def test_failing_adjoint_backward_solve_raises(func, mode, error, message):
    y0 = torch.tensor([1.0, 2.0], dtype=F64, requires_grad=True)
    ys = symadj.odeint(func, y0, TS, gradient=mode)
    assert torch.all(torch.isfinite(ys))
    with pytest.raises(error, match=message):
        ys.sum().backward()
    assert y0.grad is None


def test_failing_adjoint_backward_solve_raises_under_jax_jit():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    mode = symadj.ContinuousAdjoint(options={"max_steps": 3})

    def loss(y0):
        return jnp.sum(symadj.odeint(lambda t, y: -y * (1 + 3 * t), y0, jnp.array([0.0, 0.4, 1.0]), gradient=mode))

    with pytest.raises(Exception, match=r"MaxStepsError: the backward \(adjoint\) solve .*max_steps=3"):
        jax.block_until_ready(jax.jit(jax.grad(loss))(jnp.ones(2)))


# -- 4. func sees t in the state's dtype -------------------------------------------------------------


@pytest.mark.parametrize("mode", ["symplectic", "checkpoint", "backprop", "adjoint"])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_func_sees_t_in_the_state_dtype(dtype, mode):
    seen = set()
    rate = torch.tensor(0.5, dtype=dtype, requires_grad=True)

    def func(t, y):
        seen.add((t.dtype, t.shape))
        return -rate * y * t

    y0 = torch.ones(2, dtype=dtype, requires_grad=True)
    symadj.odeint(func, y0, [0.0, 0.5, 1.0], gradient=mode, adjoint_params=[rate]).sum().backward()
    assert seen == {(dtype, torch.Size([]))}


# -- 5. t that requires grad -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [*EXACT, "backprop", "adjoint"])
def test_t_requiring_grad_is_fine_without_gradients(mode):
    ts = TS.clone().requires_grad_(True)
    with torch.no_grad():
        ys = symadj.odeint(lambda t, y: -y, torch.ones(2, dtype=F64), ts, gradient=mode)
    assert torch.allclose(ys[-1], torch.exp(-TS[-1]).expand(2), rtol=1e-6)


@pytest.mark.parametrize("mode", [*EXACT, "backprop"])
def test_t_requiring_grad_changes_nothing_but_gives_its_gradient(mode):
    _, net, _, y0 = _models()
    y0 = y0.clone().requires_grad_(True)
    params = [y0, *net.parameters()]

    def grads(ts):
        ys = symadj.odeint(lambda t, y: net(y) * torch.cos(t), y0, ts, gradient=mode, **FAST)
        return ys, torch.autograd.grad((ys ** 2).sum(), params)

    ys, got = grads(TS.clone().requires_grad_(True))
    reference_ys, reference = grads(TS)
    assert torch.equal(ys, reference_ys)
    assert _relative(got, reference) < 1e-14
    ts = TS.clone().requires_grad_(True)
    symadj.odeint(lambda t, y: net(y), y0, ts, gradient=mode, **FAST).sum().backward()
    assert ts.grad is not None and bool(torch.all(ts.grad != 0))


@pytest.mark.parametrize("mode", ["symplectic", "checkpoint", "backprop", "adjoint"])
def test_every_mode_gives_time_gradients(mode):
    ts = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float32, requires_grad=True)
    ys = symadj.odeint(lambda t, y: -y, torch.ones(1, dtype=torch.float32), ts, gradient=mode,
                       rtol=1e-8, atol=1e-8)
    ys.sum().backward()
    # L = Σ_k y(t_k), y = exp(-(t - t_0)): dL/dt_k = -y(t_k) for k ≥ 1, dL/dt_0 = their opposite sum.
    later = -torch.exp(-ts.detach()[1:])
    assert ts.grad.dtype == torch.float32
    assert torch.allclose(ts.grad, torch.cat([-later.sum(0, keepdim=True), later]), rtol=1e-5)


# -- 6. closures ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", EXACT)
def test_closure_over_a_module_is_exact(mode):
    _, net, _, y0 = _models()
    y0 = y0.clone().requires_grad_(True)
    params = [y0, *net.parameters()]

    def grads(mode):
        ys = symadj.odeint(lambda t, y: net(y), y0, TS, gradient=mode, **FAST)
        return torch.autograd.grad((ys ** 2).sum(), params)

    assert _relative(grads(mode), grads("backprop")) < 1e-10


@pytest.mark.parametrize("mode", [*EXACT, "adjoint"])
def test_module_with_a_conditioning_attribute_and_a_captured_leaf(mode):
    enc, net, x, y0 = _models()
    gain = torch.tensor(1.3, dtype=F64, requires_grad=True)

    class Conditioned(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net, self.z = net, None

        def forward(self, t, y):
            return self.net(y) * self.z * gain

    func = Conditioned()
    params = [gain, *enc.parameters(), *net.parameters()]

    def grads(mode):
        func.z = enc(x)
        ys = symadj.odeint(func, y0, TS, gradient=mode, **FAST)
        return torch.autograd.grad((ys ** 2).sum(), params)

    assert _relative(grads(mode), grads("backprop")) < (1e-4 if mode == "adjoint" else 1e-10)


def test_adjoint_params_win_and_what_they_leave_out_is_refused():
    enc, net, x, y0 = _models()
    z = enc(x)
    with pytest.raises(symadj.InvalidArgumentError,
                       match=r"not in adjoint_params \(shape \(8, 2\) \(a leaf\), shape \(8,\) \(a leaf\)\)"
                             r".*Add them to adjoint_params"):
        symadj.odeint(lambda t, y: net(y), y0, TS, adjoint_params=list(net[2].parameters()), gradient="symplectic")
    with pytest.raises(symadj.InvalidArgumentError,
                       match=r"not in adjoint_params \(shape \(\d+, 2\) \(made by AddmmBackward0\)\)"):
        symadj.odeint(lambda t, y: net(y) * z, y0, TS, adjoint_params=list(net.parameters()), gradient="symplectic")


def test_captured_tensor_that_cannot_be_found_is_refused_with_the_fix():
    # A TorchScript function takes z past Python, where the probe cannot see it.
    enc, net, x, y0 = _models()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            scaled = torch.jit.script(_scaled)
        except Exception as exc:  # TorchScript gone from a future torch
            pytest.skip(f"torch.jit.script unavailable: {exc}")
    z = enc(x)
    fix = r"adjoint_params=\(\*net\.parameters\(\), z\)"
    for mode in ("symplectic", "checkpoint", "adjoint"):
        # The forward solve cannot see the use; the backward pass's graph shows it.
        ys = symadj.odeint(lambda t, y: scaled(net(y), z), y0, TS, gradient=mode)
        with pytest.raises(symadj.InvalidArgumentError, match=rf"did not see it read .*made by AddmmBackward0.*{fix}"):
            ys.sum().backward()

    def encoder_gradients(run, mode):
        z = enc(x)
        ys = symadj.odeint(lambda t, y: run(net(y), z), y0, TS, gradient=mode,
                           adjoint_params=(*net.parameters(), z), **FAST)
        return torch.autograd.grad(ys.sum(), list(enc.parameters()))

    assert _relative(encoder_gradients(scaled, "symplectic"), encoder_gradients(_scaled, "backprop")) < 1e-10


def _scaled(y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return y * z


@pytest.mark.parametrize("mode", [*EXACT, "backprop", "adjoint"])
def test_parameter_probe_is_the_first_evaluation_so_counters_see_none_extra(mode):
    _, net, _, y0 = _models()
    calls = []

    def func(t, y):
        calls.append(torch.is_grad_enabled())
        return net(y)

    sol = symadj.solve(func, y0, TS, gradient=mode, **FAST)
    assert len(calls) == int(sol.stats.n_fevals)
    calls.clear()
    with torch.no_grad():
        sol = symadj.solve(func, y0, TS, gradient=mode, **FAST)
    assert len(calls) == int(sol.stats.n_fevals)
