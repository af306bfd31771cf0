"""Complex states: every gradient mode against backprop, backprop against a plain RK4 loop and
finite differences, each library's complex-gradient convention, magnitudes in the error norm,
events, the torchdiffeq wrapper, and the dtype errors; torch first, then JAX."""

from __future__ import annotations

import numpy as np
import pytest

import symadj
from symadj._stepsize import error_norm

torch = pytest.importorskip("torch")

RNG = np.random.default_rng(16)
_H = RNG.normal(size=(3, 3))
H0 = (_H + _H.T) / 2  # a real symmetric "Hamiltonian", a real parameter
C0 = 0.3 + 0.2j  # a complex parameter: damping and a frequency shift of the cubic term
Y0 = RNG.normal(size=3) + 1j * RNG.normal(size=3)
TIMES = np.linspace(0.0, 2.0, 6)  # outputs inside steps: interpolated (dense) for most schemes
W_RE, W_IM, W_ABS = (RNG.normal(size=(6, 3)) for _ in range(3))
STEP = 0.1  # fixed-step solves: 20 steps
METHODS = {  # dopri5: FSAL with a zero weight; bosh3: FSAL; rk4: fixed step
    "dopri5": {"rtol": 1e-9, "atol": 1e-11},
    "bosh3": {"rtol": 1e-7, "atol": 1e-9},
    "rk4": {"options": {"step_size": STEP}},
    "euler": {"options": {"step_size": STEP}},
}
EVENT_LEVEL = -0.5  # g = Re y_0 + Im y_0 / 2 − level rises from −0.3, falls through zero near t = 1.25


def relative(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# -- torch ----------------------------------------------------------------------------


def torch_field(h, c):
    def f(t, y):
        assert not torch.is_complex(t) and t.dtype == y.real.dtype  # times stay real
        size = y.real ** 2 + y.imag ** 2  # not holomorphic: a real function of z and conj(z)
        return -1j * (h.to(y.dtype) @ y) - c * y * size * torch.cos(t)

    return f


def torch_loss(ys):
    w_re, w_im, w_abs = (torch.as_tensor(w) for w in (W_RE, W_IM, W_ABS))
    return (w_re * ys.real + w_im * ys.imag + w_abs * (ys.real ** 2 + ys.imag ** 2)).sum()


def torch_inputs(dtype=torch.complex128):
    real = torch.float64 if dtype == torch.complex128 else torch.float32
    return (torch.tensor(Y0, dtype=dtype, requires_grad=True), torch.tensor(H0, dtype=real, requires_grad=True),
            torch.tensor(C0, dtype=dtype, requires_grad=True), torch.tensor(TIMES, dtype=real, requires_grad=True))


def torch_gradients(method, mode, dtype=torch.complex128):
    """The loss and its gradients with respect to y0, H, c and t."""
    y0, h, c, t = torch_inputs(dtype)
    ys = symadj.odeint(torch_field(h, c), y0, t, method=method, gradient=mode, **METHODS[method])
    assert ys.dtype == dtype
    loss = torch_loss(ys)
    return loss.detach(), [g.detach() for g in torch.autograd.grad(loss, (y0, h, c, t))]


@pytest.fixture(scope="module")
def torch_backprop():
    return {method: torch_gradients(method, "backprop") for method in METHODS}


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("mode", ["symplectic", "checkpoint"])
def test_torch_exact_modes_match_backprop(torch_backprop, method, mode):
    loss, grads = torch_gradients(method, mode)
    reference_loss, reference = torch_backprop[method]
    assert float(loss) == pytest.approx(float(reference_loss), rel=1e-13)
    for name, g, r in zip(("y0", "H", "c", "t"), grads, reference):
        assert g.dtype == r.dtype
        assert relative(g, r) <= 1e-10, (method, mode, name, relative(g, r))


def test_torch_continuous_adjoint_is_close_to_backprop(torch_backprop):
    _, grads = torch_gradients("dopri5", "adjoint")
    for name, g, r in zip(("y0", "H", "c", "t"), grads, torch_backprop["dopri5"][1]):
        assert relative(g, r) <= 1e-5, (name, relative(g, r))


def plain_rk4(f, y0, n_steps, h):
    """The classic RK4 loop, written here without symadj; every step's state."""
    ys, y, t = [y0], y0, torch.zeros((), dtype=torch.float64)
    for _ in range(n_steps):
        k1 = f(t, y)
        k2 = f(t + h / 2, y + h / 2 * k1)
        k3 = f(t + h / 2, y + h / 2 * k2)
        k4 = f(t + h, y + h * k3)
        y, t = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4), t + h
        ys.append(y)
    return torch.stack(ys)


def test_torch_backprop_matches_a_plain_rk4_loop():
    y0, h, c, _ = torch_inputs()
    f = torch_field(h, c)
    ys = symadj.odeint(f, y0, torch.tensor(TIMES), method="rk4", gradient="backprop", **METHODS["rk4"])
    every = round((TIMES[1] - TIMES[0]) / STEP)
    reference = plain_rk4(f, y0, round(TIMES[-1] / STEP), STEP)[::every]
    assert relative(ys.detach(), reference.detach()) <= 1e-13
    grads = torch.autograd.grad(torch_loss(ys), (y0, h, c))
    expected = torch.autograd.grad(torch_loss(reference), (y0, h, c))
    for name, g, r in zip(("y0", "H", "c"), grads, expected):
        assert relative(g, r) <= 1e-12, (name, relative(g, r))


def central_differences(loss, x, eps):
    """dL/dRe(x_i) + i dL/dIm(x_i) (the imaginary part only for complex x), entry by entry."""
    x = np.asarray(x)
    grad = np.zeros(x.shape, dtype=x.dtype)
    for index in np.ndindex(x.shape):
        parts = (1.0, 1j) if np.iscomplexobj(x) else (1.0,)
        for unit in parts:
            step = np.zeros(x.shape, dtype=x.dtype)
            step[index] = eps * unit
            grad[index] += unit * (loss(x + step) - loss(x - step)) / (2 * eps)
    return grad


def torch_loss_of(method, mode, y0=Y0, h=H0, c=C0, times=TIMES):
    with torch.no_grad():
        field = torch_field(torch.tensor(h, dtype=torch.float64), torch.tensor(c, dtype=torch.complex128))
        ys = symadj.odeint(field, torch.tensor(y0, dtype=torch.complex128), torch.tensor(times),
                           method=method, gradient=mode, **METHODS[method])
        return float(torch_loss(ys))


def test_torch_gradients_match_finite_differences():
    """torch's convention: the gradient of a real loss with respect to z = x + iy is
    dL/dx + i dL/dy, here for the fixed-step discrete solve, whose finite differences are exact
    up to rounding; the output times against an accurate adaptive solve."""
    _, (gy, gh, gc, _) = torch_gradients("rk4", "symplectic")
    assert relative(gy, central_differences(lambda y: torch_loss_of("rk4", "symplectic", y0=y), Y0, 1e-6)) <= 1e-8
    assert relative(gh, central_differences(lambda h: torch_loss_of("rk4", "symplectic", h=h), H0, 1e-6)) <= 1e-8
    assert relative(gc, central_differences(lambda c: torch_loss_of("rk4", "symplectic", c=c), np.asarray(C0),
                                            1e-6)) <= 1e-8
    _, grads = torch_gradients("dopri5", "symplectic")
    expected = central_differences(lambda t: torch_loss_of("dopri5", "symplectic", times=t), TIMES, 1e-4)
    assert relative(grads[3], expected) <= 1e-5


def torch_event_gradients(mode, method="dopri5"):
    y0, h, c, t = torch_inputs()
    # A real function of the state that depends on its imaginary part: its gradient is complex.
    sol = symadj.solve(torch_field(h, c), y0, t, method=method, gradient=mode,
                       event=symadj.Event(lambda t, y: y[0].real + 0.5 * y[0].imag - EVENT_LEVEL, direction=-1),
                       **METHODS[method])
    assert bool(sol.event.fired)
    loss = torch_loss(sol.ys) + 3 * sol.event.t + (sol.event.y.abs() ** 2).sum()
    return [g.detach() for g in torch.autograd.grad(loss, (y0, h, c, t))]


@pytest.mark.parametrize("mode", ["symplectic", "checkpoint", "adjoint"])
def test_torch_event_gradients_match_backprop(mode):
    reference = torch_event_gradients("backprop")
    bound = 1e-5 if mode == "adjoint" else 1e-10
    for name, g, r in zip(("y0", "H", "c", "t"), torch_event_gradients(mode), reference):
        assert relative(g, r) <= bound, (mode, name, relative(g, r))


def test_torch_event_gradient_matches_finite_differences():
    y0 = torch_inputs()[0]
    event = symadj.Event(lambda t, y: y[0].real + 0.5 * y[0].imag - EVENT_LEVEL, direction=-1)

    def solve(y0):
        field = torch_field(torch.tensor(H0), torch.tensor(C0, dtype=torch.complex128))
        return symadj.solve(field, y0, torch.tensor(TIMES), method="rk4",
                            event=event, **METHODS["rk4"])

    sol = solve(y0)
    (grad,) = torch.autograd.grad(sol.event.t + (sol.event.y.abs() ** 2).sum(), y0)

    def loss(y):
        with torch.no_grad():
            sol = solve(torch.tensor(y))
            return float(sol.event.t + (sol.event.y.abs() ** 2).sum())

    assert relative(grad, central_differences(loss, Y0, 1e-6)) <= 1e-7


@pytest.mark.parametrize("mode", ["backprop", "symplectic", "checkpoint", "adjoint"])
def test_torch_complex64(mode):
    _, grads = torch_gradients("dopri5", mode, dtype=torch.complex64)
    _, reference = torch_gradients("dopri5", "backprop")
    for g, r in zip(grads, reference):
        assert relative(g.to(r.dtype), r) <= 1e-5  # measured about 1e-6


@pytest.mark.parametrize("checkpoints", ["revolve:3", "stages", "offload"])
def test_torch_checkpoint_policies(checkpoints, torch_backprop):
    y0, h, c, t = torch_inputs()
    ys = symadj.odeint(torch_field(h, c), y0, t, gradient=symadj.Symplectic(checkpoints=checkpoints),
                       **METHODS["dopri5"])
    grads = torch.autograd.grad(torch_loss(ys), (y0, h, c, t))
    for g, r in zip(grads, torch_backprop["dopri5"][1]):
        assert relative(g, r) <= 1e-10


def test_checkpoint_bytes_count_both_parts():
    """A complex entry holds two real numbers: 3 complex128 entries take what 6 float64 do."""
    def stored(y0):
        return int(symadj.solve(lambda t, y: -y, y0, [0.0, 1.0], method="rk4", options={"step_size": 0.1},
                                checkpoints="all").stats.checkpoint_bytes)

    assert stored(torch.ones(3, dtype=torch.complex128)) == stored(torch.ones(6, dtype=torch.float64)) > 0


def test_error_norm_measures_magnitudes():
    xp = symadj.get_backend("torch").namespace()
    error = torch.tensor([3 + 4j, 0j])  # squares would give (-7 + 24j) / 2
    assert float(error_norm(xp, error, "rms")) == pytest.approx(5 / 2 ** 0.5)
    assert float(error_norm(xp, error, "max")) == pytest.approx(5.0)
    assert float(error_norm(xp, error, lambda e: (e * e).sum())) == pytest.approx(25.0)  # |-7 + 24j|


def test_rotation_keeps_its_accuracy():
    """y' = iωy: a pure rotation, whose real and imaginary parts pass through zero; the
    magnitude-based error control holds the error at the tolerance."""
    omega, y0 = 7.0, torch.tensor([1.0 + 0.5j, -0.2j], dtype=torch.complex128)
    t = torch.linspace(0.0, 3.0, 31, dtype=torch.float64)
    sol = symadj.solve(lambda t, y: 1j * omega * y, y0, t, rtol=1e-8, atol=1e-10)
    exact = y0 * torch.exp(1j * omega * t)[:, None]
    assert float((sol.ys - exact).abs().max()) < 1e-6
    assert int(sol.stats.status) == int(symadj.Status.SUCCESS)


def test_numpy_forward_solve():
    ys = symadj.odeint(lambda t, y: 1j * y, Y0, TIMES, rtol=1e-10, atol=1e-12)
    assert ys.dtype == np.complex128
    assert relative(ys, np.exp(1j * TIMES)[:, None] * Y0) <= 1e-8


def test_state_and_time_dtypes_are_checked():
    y0, ts = torch.ones(2, dtype=torch.complex128), torch.tensor([0.0, 1.0])
    for bad in (torch.ones(2, dtype=torch.int64), torch.ones(2, dtype=torch.bool)):
        with pytest.raises(symadj.InvalidArgumentError, match="pass a real or complex floating dtype"):
            symadj.odeint(lambda t, y: y, bad, ts)
    with pytest.raises(symadj.InvalidArgumentError, match="cast the real ones to the complex dtype"):
        symadj.odeint(lambda t, y: y, (y0, torch.ones(2, dtype=torch.float64)), ts)
    with pytest.raises(symadj.InvalidArgumentError, match="cast them to a common floating dtype"):
        symadj.odeint(lambda t, y: y, (y0, torch.ones(2, dtype=torch.complex64)), ts)
    for times in (ts.to(torch.complex128), [0.0, 1j], np.array([0.0, 1.0], dtype=complex)):
        with pytest.raises(symadj.InvalidArgumentError, match="t holds complex numbers"):
            symadj.odeint(lambda t, y: y, y0, times)
    with pytest.raises(symadj.InvalidArgumentError, match="event function 0 returned dtype torch.complex128"):
        symadj.solve(lambda t, y: -y, y0, ts, event=lambda t, y: y[0] - 0.5)


def test_tuple_state_progress_and_callbacks(capsys):
    a0, b0 = torch.ones(2, dtype=torch.complex64), torch.ones(3, dtype=torch.complex64)
    seen = []

    def func(t, state):
        return 1j * state[0], -state[1] * t

    func.callback_accept_step = lambda t, y, h: seen.append((t.dtype, h.dtype))
    ys = symadj.odeint(func, (a0, b0), torch.linspace(0.0, 1.0, 4), progress=True)
    assert [y.dtype for y in ys] == [torch.complex64] * 2
    assert relative(ys[0][-1], torch.exp(torch.tensor(1j)) * a0) <= 1e-5
    assert seen and all(not dtype.is_complex for pair in seen for dtype in pair)
    assert "steps" in capsys.readouterr().err


def test_torchdiffeq_wrapper_takes_complex_states():
    from symadj.torchdiffeq import odeint, odeint_adjoint

    omega = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    y0 = torch.tensor([1.0 + 1.0j, 0.5j], dtype=torch.complex128, requires_grad=True)
    t = torch.linspace(0.0, 2.0, 5, dtype=torch.float64)

    class Rotation(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.omega = torch.nn.Parameter(omega.detach().clone())

        def forward(self, t, y):
            return -1j * self.omega * y

    exact = y0 * torch.exp(-1j * omega * t)[:, None]
    ys = odeint(lambda t, y: -1j * omega * y, y0, t, rtol=1e-9, atol=1e-11)
    assert float((ys - exact).abs().max().detach()) < 1e-7
    tupled = odeint(lambda t, s: (-1j * omega * s[0], -1j * omega * s[1]), (y0, 2 * y0), t, rtol=(1e-9, 1e-8),
                    atol=1e-11)
    assert float((tupled[1] - 2 * exact).abs().max().detach()) < 1e-6
    fixed = odeint(lambda t, y: -1j * omega * y, y0, t, method="rk4", options={"step_size": 0.01})
    assert float((fixed - exact).abs().max().detach()) < 1e-7
    func = Rotation()
    (exact.abs() ** 2 + exact.real).sum().backward()
    expected = y0.grad.clone(), omega.grad.clone()
    y0.grad = None
    ys = odeint_adjoint(func, y0, t, rtol=1e-10, atol=1e-12)
    (ys.abs() ** 2 + ys.real).sum().backward()
    assert relative(y0.grad, expected[0]) <= 1e-6
    assert relative(func.omega.grad, expected[1]) <= 1e-6


def test_torchdiffeq_event_with_a_complex_state():
    """y = y0 e^{it} from y0 = 1: Re y falls through zero at τ = π/2, and dτ/dRe(y0) = 0,
    dτ/dIm(y0) = −1 (from Re(y0) cos τ − Im(y0) sin τ = 0)."""
    from symadj.torchdiffeq import odeint_event

    y0 = torch.tensor([1.0 + 0.0j], dtype=torch.complex128, requires_grad=True)
    t0 = torch.tensor(0.0, dtype=torch.float64)
    event_t, states = odeint_event(lambda t, y: 1j * y, y0, t0, event_fn=lambda t, y: y[0].real)
    assert event_t.item() == pytest.approx(np.pi / 2, abs=1e-7)
    assert states[-1].real.abs().max().item() < 1e-7
    event_t.backward()
    assert complex(y0.grad[0]) == pytest.approx(-1j, abs=1e-7)
    with pytest.raises(symadj.InvalidArgumentError, match="event_fn returned dtype torch.complex128"):
        odeint_event(lambda t, y: 1j * y, y0, t0, event_fn=lambda t, y: y[0])


# -- JAX ------------------------------------------------------------------------------

# XLA's cheapest optimisation level: these tests compile a few solves, and it changes no result
# beyond rounding.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True,
                "xla_cpu_parallel_codegen_split_count": 1}


@pytest.fixture(scope="module")
def jax_modules():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    return jax, jnp


def jax_problem(jnp):
    def f(t, y, args):
        h, c = args
        assert not jnp.iscomplexobj(t) and t.dtype == y.real.dtype  # times stay real
        return -1j * (h @ y) - c * y * (y.real ** 2 + y.imag ** 2) * jnp.cos(t)

    def loss(ys):
        return jnp.sum(W_RE * ys.real + W_IM * ys.imag + W_ABS * (ys.real ** 2 + ys.imag ** 2))

    return f, loss


def jax_gradients(jax, jnp, method, modes, event=None):
    """One compilation: every mode's gradients with respect to (y0, (H, c), t), and the loss."""
    f, loss = jax_problem(jnp)

    def loss_of(mode):
        def value(y0, args, t):
            sol = symadj.solve(f, y0, t, args=args, method=method, gradient=mode, event=event, **METHODS[method])
            total = loss(sol.ys)
            if event is not None:
                total = total + 3 * sol.event.t + jnp.sum(jnp.abs(sol.event.y) ** 2)
            return total

        return value

    def all_modes(y0, args, t):
        return {mode: jax.value_and_grad(loss_of(mode), argnums=(0, 1, 2))(y0, args, t) for mode in modes}

    inputs = (jnp.asarray(Y0), (jnp.asarray(H0), jnp.asarray(C0)), jnp.asarray(TIMES))
    results = jax.jit(all_modes, compiler_options=FAST_COMPILE)(*inputs)
    return {mode: (float(value), jax.tree_util.tree_leaves(grads)) for mode, (value, grads) in results.items()}


@pytest.fixture(scope="module")
def jax_rk4(jax_modules):
    return jax_gradients(*jax_modules, "rk4", ("backprop", "symplectic", "checkpoint"))


@pytest.mark.parametrize("method", ["dopri5", pytest.param("bosh3", marks=pytest.mark.slow)])
def test_jax_modes_match_backprop_under_jit(jax_modules, method):
    results = jax_gradients(*jax_modules, method, ("backprop", "symplectic", "checkpoint", "adjoint"))
    reference_loss, reference = results["backprop"]
    for mode, (loss, grads) in results.items():
        bound = 1e-5 if mode == "adjoint" else 1e-10
        assert loss == pytest.approx(reference_loss, rel=1e-12)
        for name, g, r in zip(("y0", "H", "c", "t"), grads, reference):
            assert relative(g, r) <= bound, (mode, name, relative(g, r))


@pytest.mark.slow
def test_jax_fixed_step_modes_match_backprop(jax_rk4):
    reference = jax_rk4["backprop"][1]
    for mode in ("symplectic", "checkpoint"):
        for name, g, r in zip(("y0", "H", "c", "t"), jax_rk4[mode][1], reference):
            assert relative(g, r) <= 1e-10, (mode, name, relative(g, r))


def test_jax_gradients_are_the_conjugate_of_torchs(jax_rk4):
    """JAX's convention: the gradient of a real loss with respect to z = x + iy is
    dL/dx − i dL/dy, the conjugate of torch's; real parameters and times get the same numbers."""
    torch_loss_value, torch_grads = torch_gradients("rk4", "symplectic")
    loss, (gy, gh, gc, gt) = jax_rk4["symplectic"]
    assert loss == pytest.approx(float(torch_loss_value), rel=1e-13)
    assert relative(np.conj(np.asarray(gy)), torch_grads[0]) <= 1e-12
    assert relative(gh, torch_grads[1]) <= 1e-12
    assert relative(np.conj(np.asarray(gc)), torch_grads[2]) <= 1e-12
    assert relative(gt, torch_grads[3]) <= 1e-12


def test_jax_gradients_match_finite_differences(jax_modules, jax_rk4):
    jax, jnp = jax_modules
    f, loss = jax_problem(jnp)
    value = jax.jit(lambda y0, h, c: loss(symadj.odeint(f, y0, jnp.asarray(TIMES), args=(h, c), method="rk4",
                                                        gradient="symplectic", **METHODS["rk4"])))
    gy, gh, gc, _ = jax_rk4["symplectic"][1]
    differences = central_differences(lambda y: float(value(jnp.asarray(y), H0, C0)), Y0, 1e-6)
    assert relative(gy, np.conj(differences)) <= 1e-8
    assert relative(gh, central_differences(lambda h: float(value(Y0, jnp.asarray(h), C0)), H0, 1e-6)) <= 1e-8
    differences = central_differences(lambda c: float(value(Y0, H0, jnp.asarray(c))), np.asarray(C0), 1e-6)
    assert relative(gc, np.conj(differences)) <= 1e-8


@pytest.mark.slow
def test_jax_event_gradients_match_backprop(jax_modules):
    jax, jnp = jax_modules
    event = symadj.Event(lambda t, y, args: y[0].real + 0.5 * y[0].imag - EVENT_LEVEL, direction=-1)
    results = jax_gradients(jax, jnp, "dopri5", ("backprop", "symplectic", "checkpoint", "adjoint"), event=event)
    reference = results["backprop"][1]
    torch_reference = torch_event_gradients("backprop")
    assert relative(np.conj(np.asarray(reference[0])), torch_reference[0]) <= 1e-10
    for mode, (_, grads) in results.items():
        bound = 1e-5 if mode == "adjoint" else 1e-10
        for name, g, r in zip(("y0", "H", "c", "t"), grads, reference):
            assert relative(g, r) <= bound, (mode, name, relative(g, r))


def test_jax_complex64_pytree_and_dtype_errors(jax_modules):
    jax, jnp = jax_modules
    f, _ = jax_problem(jnp)
    args = (jnp.asarray(H0, dtype=jnp.float32), jnp.asarray(C0, dtype=jnp.complex64))
    def solve(y0, args):
        pair = symadj.odeint(lambda t, y, args: {"a": f(t, y["a"], args), "b": 1j * y["b"]},
                             {"a": y0, "b": y0[:2]}, jnp.asarray(TIMES), args=args)
        return symadj.odeint(f, y0, jnp.asarray(TIMES), args=args), pair

    y0 = jnp.asarray(Y0, dtype=jnp.complex64)
    ys, pair = jax.jit(solve, compiler_options=FAST_COMPILE)(y0, args)
    assert ys.dtype == pair["a"].dtype == pair["b"].dtype == jnp.complex64
    assert relative(pair["a"], ys) <= 1e-5
    assert relative(pair["b"][-1], np.exp(2j) * Y0[:2]) <= 1e-5
    with pytest.raises(symadj.InvalidArgumentError, match="cast the real ones to the complex dtype"):
        symadj.odeint(lambda t, y, a: y, {"z": jnp.ones(2, dtype=complex), "x": jnp.ones(2)}, jnp.asarray(TIMES),
                      args=())
    with pytest.raises(symadj.InvalidArgumentError, match="t holds complex numbers"):
        symadj.odeint(lambda t, y, a: y, jnp.ones(2, dtype=complex), jnp.asarray(TIMES, dtype=complex), args=())
