"""The eager backends' buffers: small entries go into one growing array, not an object each."""

from __future__ import annotations

import numpy as np
import pytest

import symadj
from symadj._backend import ListBuffer, StackedBuffer


def test_small_entries_are_stacked_and_grow_past_the_first_block():
    backend = symadj.get_backend("numpy")
    buffer = backend.buffer(200, np.zeros(3))
    assert isinstance(buffer, StackedBuffer)
    for i in range(150):  # the first block holds 64
        buffer = backend.buffer_write(buffer, i, np.full(3, float(i)))
    assert len(buffer) == 150
    np.testing.assert_array_equal(backend.buffer_read(buffer, 149), np.full(3, 149.0))
    stacked = backend.buffer_stack(buffer, 150, np.full(3, np.nan))
    assert stacked.shape == (200, 3)
    np.testing.assert_array_equal(stacked[:150, 0], np.arange(150.0))
    assert np.isnan(stacked[150:]).all()


def test_large_entries_stay_a_list():
    backend = symadj.get_backend("numpy")
    assert isinstance(backend.buffer(10, np.zeros(10_000)), ListBuffer)


def test_torch_stacks_only_outside_autograd_recording():
    torch = pytest.importorskip("torch")
    backend = symadj.get_backend("torch")
    with torch.no_grad():
        assert isinstance(backend.buffer(10, torch.zeros(2)), StackedBuffer)
    assert isinstance(backend.buffer(10, torch.zeros(2)), ListBuffer)  # a copy would enter the graph


def test_torch_recording_keeps_small_states_in_one_array():
    torch = pytest.importorskip("torch")
    seen = []
    original = symadj.get_backend("torch").buffer

    def spy(capacity, like):
        buffer = original(capacity, like)
        seen.append(type(buffer))
        return buffer

    y0 = torch.ones(2, requires_grad=True)
    backend = symadj.get_backend("torch")
    backend.buffer = spy
    try:
        ys = symadj.odeint(lambda t, y: -y, y0, torch.tensor([0.0, 1.0]), method="rk4", options={"step_size": 0.01})
    finally:
        del backend.buffer
    ys[-1].sum().backward()
    assert seen and set(seen) == {StackedBuffer}
    assert torch.allclose(y0.grad, torch.exp(torch.tensor(-1.0)).expand(2), rtol=1e-6)
