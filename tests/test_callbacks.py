"""torchdiffeq's step callbacks on func: callback_step before each attempt, callback_accept_step
and callback_reject_step after, their _adjoint forms in gradient="adjoint"'s backward solves."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import symadj

torch = pytest.importorskip("torch")


class Stiffish(torch.nn.Module):
    """A field whose first step is rejected at the default first-step choice, logging its callbacks."""

    def __init__(self, adjoint_callbacks: bool = False) -> None:
        super().__init__()
        self.rate = torch.nn.Parameter(torch.tensor(3.0, dtype=torch.float64))
        self.log: list[tuple] = []
        if adjoint_callbacks:
            self.callback_step_adjoint = lambda t, state, dt: self.log.append(("adjoint", len(state), float(dt)))

    def forward(self, t, y):
        return -self.rate * y * (1 + torch.sin(5 * t))

    def callback_step(self, t0, y0, dt):
        self.log.append(("step", float(t0), float(dt), y0.clone()))

    def callback_accept_step(self, t0, y0, dt):
        self.log.append(("accept", float(t0), float(dt)))

    def callback_reject_step(self, t0, y0, dt):
        self.log.append(("reject", float(t0), float(dt)))


def kinds(log):
    return [entry[0] for entry in log]


@pytest.mark.parametrize("gradient", ["symplectic", "backprop"])
def test_every_attempt_is_announced_and_then_accepted_or_rejected(gradient):
    field = Stiffish()
    y0 = torch.tensor([1.0, 2.0], dtype=torch.float64)
    sol = symadj.solve(field, y0, torch.linspace(0.0, 2.0, 5, dtype=torch.float64), gradient=gradient,
                       rtol=1e-8, atol=1e-8, options={"first_step": 0.5})
    log = kinds(field.log)
    assert log.count("step") == int(sol.stats.n_attempts)
    assert log.count("accept") == int(sol.stats.n_accepted) and log.count("reject") == int(sol.stats.n_rejected) > 0
    # Each attempt is followed by its verdict, for the same step.
    for announced, verdict in zip(field.log[::2], field.log[1::2]):
        assert announced[0] == "step" and verdict[0] in ("accept", "reject")
        assert announced[1:3] == verdict[1:3]
    accepted_starts = [entry[1] for entry in field.log if entry[0] == "accept"]
    assert accepted_starts[0] == 0.0 and accepted_starts == sorted(accepted_starts)
    first = field.log[0]
    assert first[1:3] == (0.0, 0.5) and torch.equal(first[3], y0)


def test_tuple_states_reach_the_callbacks_as_tuples():
    seen = []

    class Pair(torch.nn.Module):
        def forward(self, t, y):
            return (-y[0], y[0] - y[1])

        def callback_accept_step(self, t0, y0, dt):
            seen.append(type(y0))

    symadj.odeint(Pair(), (torch.ones(2), torch.zeros(2)), torch.linspace(0.0, 1.0, 3))
    assert seen and all(kind is tuple for kind in seen)


def test_adjoint_callbacks_run_in_the_backward_solves_of_the_continuous_adjoint():
    field = Stiffish(adjoint_callbacks=True)
    y0 = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    symadj.odeint(field, y0, torch.linspace(0.0, 2.0, 5, dtype=torch.float64), gradient="adjoint").sum().backward()
    backward = [entry for entry in field.log if entry[0] == "adjoint"]
    assert len(backward) > 4
    # (y, adj_y, adj_rate): the augmented state, its steps going back in time.
    assert {entry[1] for entry in backward} == {3} and all(entry[2] < 0 for entry in backward)


def test_adjoint_callbacks_in_an_exact_mode_warn_that_they_are_not_called():
    field = Stiffish(adjoint_callbacks=True)
    with pytest.warns(UserWarning, match="gradient='auto' has none"):
        symadj.odeint(field, torch.ones(2, dtype=torch.float64), torch.linspace(0.0, 1.0, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        symadj.odeint(Stiffish(), torch.ones(2, dtype=torch.float64), torch.linspace(0.0, 1.0, 3))


def test_jax_calls_them_from_the_compiled_loop():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    accepted = []

    class Decay:
        def __call__(self, t, y):
            return -y

        def callback_accept_step(self, t0, y0, dt):
            accepted.append((float(t0), np.asarray(y0).copy()))

    sol = jax.jit(lambda y0: symadj.solve(Decay(), y0, jnp.linspace(0.0, 1.0, 3)))(jnp.ones(2))
    jax.effects_barrier()
    assert len(accepted) == int(sol.stats.n_accepted)
    assert accepted[0][0] == 0.0 and np.allclose(accepted[0][1], 1.0)
