"""gradient="reversible": the coupled scheme of McCallum & Foster against an independent
implementation of it, backpropagated through by torch autograd and jax.grad.

The reference below is written from the paper's formulas with its own Runge–Kutta stages
(every stage evaluated, zero weights included); it replays the steps the mode accepted (their
start times and sizes, read from the mode's record), so that adaptive solves compare the same
discrete solve. The mode must equal it: values to 1e-12, gradients to 1e-10, relative.
"""

from __future__ import annotations

import math

import pytest

import symadj
from symadj import _reversible

torch = pytest.importorskip("torch")

TS = [0.0, 0.3, 0.7, 1.2, 1.5]
LAMBDA = 0.999
USER = symadj.Tableau("reversible_test_heun3", c=["0", "1/3", "2/3"], a=[[], ["1/3"], ["0", "2/3"]],
                      b=["1/4", "0", "3/4"], order=3)
symadj.register_tableau(USER, replace=True)
CASES = [  # (method, coupling, solver keywords); a coupling far from 1 lets a wrong coupling term show
    ("rk4", LAMBDA, {"options": {"step_size": 0.1}}),
    ("dopri5", 0.9, {"options": {"step_size": 0.05}}),
    (USER.name, 0.5, {"options": {"step_size": 0.1}}),
    ("dopri5", LAMBDA, {"rtol": 1e-7, "atol": 1e-9}),
    ("bosh3", 0.9, {"rtol": 1e-6, "atol": 1e-8}),
]
IDS = [f"{m}-{lam}-{'fixed' if 'options' in k else 'adaptive'}" for m, lam, k in CASES]
# Compiling the JAX reference takes seconds a case: the default run keeps a fixed-step and an
# adaptive case, the slow run the rest.
JAX_CASES = [pytest.param(*case, id=ident, marks=() if ident in (IDS[2], IDS[3]) else pytest.mark.slow)
             for case, ident in zip(CASES, IDS)]


def coefficients(method):
    tab = symadj.get_tableau(method)
    return [[float(v) for v in row] for row in tab.a], [float(v) for v in tab.b], [float(v) for v in tab.c]


def reference_increment(f, method, t, h, x):
    """h Σ b_i k_i, every stage of the tableau evaluated."""
    a, b, c = coefficients(method)
    ks = []
    for i in range(len(b)):
        xi = x + h * sum(a[i][j] * ks[j] for j in range(i)) if i else x
        ks.append(f(t + c[i] * h, xi))
    return h * sum(bi * k for bi, k in zip(b, ks))


def reference_solve(f, method, y0, steps, ts, lam=LAMBDA):
    """The outputs of the reversible scheme over ``steps`` [(t_n, h_n)]: y at each step end on an output time."""
    y = z = y0
    outputs = [y0]
    for t, h in steps:
        y_new = lam * y + (1 - lam) * z + reference_increment(f, method, t, h, z)
        z = z - reference_increment(f, method, t + h, -h, y_new)
        y = y_new
        if any(abs(t + h - s) < 1e-6 for s in ts[len(outputs):len(outputs) + 1]):
            outputs.append(y)
    assert len(outputs) == len(ts)
    return outputs


@pytest.fixture
def recorded(monkeypatch):
    """The (t_n, h_n) of the accepted steps of the last forward solve of the mode."""
    steps = []
    run = _reversible._ForwardLoop.run

    def keep(times, sizes, n):
        steps.clear()
        steps.extend((float(times[i]), float(sizes[i])) for i in range(int(n)))

    def recording(self, y0):
        outputs, stats, record = run(self, y0)
        if type(y0).__module__.startswith("jax"):  # traced: read when the program runs
            import jax

            capacity = record.times.capacity
            jax.debug.callback(keep, record.times.stack(capacity), record.steps.stack(capacity), record.n_steps)
        else:
            n = int(record.n_steps)
            keep([record.times.read(i) for i in range(n)], [record.steps.read(i) for i in range(n)], n)
        return outputs, stats, record

    monkeypatch.setattr(_reversible._ForwardLoop, "run", recording)
    return steps


def relative(a, b):
    a, b = (x.detach() if isinstance(x, torch.Tensor) else x for x in (a, b))
    return float((abs(a - b) ** 2).sum() ** 0.5 / max(float((abs(b) ** 2).sum() ** 0.5), 1e-300))


def torch_problem():
    gen = torch.Generator().manual_seed(0)
    w = (0.5 * torch.randn(3, 3, generator=gen, dtype=torch.float64)).requires_grad_()
    bias = torch.randn(3, generator=gen, dtype=torch.float64).requires_grad_()
    y0 = torch.randn(2, 3, generator=gen, dtype=torch.float64).requires_grad_()

    def f(t, y):
        return torch.tanh(y @ w.T + bias * torch.sin(torch.as_tensor(t, dtype=torch.float64))) - 0.3 * y

    return f, y0, [w, bias]


def torch_loss(ys):
    weights = torch.arange(1, ys.shape[0] + 1, dtype=torch.float64).reshape(-1, 1, 1)
    return (weights * (ys ** 2 + ys)).sum()


@pytest.mark.parametrize(("method", "coupling", "kwargs"), CASES, ids=IDS)
def test_torch_equals_the_reference(method, coupling, kwargs, recorded):
    f, y0, params = torch_problem()
    ts = torch.tensor(TS, dtype=torch.float64)
    ys = symadj.odeint(f, y0, ts, method=method, gradient=symadj.Reversible(coupling=coupling),
                       adjoint_params=params, **kwargs)
    grads = torch.autograd.grad(torch_loss(ys), [y0, *params])
    reference = torch.stack(reference_solve(f, method, y0, recorded, TS, coupling))
    expected = torch.autograd.grad(torch_loss(reference), [y0, *params])
    assert relative(ys.detach(), reference.detach()) < 1e-12
    for got, want in zip(grads, expected):
        assert relative(got, want) < 1e-10
    if "options" in kwargs:  # fixed steps: of the given size, but onto each output time
        sizes = [h for _, h in recorded]
        assert max(sizes) == pytest.approx(kwargs["options"]["step_size"], rel=1e-9)
        assert len(recorded) == sum(math.ceil(round((b - a) / max(sizes), 9)) for a, b in zip(TS, TS[1:]))


def test_torch_by_name_and_defaults():
    f, y0, params = torch_problem()
    by_name = symadj.odeint(f, y0, TS, method="rk4", gradient="reversible", adjoint_params=params,
                            options={"step_size": 0.1})
    by_object = symadj.odeint(f, y0, TS, method="rk4", gradient=symadj.Reversible(), adjoint_params=params,
                              options={"step_size": 0.1})
    assert symadj.Reversible() == symadj.as_gradient_mode("reversible")
    assert symadj.Reversible().coupling == 0.999
    assert torch.equal(by_name, by_object)


@pytest.mark.parametrize("coupling", [0.0, 1.5, -0.1, "0.9"])
def test_coupling_outside_its_range_is_refused(coupling):
    with pytest.raises(symadj.InvalidArgumentError, match="coupling"):
        symadj.Reversible(coupling=coupling)


def test_forward_differs_from_the_base_scheme_by_the_method_error():
    f, y0, params = torch_problem()
    with torch.no_grad():
        base = symadj.odeint(f, y0, TS, method="rk4", options={"step_size": 0.01})
        coupled = symadj.odeint(f, y0, TS, method="rk4", gradient="reversible", adjoint_params=params,
                                options={"step_size": 0.01})
    assert 0 < relative(coupled, base) < 1e-8


def test_numpy_forward_is_the_reversible_scheme(recorded):
    np = pytest.importorskip("numpy")

    def f(t, y):
        return np.tanh(y[::-1]) * np.cos(t) - 0.5 * y

    y0 = np.array([0.4, -1.0, 2.0])
    ys = symadj.odeint(f, y0, TS, method="bosh3", gradient="reversible", rtol=1e-6, atol=1e-8)
    reference = np.stack(reference_solve(f, "bosh3", y0, recorded, TS))
    assert relative(ys, reference) < 1e-12


def test_events_and_step_callbacks_are_refused():
    f, y0, params = torch_problem()
    with pytest.raises(symadj.GradientNotSupportedError) as refused:
        symadj.solve(f, y0, TS, gradient="reversible", adjoint_params=params,
                     event=lambda t, y: y.sum() - 100.0)
    message = str(refused.value)
    assert "does not support events (event=)" in message and "continuous extension" in message
    for mode in ("symplectic", "checkpoint", "backprop", "adjoint"):  # every mode that supports events
        assert f"'{mode}'" in message
        symadj.solve(f, y0, TS, gradient=mode, adjoint_params=params, event=lambda t, y: y.sum() - 100.0)

    class WithCallback(torch.nn.Module):
        def forward(self, t, y):
            return -y

        def callback_step(self, t0, y0, dt):
            pass

    with pytest.raises(symadj.GradientNotSupportedError, match="callback_step"):
        symadj.solve(WithCallback(), y0, TS, gradient="reversible")


class TestJax:
    jax = pytest.importorskip("jax")

    @staticmethod
    def problem():
        import jax
        import jax.numpy as jnp

        jax.config.update("jax_enable_x64", True)
        key = jax.random.split(jax.random.PRNGKey(0), 3)
        params = (0.5 * jax.random.normal(key[0], (3, 3)), jax.random.normal(key[1], (3,)))
        y0 = jax.random.normal(key[2], (2, 3))

        def func(t, y, args):
            w, bias = args
            return jnp.tanh(y @ w.T + bias * jnp.sin(t)) - 0.3 * y

        return func, y0, params

    @staticmethod
    def loss(ys):
        import jax.numpy as jnp

        weights = jnp.arange(1, ys.shape[0] + 1, dtype=jnp.float64).reshape(-1, 1, 1)
        return jnp.sum(weights * (ys ** 2 + ys))

    @pytest.mark.parametrize(("method", "coupling", "kwargs"), JAX_CASES)
    def test_jit_grad_equals_the_reference(self, method, coupling, kwargs, recorded):
        import jax
        import jax.numpy as jnp

        func, y0, params = self.problem()
        ts = jnp.asarray(TS)

        def solve(y0, params):
            return symadj.odeint(func, y0, ts, args=params, method=method,
                                 gradient=symadj.Reversible(coupling=coupling), **kwargs)

        ys = solve(y0, params)  # un-jitted: the record's steps are concrete
        steps = list(recorded)
        grads = jax.jit(jax.grad(lambda y0, p: self.loss(solve(y0, p)), argnums=(0, 1)))(y0, params)

        def reference(y0, params):
            return jnp.stack(reference_solve(lambda t, y: func(t, y, params), method, y0, steps, TS, coupling))

        expected = jax.grad(lambda y0, p: self.loss(reference(y0, p)), argnums=(0, 1))(y0, params)
        assert relative(ys, reference(y0, params)) < 1e-12
        for got, want in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(expected)):
            assert relative(got, want) < 1e-10


def hidden_state_field():
    """A field whose every call differs a little: not a function of (t, y)."""
    calls = []

    def f(t, y):
        calls.append(1)
        return -y + 1e-6 * len(calls)

    return f


def test_reconstruction_check_raises_on_hidden_state():
    y0 = torch.ones(3, dtype=torch.float64, requires_grad=True)
    ys = symadj.odeint(hidden_state_field(), y0, TS, method="rk4", gradient="reversible", options={"step_size": 0.1})
    with pytest.raises(symadj.ReconstructionError, match="reconstructed the initial state .* over 15 steps"):
        ys.sum().backward()


def test_reconstruction_check_warns_or_is_off_as_asked():
    y0 = torch.ones(3, dtype=torch.float64, requires_grad=True)
    for setting, expected in (("warn", [symadj.ReconstructionWarning]), ("off", [])):
        ys = symadj.odeint(hidden_state_field(), y0, TS, method="rk4", options={"step_size": 0.1},
                           gradient=symadj.Reversible(reconstruction=setting))
        with pytest.warns() if expected else _no_warning() as caught:
            ys.sum().backward()
        assert [w.category for w in caught if issubclass(w.category, symadj.SymadjWarning)] == expected


def _no_warning():
    import warnings

    return warnings.catch_warnings(record=True)


def test_reconstruction_check_catches_rounding_grown_by_a_small_coupling():
    f, y0, params = torch_problem()
    loss = torch_loss(symadj.odeint(f, y0, TS, method="bosh3", gradient=symadj.Reversible(coupling=0.5),
                                    adjoint_params=params, rtol=1e-6, atol=1e-8))
    with pytest.raises(symadj.ReconstructionError, match="coupling=0.5"):
        torch.autograd.grad(loss, [y0, *params])
    # The same solve at the default coupling reconstructs y_0 to rounding, and a loose tolerance accepts λ = 0.5.
    torch.autograd.grad(torch_loss(symadj.odeint(f, y0, TS, method="bosh3", gradient="reversible",
                                                 adjoint_params=params, rtol=1e-6, atol=1e-8)), [y0, *params])
    torch.autograd.grad(torch_loss(symadj.odeint(
        f, y0, TS, method="bosh3", gradient=symadj.Reversible(coupling=0.5, reconstruction_tol=1e3),
        adjoint_params=params, rtol=1e-6, atol=1e-8)), [y0, *params])


@pytest.mark.parametrize("settings", [{"reconstruction": "loud"}, {"reconstruction_tol": 0.0},
                                      {"reconstruction_tol": "1e-3"}])
def test_reconstruction_settings_are_checked(settings):
    with pytest.raises(symadj.InvalidArgumentError, match="reconstruction"):
        symadj.Reversible(**settings)


def test_jax_reconstruction_check_raises_under_jit():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    traces = []

    def func(t, y, args):  # each trace (forward, backward) bakes in another constant: hidden state
        traces.append(1)
        return -y * args + 1e-6 * len(traces)

    def loss(y0):
        return jnp.sum(symadj.odeint(func, y0, jnp.asarray(TS), args=jnp.asarray(1.0), method="rk4",
                                     gradient="reversible", options={"step_size": 0.1}))

    with pytest.raises(Exception, match="reconstructed the initial state"):
        jax.block_until_ready(jax.jit(jax.grad(loss))(jnp.ones(3)))


@pytest.mark.parametrize("kwargs", [{"options": {"step_size": 0.1}}, {"rtol": 1e-7, "atol": 1e-9}],
                         ids=["fixed", "adaptive"])
def test_torch_complex_state_equals_the_reference(kwargs, recorded):
    gen = torch.Generator().manual_seed(1)
    w = (0.5 * torch.randn(3, 3, generator=gen, dtype=torch.complex128)).requires_grad_()
    y0 = torch.randn(2, 3, generator=gen, dtype=torch.complex128).requires_grad_()

    def f(t, y):
        return 1j * torch.tanh(y @ w.T) - 0.3 * y

    def loss(ys):
        return (ys.abs() ** 2).sum() + ys.real.sum()

    ys = symadj.odeint(f, y0, TS, method="dopri5", gradient="reversible", adjoint_params=[w], **kwargs)
    reference = torch.stack(reference_solve(f, "dopri5", y0, recorded, TS))
    assert relative(ys.detach(), reference.detach()) < 1e-12
    for got, want in zip(torch.autograd.grad(loss(ys), [y0, w]), torch.autograd.grad(loss(reference), [y0, w])):
        assert relative(got, want) < 1e-10


def test_torch_float32_equals_the_reference(recorded):
    f64, y0_64, params64 = torch_problem()
    params = [p.detach().float().requires_grad_() for p in params64]
    y0 = y0_64.detach().float().requires_grad_()
    w, bias = params

    def f(t, y):
        return torch.tanh(y @ w.T + bias * torch.sin(torch.as_tensor(t, dtype=torch.float32))) - 0.3 * y

    ys = symadj.odeint(f, y0, torch.tensor(TS), method="bosh3", gradient="reversible", adjoint_params=params,
                       rtol=1e-4, atol=1e-6)
    assert ys.dtype == torch.float32
    reference = torch.stack(reference_solve(f, "bosh3", y0, recorded, TS))
    loss = [torch_loss(x.double()) for x in (ys, reference)]
    assert relative(ys.detach(), reference.detach()) < 1e-5
    for got, want in zip(torch.autograd.grad(loss[0], [y0, *params]), torch.autograd.grad(loss[1], [y0, *params])):
        assert relative(got, want) < 1e-4


class TestJaxTransforms:
    jax = pytest.importorskip("jax")

    @pytest.mark.slow
    def test_vmap_of_grad_equals_grad_per_row(self):
        import jax
        import jax.numpy as jnp

        func, y0, params = TestJax.problem()

        def loss(y0, params):
            ys = symadj.odeint(func, y0, jnp.asarray(TS), args=params, method="dopri5", gradient="reversible",
                               rtol=1e-7, atol=1e-9)
            return TestJax.loss(ys)

        rows = jnp.stack([y0, 0.5 * y0, -y0])
        batched = jax.jit(jax.vmap(jax.grad(loss, argnums=(0, 1)), in_axes=(0, None)))(rows, params)
        for i in range(rows.shape[0]):
            single = jax.grad(loss, argnums=(0, 1))(rows[i], params)
            for got, want in zip(jax.tree_util.tree_leaves(batched), jax.tree_util.tree_leaves(single)):
                assert relative(got[i], want) < 1e-12

    @pytest.mark.slow
    def test_complex_state_equals_the_reference(self, recorded):
        import jax
        import jax.numpy as jnp

        jax.config.update("jax_enable_x64", True)
        w = jnp.asarray([[0.3, -0.2j], [0.1 + 0.4j, -0.5]])
        y0 = jnp.asarray([1.0 + 0.5j, -0.3j])

        def func(t, y, w):
            return 1j * jnp.tanh(w @ y) - 0.3 * y

        def loss(ys):
            return jnp.sum(jnp.abs(ys) ** 2) + jnp.sum(ys.real)

        ys = symadj.odeint(func, y0, jnp.asarray(TS), args=w, method="rk4", gradient="reversible",
                           options={"step_size": 0.1})
        steps = list(recorded)
        got = jax.grad(lambda y0, w: loss(symadj.odeint(func, y0, jnp.asarray(TS), args=w, method="rk4",
                                                         gradient="reversible", options={"step_size": 0.1})),
                       argnums=(0, 1))(y0, w)

        def reference(y0, w):
            return jnp.stack(reference_solve(lambda t, y: func(t, y, w), "rk4", y0, steps, TS))

        want = jax.grad(lambda y0, w: loss(reference(y0, w)), argnums=(0, 1))(y0, w)
        assert relative(ys, reference(y0, w)) < 1e-12
        for a, b in zip(got, want):
            assert relative(a, b) < 1e-10


@pytest.mark.parametrize("method", ["euler", "heun2", "midpoint", "bosh3", "rk4", USER.name, "dopri5", "tsit5"])
def test_forward_solution_converges_at_the_base_order(method):
    """y' = −y cos t, y = y_0 exp(−sin t): the coupled scheme keeps the base tableau's order (slope fit)."""
    np = pytest.importorskip("numpy")
    order, end = symadj.get_tableau(method).order, 2.0
    y0 = np.array([1.0, 2.0])
    exact = y0 * math.exp(-math.sin(end))
    counts = [24, 48, 96] if order >= 5 else [16, 32, 64]
    errors = [float(np.max(np.abs(symadj.odeint(lambda t, y: -y * np.cos(t), y0, [0.0, end], method=method,
                                                gradient="reversible", options={"step_size": end / n})[-1] - exact)))
              for n in counts]
    slope = np.polyfit(np.log([end / n for n in counts]), np.log(errors), 1)[0]
    # At least the base order (tsit5 converges faster on this problem, about 5.9).
    assert order - 0.3 < slope < order + 1, (slope, errors)


def test_checkpoint_bytes_hold_the_final_pair_and_two_scalars_a_step():
    f, y0, params = torch_problem()
    for size in (0.1, 0.001):
        stats = symadj.solve(f, y0, TS, method="rk4", gradient="reversible", adjoint_params=params,
                             options={"step_size": size}).stats
        assert int(stats.checkpoint_bytes) == 2 * y0.numel() * 8 + 2 * int(stats.n_accepted) * 8
        assert int(stats.n_fevals) == 1 + 8 * int(stats.n_accepted)  # two rk4 steps a step, f(t_0, y_0) reused


def test_step_t_ends_a_step_and_the_gradient_stays_that_of_the_reference(recorded):
    f, y0, params = torch_problem()
    ys = symadj.odeint(f, y0, TS, method="dopri5", gradient="reversible", adjoint_params=params, rtol=1e-7,
                       atol=1e-9, options={"step_t": [0.55, 1.05]})
    assert any(abs(t + h - 0.55) < 1e-15 for t, h in recorded) and any(abs(t + h - 1.05) < 1e-15 for t, h in recorded)
    reference = torch.stack(reference_solve(f, "dopri5", y0, recorded, TS))
    assert relative(ys.detach(), reference.detach()) < 1e-12
    for got, want in zip(torch.autograd.grad(torch_loss(ys), [y0, *params]),
                         torch.autograd.grad(torch_loss(reference), [y0, *params])):
        assert relative(got, want) < 1e-10


def test_nonfinite_cotangents_from_finite_ones_raise():
    y0 = torch.tensor([0.0, 1.0], dtype=torch.float64, requires_grad=True)
    ys = symadj.odeint(lambda t, y: -torch.sqrt(torch.abs(y)), y0, [0.0, 0.5], method="rk4", gradient="reversible",
                       options={"step_size": 0.1})
    assert bool(torch.isfinite(ys).all())
    with pytest.raises(symadj.NonFiniteError, match="gradient='reversible'"):
        ys.sum().backward()


@pytest.mark.slow
def test_jax_float32_under_jit_equals_the_reference(recorded):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    func, y0_64, params64 = TestJax.problem()
    y0, params = y0_64.astype(jnp.float32), tuple(p.astype(jnp.float32) for p in params64)

    def solve(y0, params):
        return symadj.odeint(func, y0, jnp.asarray(TS, dtype=jnp.float32), args=params, method="bosh3",
                             gradient="reversible", rtol=1e-4, atol=1e-6)

    grads = jax.jit(jax.grad(lambda y0, p: TestJax.loss(solve(y0, p)), argnums=(0, 1)))(y0, params)
    steps = list(recorded)

    def reference(y0, params):
        return jnp.stack(reference_solve(lambda t, y: func(jnp.float32(t), y, params), "bosh3", y0, steps, TS))

    expected = jax.grad(lambda y0, p: TestJax.loss(reference(y0, p)), argnums=(0, 1))(y0, params)
    assert grads[0].dtype == jnp.float32
    for got, want in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(expected)):
        assert relative(got, want) < 1e-4


@pytest.mark.parametrize(("method", "per_half_step"), [("rk4", 4), ("dopri5", 6), ("bosh3", 3)])
def test_backward_evaluates_each_stage_once(method, per_half_step):
    """Backward, each half-step's stages are evaluated once, with their graph (none of dopri5's
    and bosh3's zero-weight FSAL stage): 2 · (stages up to the last with a weight) a step."""
    calls = []

    def f(t, y):
        calls.append(1)
        return -y * torch.cos(torch.as_tensor(t, dtype=y.dtype))

    y0 = torch.ones(3, dtype=torch.float64, requires_grad=True)
    sol = symadj.solve(f, y0, TS, method=method, gradient="reversible", options={"step_size": 0.1})
    forward = len(calls)
    assert forward == int(sol.stats.n_fevals)
    sol.ys.sum().backward()
    assert len(calls) - forward == 2 * per_half_step * int(sol.stats.n_accepted)


def test_backward_in_time_equals_the_reference(recorded):
    f, y0, params = torch_problem()
    ts = TS[::-1]
    ys = symadj.odeint(f, y0, ts, method="dopri5", gradient="reversible", adjoint_params=params, rtol=1e-7, atol=1e-9)
    assert all(h < 0 for _, h in recorded)
    reference = torch.stack(reference_solve(f, "dopri5", y0, recorded, ts))
    assert relative(ys.detach(), reference.detach()) < 1e-12
    for got, want in zip(torch.autograd.grad(torch_loss(ys), [y0, *params]),
                         torch.autograd.grad(torch_loss(reference), [y0, *params])):
        assert relative(got, want) < 1e-10


class Phase:
    """A field that the test makes differ between the forward and the backward pass (hidden
    state the test controls): −y·c, with c = 1 forward and ``backward_c`` while the mode walks
    back (its walk is wrapped: under JAX, while it is traced)."""

    def __init__(self, monkeypatch, backward_c):
        self.c, walk = 1.0, _reversible._walk_back

        def walking(*args, **kwargs):
            self.c = backward_c
            try:
                return walk(*args, **kwargs)
            finally:
                self.c = 1.0

        monkeypatch.setattr(_reversible, "_walk_back", walking)


def reference_gap(f_forward, f_backward, method, y0, steps, lam):
    """The reconstruction check's figure, measured on the reference: the pair driven forward by
    ``f_forward``, undone by ``f_backward``; max |ŷ_0 − y_0|, |ẑ_0 − y_0| over max(|y_0|, |y_N|)."""
    y = z = y0
    for t, h in steps:
        y = lam * y + (1 - lam) * z + reference_increment(f_forward, method, t, h, z)
        z = z - reference_increment(f_forward, method, t + h, -h, y)
    y_end = y
    for t, h in reversed(steps):
        z = z + reference_increment(f_backward, method, t + h, -h, y)
        y = (y - (1 - lam) * z - reference_increment(f_backward, method, t, h, z)) / lam
    largest = lambda x: float(abs(x).max())  # noqa: E731
    return max(largest(y - y0), largest(z - y0)) / max(largest(y0), largest(y_end))


def test_stats_report_the_reconstruction_gap_the_backward_pass_measured(monkeypatch, recorded):
    phase = Phase(monkeypatch, 1.001)
    y0 = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64, requires_grad=True)
    sol = symadj.solve(lambda t, y: -phase.c * y * torch.cos(torch.as_tensor(t, dtype=y.dtype)), y0, TS,
                       method="dopri5", gradient=symadj.Reversible(coupling=0.9, reconstruction="warn"),
                       rtol=1e-7, atol=1e-9)
    report = sol.stats.reconstruction
    assert report.gap is None and report.reports == 0 and sol.stats.as_dict()["reconstruction_gap"] is None
    with pytest.warns(symadj.ReconstructionWarning):
        sol.ys.sum().backward()
    with torch.no_grad():
        want = reference_gap(lambda t, y: -y * math.cos(t), lambda t, y: -1.001 * y * math.cos(t), "dopri5",
                             y0.detach(), recorded, 0.9)
    assert want > 1e-4 and report.gap == pytest.approx(want, rel=1e-9) and report.reports == 1
    assert sol.stats.as_dict()["reconstruction_gap"] == report.gap
    assert report.tolerance == float(torch.finfo(torch.float64).eps) ** 0.5


@pytest.mark.slow
def test_stats_report_the_reconstruction_gap_under_jit_and_vmap(monkeypatch, recorded):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    phase = Phase(monkeypatch, 1.001)

    def loss(y0):
        sol = symadj.solve(lambda t, y: -phase.c * (y + 0.3 * y ** 3) * jnp.cos(t), y0, jnp.asarray(TS),
                           method="rk4", gradient=symadj.Reversible(coupling=0.9, reconstruction="warn"),
                           options={"step_size": 0.1})
        return jnp.sum(sol.ys), sol.stats

    def measured(y0):
        return reference_gap(lambda t, y: -(y + 0.3 * y ** 3) * math.cos(t),
                             lambda t, y: -1.001 * (y + 0.3 * y ** 3) * math.cos(t), "rk4", y0, list(recorded), 0.9)

    y0, other = jnp.asarray([1.0, -2.0, 0.5]), jnp.asarray([0.0, 0.0, 0.5])
    with pytest.warns(symadj.ReconstructionWarning):
        _, stats = jax.jit(jax.grad(loss, has_aux=True))(y0)
        jax.effects_barrier()
    report, gaps = stats.reconstruction, [measured(y0), measured(other)]
    assert report.reports == 1 and report.gap == pytest.approx(gaps[0], rel=1e-9)
    # Under vmap each row reports and the report keeps the largest: here neither the first nor the last.
    assert abs(gaps[0] / gaps[1] - 1) > 1e-3
    smaller, larger = (y0, other) if gaps[0] < gaps[1] else (other, y0)
    report.clear()
    with pytest.warns(symadj.ReconstructionWarning):
        _, stats = jax.jit(jax.vmap(jax.grad(loss, has_aux=True)))(jnp.stack([smaller, larger, smaller]))
        jax.effects_barrier()
    assert stats.reconstruction.reports == 3 and stats.reconstruction.gap == pytest.approx(max(gaps), rel=1e-9)


def test_a_float32_pair_is_carried_in_float64_where_the_reconstruction_amplifies_its_rounding():
    """Undoing 100 steps at λ = 0.9 amplifies the rounding of the pair about 0.9^(−100) ≈ 4e4 times (a
    rotating field: the base steps neither grow nor shrink it), past √ε for a float32 pair; carried in float64
    (the default), the pair is undone to about 1e-9 and the gradient is the float64 one's to float32 rounding."""

    def solve(dtype, wide):
        y0 = torch.tensor([[1.0, 0.0], [0.3, -2.0]], dtype=dtype, requires_grad=True)
        w = torch.tensor([[0.0, 1.0], [-1.0, 0.0]], dtype=dtype, requires_grad=True)
        sol = symadj.solve(lambda t, y: torch.tanh(y) @ w.T, y0, [0.0, 10.0], method="rk4", adjoint_params=[w],
                           gradient=symadj.Reversible(0.9, reconstruction="warn", wide_carry=wide),
                           options={"step_size": 0.1})
        with _no_warning() as caught:
            grads = torch.autograd.grad((sol.ys[-1] ** 2).sum() + sol.ys[-1].sum(), [y0, w])
        warned = [str(c.message) for c in caught if issubclass(c.category, symadj.ReconstructionWarning)]
        return sol, torch.cat([g.double().reshape(-1) for g in grads]), warned

    exact, exact_grad, _ = solve(torch.float64, True)
    wide, wide_grad, warned = solve(torch.float32, True)
    assert wide.ys.dtype == torch.float32 and not warned
    steps = int(wide.stats.n_accepted)  # two float64 states, and t_n and h_n a step
    assert wide.stats.reconstruction.gap < 1e-8 and int(wide.stats.checkpoint_bytes) == 2 * 4 * 8 + 2 * steps * 8
    assert relative(wide.ys.double(), exact.ys) < 1e-6 and relative(wide_grad, exact_grad) < 1e-6
    narrow, narrow_grad, warned = solve(torch.float32, False)
    assert narrow.stats.reconstruction.gap > 10 * narrow.stats.reconstruction.tolerance
    assert relative(narrow_grad, exact_grad) > 1e-4
    assert len(warned) == 1 and "carried in torch.float32: symadj.Reversible(wide_carry=True)" in warned[0]


def jumping(f, jumps):
    """``f`` times 1, 2, 3, ... past each of ``jumps`` (t ≥ jump: the right side)."""

    def g(t, y):
        t = torch.as_tensor(t, dtype=y.dtype)
        return f(t, y) * (1 + sum((t >= jump).to(y.dtype) for jump in jumps))

    return g


@pytest.mark.parametrize("jumps", [[0.55], [0.0, 0.7]], ids=["inside", "at-outputs"])
@pytest.mark.parametrize("kwargs", [{"options": {"step_size": 0.1}}, {"rtol": 1e-7, "atol": 1e-9}],
                         ids=["fixed", "adaptive"])
def test_jump_t_equals_the_reference(jumps, kwargs, recorded):
    """As in the other modes, a step onto a jump ends one ulp before it (its stages see the side before) and
    the next starts one ulp after it with a fresh first stage (the reversible scheme has no FSAL reuse anyway);
    the reference replays those steps."""
    f, y0, params = torch_problem()
    g = jumping(f, jumps)
    options = {**kwargs.get("options", {}), "jump_t": jumps}
    ys = symadj.odeint(g, y0, TS, method="dopri5", gradient="reversible", adjoint_params=params,
                       **{**kwargs, "options": options})
    for jump in jumps:
        if jump > 0:
            assert any(t + h == math.nextafter(jump, -1) for t, h in recorded)
        assert any(t == math.nextafter(jump, 1) for t, _ in recorded)
    reference = torch.stack(reference_solve(g, "dopri5", y0, recorded, TS))
    assert relative(ys.detach(), reference.detach()) < 1e-12
    for got, want in zip(torch.autograd.grad(torch_loss(ys), [y0, *params]),
                         torch.autograd.grad(torch_loss(reference), [y0, *params])):
        assert relative(got, want) < 1e-10


def test_jump_t_sides_are_those_of_the_state_dtype_when_the_pair_is_wider():
    """A float32 state, its pair carried in float64: func still sees a float32 ulp on each side of the jump
    (a float64 ulp would round back onto the jump, and the step before it would see the side after)."""
    seen = []

    def f(t, y):
        seen.append(float(t))
        return -y * (1.0 if float(t) < 0.55 else 2.0)

    y0 = torch.ones(2, requires_grad=True)
    symadj.solve(f, y0, [0.0, 1.0], method="rk4", gradient="reversible",
                 options={"step_size": 0.1, "jump_t": [0.55]}).ys.sum().backward()
    jump = torch.tensor(0.55, dtype=torch.float32)
    sides = {float(torch.nextafter(jump, torch.tensor(side, dtype=torch.float32))) for side in (0.0, 1.0)}
    assert {t for t in seen if abs(t - 0.55) < 1e-3} == sides


@pytest.mark.slow
def test_jax_jump_t_under_jit_equals_the_reference(recorded):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    func, y0, params = TestJax.problem()

    def g(t, y, args):
        return func(t, y, args) * jnp.where(t >= 0.55, 2.0, 1.0)

    def solve(y0, params):
        return symadj.odeint(g, y0, jnp.asarray(TS), args=params, method="bosh3", gradient="reversible",
                             rtol=1e-7, atol=1e-9, options={"jump_t": [0.55]})

    grads = jax.jit(jax.grad(lambda y0, p: TestJax.loss(solve(y0, p)), argnums=(0, 1)))(y0, params)
    steps = list(recorded)
    assert any(t == math.nextafter(0.55, 1) for t, _ in steps)

    def reference(y0, params):
        return jnp.stack(reference_solve(lambda t, y: g(t, y, params), "bosh3", y0, steps, TS))

    expected = jax.grad(lambda y0, p: TestJax.loss(reference(y0, p)), argnums=(0, 1))(y0, params)
    for got, want in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(expected)):
        assert relative(got, want) < 1e-10
