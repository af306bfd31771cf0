"""symadj.diffrax.SymplecticAdjoint: diffrax's forward solve unchanged, the gradient equal to
RecursiveCheckpointAdjoint's (backpropagation through the same discrete solve) to 1e-10 in float64."""

from __future__ import annotations

import pytest

diffrax = pytest.importorskip("diffrax")
eqx = pytest.importorskip("equinox")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import symadj.diffrax  # noqa: E402

SymplecticAdjoint = symadj.diffrax.SymplecticAdjoint
T1 = 2.0


def field(t, y, args):
    return jnp.tanh(args["w"] @ y + args["b"]) * jnp.cos(t) - 0.3 * y


def problem():
    rng = np.random.default_rng(0)
    args = {"w": jnp.asarray(rng.normal(size=(3, 3))), "b": jnp.asarray(rng.normal(size=3))}
    return jnp.array([1.0, -0.5, 0.3]), args


def solve(adjoint, solver, controller, saveat, y0, args, dt0=0.1, **kwargs):
    return diffrax.diffeqsolve(diffrax.ODETerm(field), solver, 0.0, T1, dt0, y0, args=args, adjoint=adjoint,
                               stepsize_controller=controller, saveat=saveat, max_steps=512, **kwargs)


def loss_and_grad(adjoint, solver, controller, saveat, **kwargs):
    y0, args = problem()

    @jax.jit
    def run(y0, args):
        def loss(y0, args):
            sol = solve(adjoint, solver, controller, saveat, y0, args, **kwargs)
            weights = jnp.arange(1.0, 1.0 + sol.ys.size).reshape(sol.ys.shape)
            return jnp.sum(weights * jnp.sin(sol.ys)), sol

        return jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(y0, args)

    return run(y0, args)


def assert_same_solve_and_gradient(solver, controller, saveat, **kwargs):
    (_, ours), grad = loss_and_grad(SymplecticAdjoint(), solver, controller, saveat, **kwargs)
    (_, theirs), expected = loss_and_grad(diffrax.RecursiveCheckpointAdjoint(), solver, controller, saveat, **kwargs)
    np.testing.assert_array_equal(ours.ts, theirs.ts)
    np.testing.assert_array_equal(ours.ys, theirs.ys)
    assert ours.stats["num_accepted_steps"] == theirs.stats["num_accepted_steps"]
    assert ours.stats["num_rejected_steps"] == theirs.stats["num_rejected_steps"]
    assert ours.result == theirs.result
    for got, want in zip(jax.tree.leaves(grad), jax.tree.leaves(expected)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10 * float(jnp.max(jnp.abs(want))))


SOLVERS = [diffrax.Euler(), diffrax.Heun(), diffrax.Midpoint(), diffrax.Ralston(), diffrax.Bosh3(),
           diffrax.Tsit5(), diffrax.Dopri5(), diffrax.Dopri8()]
ADAPTIVE = [s for s in SOLVERS if not isinstance(s, (diffrax.Euler, diffrax.Midpoint, diffrax.Ralston))]
SAVEATS = {
    "t1": diffrax.SaveAt(t1=True),
    "ts": diffrax.SaveAt(ts=jnp.linspace(0.0, T1, 7)),
    "t0-ts-t1-fn": diffrax.SaveAt(t0=True, ts=jnp.array([0.05, 0.31, 0.32, 1.5]), t1=True,
                                  fn=lambda t, y, a: y * a["b"]),
}


@pytest.mark.parametrize("saveat", list(SAVEATS), ids=str)
@pytest.mark.parametrize("solver", SOLVERS, ids=lambda s: type(s).__name__)
def test_constant_steps(solver, saveat):
    assert_same_solve_and_gradient(solver, diffrax.ConstantStepSize(), SAVEATS[saveat])


@pytest.mark.parametrize("saveat", list(SAVEATS), ids=str)
@pytest.mark.parametrize("solver", ADAPTIVE, ids=lambda s: type(s).__name__)
def test_pid_controller(solver, saveat):
    controller = diffrax.PIDController(rtol=1e-4, atol=1e-6, pcoeff=0.3, icoeff=0.4)
    assert_same_solve_and_gradient(solver, controller, SAVEATS[saveat])


def test_rejected_steps_are_walked_past():
    controller = diffrax.PIDController(rtol=1e-7, atol=1e-7)
    (_, sol), _ = loss_and_grad(SymplecticAdjoint(), diffrax.Dopri5(), controller, SAVEATS["ts"], dt0=1.0)
    assert sol.stats["num_rejected_steps"] > 0  # else the comparison below tests nothing new
    assert_same_solve_and_gradient(diffrax.Dopri5(), controller, SAVEATS["ts"], dt0=1.0)
