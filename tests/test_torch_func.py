"""torch.func transforms: backprop runs under grad/jacrev; the other modes and vmap are
refused with errors that say what to use."""

from __future__ import annotations

import pytest

import symadj
from symadj import GradientNotSupportedError, InvalidArgumentError

torch = pytest.importorskip("torch")
from torch.func import grad, jacrev, vjp, vmap  # noqa: E402

T = torch.linspace(0.0, 1.0, 4, dtype=torch.float64)
MATRIX = torch.tensor([[-0.5, 1.0], [-1.0, -0.2]], dtype=torch.float64)


def field(t, y):
    return y @ MATRIX.T + 0.1 * torch.sin(y)


def outputs(y0, mode="backprop"):
    return symadj.odeint(field, y0, T, gradient=mode, rtol=1e-10, atol=1e-10)


def loss(y0, mode="backprop"):
    return outputs(y0, mode).square().sum()


def test_backprop_under_grad_vjp_and_jacrev_equals_autograd():
    y0 = torch.tensor([1.0, -0.5], dtype=torch.float64)
    reference_input = y0.clone().requires_grad_(True)
    loss(reference_input, "symplectic").backward()
    assert torch.allclose(grad(loss)(y0), reference_input.grad, rtol=1e-10, atol=0)
    _, pullback = vjp(outputs, y0)
    (pulled,) = pullback(2 * outputs(y0))
    assert torch.allclose(pulled, reference_input.grad, rtol=1e-10, atol=0)
    jacobian = jacrev(lambda y: outputs(y)[-1])(y0)
    expected = torch.autograd.functional.jacobian(lambda y: outputs(y)[-1], y0)
    assert torch.allclose(jacobian, expected, rtol=1e-10, atol=0)


@pytest.mark.parametrize("mode", ["symplectic", "checkpoint", "adjoint"])
@pytest.mark.parametrize("transform", ["grad", "jacrev"])
def test_other_modes_under_torch_func_say_what_to_use(mode, transform):
    y0 = torch.tensor([1.0, -0.5], dtype=torch.float64)
    run = grad(lambda y: loss(y, mode)) if transform == "grad" else jacrev(lambda y: outputs(y, mode)[-1])
    with pytest.raises(GradientNotSupportedError, match=r"torch\.func transforms .* loss\.backward\(\) or "
                       r"torch\.autograd\.grad .* gradient='backprop'"):
        run(y0)


@pytest.mark.parametrize("mode", ["symplectic", "backprop"])
def test_vmap_points_to_batching_along_the_state(mode):
    with pytest.raises(InvalidArgumentError, match=r"y0 is batched by torch\.func\.vmap.*y0_batch of shape \(batch, "):
        vmap(lambda y: loss(y, mode))(torch.ones(3, 2, dtype=torch.float64))
    # What it points to: the batch as the state's leading axis.
    batched = symadj.odeint(field, torch.ones(3, 2, dtype=torch.float64), T)
    assert batched.shape == (4, 3, 2)


def test_nothing_is_left_behind_after_a_refusal():
    y0 = torch.tensor([1.0, -0.5], dtype=torch.float64, requires_grad=True)
    with pytest.raises(GradientNotSupportedError):
        grad(lambda y: loss(y, "symplectic"))(y0.detach())
    loss(y0).backward()
    assert torch.is_grad_enabled() and y0.grad is not None
