"""Property-based tests: random tableaux, output times, shapes and tuple states.

Examples come from the hypothesis profile loaded in conftest.py (bounded and derandomized
in CI; ``HYPOTHESIS_PROFILE=dev`` explores more).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes

import symadj
from symadj import InvalidArgumentError, Tableau, TableauError
from symadj._tableau import derive_partner

torch = pytest.importorskip("torch")

COEFFICIENTS = st.fractions(min_value=-1, max_value=1, max_denominator=7)


@st.composite
def explicit_tableaux(draw, max_stages=8):
    """A random explicit scheme of order 1: rational a (zeros included), c the row sums of a,
    weights b summing to one, some of them zero."""
    stages = draw(st.integers(1, max_stages))
    a = [[draw(st.just(Fraction(0)) | COEFFICIENTS) for _ in range(i)] for i in range(stages)]
    zero = [draw(st.booleans()) for _ in range(stages)]
    closing = draw(st.integers(0, stages - 1))  # the weight that makes Σ b = 1
    zero[closing] = False
    b = [Fraction(0) if zero[i] else draw(COEFFICIENTS.filter(bool)) for i in range(stages)]
    b[closing] = 1 - sum(b[i] for i in range(stages) if i != closing)
    return Tableau("random_scheme", c=[sum(row, Fraction(0)) for row in a], a=a, b=b, order=1)


# -- tableaux ----------------------------------------------------------------

@settings(max_examples=150)
@given(explicit_tableaux())
def test_derived_partner_of_a_random_tableau_verifies(tab):
    big_b, a_bar = tab.partner.b, tab.partner.a
    assert tab.partner == derive_partner(tab.a, tab.b)
    for i in range(tab.stages):
        assert big_b[i] == (tab.b[i] if tab.b[i] != 0 else 1)
        for j in range(tab.stages):
            a_ji = tab.a[j][i] if i < j else 0
            assert big_b[i] * a_bar[i][j] + big_b[j] * a_ji - tab.b[i] * big_b[j] == 0
    # Stated explicitly, the partner passes the file-format verification too.
    stated = Tableau(tab.name, c=tab.c, a=tab.a, b=tab.b, order=1, partner=(big_b, a_bar))
    assert stated.partner == tab.partner
    assert all(np.isfinite(tab.adjoint.input_weight)) and all(np.isfinite(np.ravel(tab.adjoint.coupling)))
    # Every stage the output depends on gets its vector-Jacobian product in the adjoint step.
    assert all(tab.adjoint.active[i] for i in range(tab.stages) if tab.b[i] != 0)


@settings(max_examples=60)
@given(explicit_tableaux(), st.data())
def test_a_wrong_partner_entry_is_rejected(tab, data):
    i = data.draw(st.integers(0, tab.stages - 1))
    j = data.draw(st.integers(0, tab.stages - 1))
    a_bar = [list(row) for row in tab.partner.a]
    a_bar[i][j] += Fraction(1, 11)
    with pytest.raises(TableauError, match=rf"'partner.a\[{i}\]\[{j}\]' violates the symplecticity condition"):
        Tableau(tab.name, c=tab.c, a=tab.a, b=tab.b, order=1, partner=(tab.partner.b, a_bar))


# -- gradients of random tableaux ----------------------------------------------

class _Linear(torch.nn.Module):
    def __init__(self, size, seed):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.matrix = torch.nn.Parameter(torch.randn(size, size, generator=generator, dtype=torch.float64) / size)

    def forward(self, t, y):
        return y @ self.matrix.T


class _Nonlinear(torch.nn.Module):
    def __init__(self, size, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.net = torch.nn.Sequential(torch.nn.Linear(size, 8), torch.nn.Tanh(), torch.nn.Linear(8, size)).double()

    def forward(self, t, y):
        return self.net(y) * (1 + torch.sin(3 * t)) - 0.3 * y


def _torch_gradients(func, y0, ts, mode, **kwargs):
    y0 = tuple(y.clone().requires_grad_() for y in y0) if isinstance(y0, tuple) else y0.clone().requires_grad_()
    ys = symadj.odeint(func, y0, ts, gradient=mode, **kwargs)
    leaves = list(ys) if isinstance(ys, tuple) else [ys]
    weights = torch.linspace(-1.0, 2.0, ts.shape[0], dtype=torch.float64)
    loss = sum((w * (leaf.reshape(leaf.shape[0], -1) ** 2).sum(dim=1)).sum() + (leaf[-1] * 0.7).sum()
               for leaf, w in zip(leaves, [weights] * len(leaves)))
    inputs = (list(y0) if isinstance(y0, tuple) else [y0]) + [p for p in func.parameters()]
    return torch.autograd.grad(loss, inputs)


def _assert_close(grads, reference, tolerance=1e-10):
    for g, r in zip(grads, reference):
        error = float((g - r).norm() / r.norm().clamp_min(1e-300))
        assert error <= tolerance, error


@settings(max_examples=30)
@given(explicit_tableaux(), st.sampled_from(["linear", "nonlinear"]), st.integers(1, 3), st.integers(0, 2**16))
def test_symplectic_gradient_equals_backprop_for_random_tableaux(tab, field, size, seed):
    func = (_Linear if field == "linear" else _Nonlinear)(size, seed)
    y0 = torch.randn(2, size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    ts = torch.tensor([0.0, 0.2, 0.5], dtype=torch.float64)
    kwargs = {"method": tab, "options": {"step_size": 0.05}}
    reference = _torch_gradients(func, y0, ts, "backprop", **kwargs)
    assume(all(torch.isfinite(r).all() and r.norm() > 0 for r in reference))
    _assert_close(_torch_gradients(func, y0, ts, "symplectic", **kwargs), reference)


# -- output times --------------------------------------------------------------

@st.composite
def output_times(draw, max_size=8):
    """Distinct times at least 1e-3 apart, in increasing or decreasing order."""
    grid = draw(st.lists(st.integers(-3000, 3000), min_size=2, max_size=max_size, unique=True))
    times = sorted(g / 1000 for g in grid)
    return times[::-1] if draw(st.booleans()) else times


@given(output_times(), st.floats(0.1, 2.0))
def test_random_output_times_are_hit_exactly(times, rate):
    y0 = np.array([1.0, -2.0])
    sol = symadj.solve(lambda t, y: -rate * y, y0, np.array(times), rtol=1e-10, atol=1e-12)
    expected = np.exp(-rate * (np.array(times) - times[0]))[:, None] * y0
    assert sol.ys.shape == (len(times), 2)
    np.testing.assert_allclose(sol.ys, expected, rtol=1e-7, atol=1e-12)
    # The last step ends at t + (t_end - t), which can differ from t_end in the last bit.
    assert float(sol.stats.t_final) == pytest.approx(times[-1], rel=4e-16, abs=4e-16)
    assert int(sol.stats.n_outputs) == len(times)


@settings(max_examples=15)
@given(output_times(max_size=5), st.integers(0, 2**16))
def test_symplectic_gradient_equals_backprop_at_random_output_times(times, seed):
    func = _Nonlinear(2, seed)
    y0 = torch.randn(3, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    ts = torch.tensor(times, dtype=torch.float64)
    kwargs = {"method": "dopri5", "rtol": 1e-7, "atol": 1e-9}
    _assert_close(_torch_gradients(func, y0, ts, "symplectic", **kwargs),
                  _torch_gradients(func, y0, ts, "backprop", **kwargs))


@given(output_times(), st.data())
def test_repeated_or_unsorted_times_are_rejected_cleanly(times, data):
    calls = []

    def func(t, y):
        calls.append(t)
        return -y

    where = data.draw(st.integers(0, len(times) - 1))
    repeated = times[: where + 1] + times[where:]  # one time twice (the end points included)
    swapped = list(times)
    if len(times) > 2:
        k = data.draw(st.integers(0, len(times) - 2))
        swapped[k], swapped[k + 1] = swapped[k + 1], swapped[k]
    else:
        swapped = [times[0], times[1], times[0]]
    for bad in (repeated, swapped):
        with pytest.raises(InvalidArgumentError, match="strictly increasing or strictly decreasing"):
            symadj.odeint(func, np.ones(2), np.array(bad))
    assert calls == []  # rejected before func ever ran


# -- shapes and tuple states --------------------------------------------------------

SHAPES = array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3)


@given(st.lists(SHAPES, min_size=1, max_size=3), st.booleans())
def test_random_shapes_and_tuple_states_keep_their_structure(shapes, as_tuple):
    assume(as_tuple or len(shapes) == 1)
    rates = [0.5 * (i + 1) for i in range(len(shapes))]
    leaves = [np.full(shape, 1.0 + i) for i, shape in enumerate(shapes)]
    y0 = tuple(leaves) if as_tuple else leaves[0]

    def func(t, y):
        return tuple(-r * leaf for r, leaf in zip(rates, y)) if as_tuple else -rates[0] * y

    ts = np.array([0.0, 0.5, 1.0])
    ys = symadj.odeint(func, y0, ts, rtol=1e-10, atol=1e-12)
    outputs = list(ys) if as_tuple else [ys]
    assert isinstance(ys, tuple) == as_tuple and len(outputs) == len(shapes)
    for out, leaf, rate, shape in zip(outputs, leaves, rates, shapes):
        assert out.shape == (3, *shape)
        expected = np.exp(-rate * ts).reshape((3,) + (1,) * len(shape)) * leaf
        np.testing.assert_allclose(out, expected, rtol=1e-8)


class _Coupled(torch.nn.Module):
    """Leaves of any shapes, coupled through a scalar summary of the whole state."""

    def __init__(self, count):
        super().__init__()
        self.rates = torch.nn.Parameter(torch.linspace(0.2, 0.9, count, dtype=torch.float64))
        self.mixing = torch.nn.Parameter(torch.tensor(0.4, dtype=torch.float64))

    def forward(self, t, state):
        summary = torch.tanh(sum(leaf.mean() for leaf in state))
        return tuple(-rate * leaf + self.mixing * summary * torch.cos(t) for rate, leaf in zip(self.rates, state))


@settings(max_examples=15)
@given(st.lists(SHAPES, min_size=1, max_size=3), st.sampled_from(["dopri5", "rk4", "bosh3"]))
def test_symplectic_gradient_equals_backprop_for_random_tuple_states(shapes, method):
    func = _Coupled(len(shapes))
    generator = torch.Generator().manual_seed(len(shapes))
    y0 = tuple(torch.randn(shape, generator=generator, dtype=torch.float64) for shape in shapes)
    ts = torch.tensor([0.0, 0.4, 1.0], dtype=torch.float64)
    kwargs = {"method": method, "rtol": 1e-7, "atol": 1e-9}
    if method == "rk4":
        kwargs = {"method": method, "options": {"step_size": 0.1}}
    _assert_close(_torch_gradients(func, y0, ts, "symplectic", **kwargs),
                  _torch_gradients(func, y0, ts, "backprop", **kwargs))


def test_jax_pytree_states_of_random_shapes():
    """A few JAX pytrees (each structure compiles once): structure, values and the gradient."""
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    fast = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}

    @settings(max_examples=3)
    @given(st.lists(SHAPES, min_size=1, max_size=3))
    def check(shapes):
        y0 = {f"leaf{i}": jnp.full(shape, 1.0 + i) for i, shape in enumerate(shapes)}
        ts = jnp.array([0.0, 0.5, 1.0])

        def loss(rate):
            ys = symadj.odeint(lambda t, y, r: jax.tree_util.tree_map(lambda leaf: -r * leaf, y), y0, ts,
                               args=rate, rtol=1e-10, atol=1e-12)
            return sum(jnp.sum(leaf[-1]) for leaf in jax.tree_util.tree_leaves(ys)), ys

        (value, ys), grad = jax.jit(jax.value_and_grad(loss, has_aux=True), compiler_options=fast)(0.7)
        assert set(ys) == set(y0)
        for key, leaf in y0.items():
            assert ys[key].shape == (3, *leaf.shape)
        total = sum(float(jnp.sum(leaf)) for leaf in y0.values())
        assert float(value) == pytest.approx(total * np.exp(-0.7), rel=1e-8)
        assert float(grad) == pytest.approx(-total * np.exp(-0.7), rel=1e-7)

    check()
