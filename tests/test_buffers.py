"""Buffers: the storage every backend gives through one small interface (write, read, capacity, stack)."""

from __future__ import annotations

import numpy as np
import pytest

import symadj
from symadj.backend import Buffer, ListBuffer, StackedBuffer


def _backend(name):
    if name != "numpy":
        pytest.importorskip(name)
    return symadj.get_backend(name)


def _array(backend, values):
    xp = backend.namespace()
    return xp.asarray(np.asarray(values, dtype=np.float32))


BACKENDS = ["numpy", "torch", "jax"]


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("size", [3, 10_000])  # a stacked and a listed entry on eager backends
def test_buffer_interface_write_read_capacity_stack(name, size):
    backend = _backend(name)
    buffer = backend.buffer(5, _array(backend, np.zeros(size)))
    assert isinstance(buffer, Buffer) and buffer.capacity == 5
    for i in range(3):
        buffer = buffer.write(i, _array(backend, np.full(size, float(i))))
    buffer = buffer.write(1, _array(backend, np.full(size, 7.0)))  # an earlier entry written again
    np.testing.assert_array_equal(np.asarray(buffer.read(1)), np.full(size, 7.0))
    stacked = np.asarray(buffer.stack(3, _array(backend, np.full(size, np.nan))))
    assert stacked.shape == (5, size)
    np.testing.assert_array_equal(stacked[:3, 0], [0.0, 7.0, 2.0])
    assert np.isnan(stacked[3:]).all()
    assert buffer.capacity == 5


@pytest.mark.parametrize("name", BACKENDS)
def test_full_buffer_stacks_without_fill(name):
    backend = _backend(name)
    buffer = backend.buffer(2, _array(backend, np.zeros(2)))
    buffer = buffer.write(0, _array(backend, [1.0, 2.0])).write(1, _array(backend, [3.0, 4.0]))
    np.testing.assert_array_equal(np.asarray(buffer.stack(2)), [[1.0, 2.0], [3.0, 4.0]])


@pytest.mark.parametrize("name", BACKENDS)
def test_buffer_of_holds_the_rows_of_an_array(name):
    backend = _backend(name)
    buffer = backend.buffer_of(_array(backend, [[1.0], [2.0], [3.0]]))
    assert isinstance(buffer, Buffer) and buffer.capacity == 3
    buffer = buffer.write(2, _array(backend, [9.0]))
    np.testing.assert_array_equal(np.asarray(buffer.read(0)), [1.0])
    np.testing.assert_array_equal(np.asarray(buffer.stack(3)), [[1.0], [2.0], [9.0]])


@pytest.mark.parametrize("name", BACKENDS)
def test_integer_entries(name):
    backend = _backend(name)
    buffer = backend.buffer(4, 0)  # Python integers: the schedules' step indices
    buffer = backend.fori_loop(0, 4, lambda i, b: b.write(i, 3 * i), buffer)
    assert [int(buffer.read(i)) for i in range(4)] == [0, 3, 6, 9]


def test_jax_buffer_is_carried_by_staged_loops_and_jit():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    backend = symadj.get_backend("jax")

    @jax.jit
    def fill(n):
        buffer = backend.buffer(8, jnp.zeros(2))
        return backend.fori_loop(0, n, lambda i, b: b.write(i, jnp.full(2, i, dtype=jnp.float32)), buffer)

    buffer = fill(3)
    assert isinstance(buffer, Buffer) and buffer.capacity == 8
    np.testing.assert_array_equal(np.asarray(buffer.stack(3, jnp.full(2, -1.0)))[:, 0], [0, 1, 2, -1, -1, -1, -1, -1])


def test_small_entries_are_stacked_and_grow_past_the_first_block():
    backend = symadj.get_backend("numpy")
    buffer = backend.buffer(200, np.zeros(3))
    assert isinstance(buffer, StackedBuffer)
    for i in range(150):  # the first block holds 64
        buffer = buffer.write(i, np.full(3, float(i)))
    np.testing.assert_array_equal(buffer.read(149), np.full(3, 149.0))
    stacked = buffer.stack(150, np.full(3, np.nan))
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
        ys = symadj.odeint(lambda t, y: -y, y0, torch.tensor([0.0, 1.0]), method="rk4", options={"step_size": 0.01},
                           gradient="symplectic")
    finally:
        del backend.buffer
    ys[-1].sum().backward()
    assert seen and set(seen) == {StackedBuffer}
    assert torch.allclose(y0.grad, torch.exp(torch.tensor(-1.0)).expand(2), rtol=1e-6)
