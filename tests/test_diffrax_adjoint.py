"""symadj.diffrax.SymplecticAdjoint: diffrax's forward solve unchanged, the gradient equal to
RecursiveCheckpointAdjoint's (backpropagation through the same discrete solve) to 1e-10 in float64."""

from __future__ import annotations

import pytest

# symadj.diffrax refuses an older diffrax (test_an_older_diffrax_is_refused_at_import).
diffrax = pytest.importorskip("diffrax", minversion="0.7")
eqx = pytest.importorskip("equinox")
optx = pytest.importorskip("optimistix")

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


def solve(adjoint, solver, controller, saveat, y0, args, dt0=0.1, max_steps=512, **kwargs):
    return diffrax.diffeqsolve(diffrax.ODETerm(field), solver, 0.0, T1, dt0, y0, args=args, adjoint=adjoint,
                               stepsize_controller=controller, saveat=saveat, max_steps=max_steps, **kwargs)


def weighted_sum(tree):
    """A loss that weighs every output differently, so that a misplaced cotangent shows."""
    total = 0.0
    for leaf in jax.tree.leaves(tree):
        weights = jnp.arange(1.0, 1.0 + leaf.size).reshape(leaf.shape)
        total = total + jnp.sum(weights * jnp.sin(jnp.where(jnp.isfinite(leaf), leaf, 0.0)))
    return total


def loss_and_grad(adjoint, solver, controller, saveat, **kwargs):
    y0, args = problem()

    @jax.jit
    def run(y0, args):
        def loss(y0, args):
            sol = solve(adjoint, solver, controller, saveat, y0, args, **kwargs)
            return weighted_sum(sol.ys), sol

        return jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(y0, args)

    return run(y0, args)


def assert_same_solve_and_gradient(solver, controller, saveat, adjoint=None, reference=None, **kwargs):
    adjoint = SymplecticAdjoint() if adjoint is None else adjoint
    reference = diffrax.RecursiveCheckpointAdjoint() if reference is None else reference
    (_, ours), grad = loss_and_grad(adjoint, solver, controller, saveat, **kwargs)
    (_, theirs), expected = loss_and_grad(reference, solver, controller, saveat, **kwargs)
    for got, want in zip(jax.tree.leaves((ours.ts, ours.ys)), jax.tree.leaves((theirs.ts, theirs.ys))):
        np.testing.assert_array_equal(got, want)
    assert ours.stats["num_accepted_steps"] == theirs.stats["num_accepted_steps"]
    assert ours.stats["num_rejected_steps"] == theirs.stats["num_rejected_steps"]
    assert ours.result == theirs.result
    for got, want in zip(jax.tree.leaves(grad), jax.tree.leaves(expected)):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10 * float(jnp.max(jnp.abs(want))))
    return ours


def grid(*axes, fast):
    """The product of ``axes`` as pytest params, all but ``fast`` (one tuple, by id; ``None``: none) marked
    slow: diffrax's compilation costs seconds a case, so the default run keeps at most one case of each grid."""
    cases = [()]
    for axis in axes:
        cases = [case + (value,) for case in cases for value in axis]
    ident = lambda value: value if isinstance(value, str) else type(value).__name__  # noqa: E731
    return [pytest.param(*case, id="-".join(map(ident, case)),
                         marks=() if tuple(map(ident, case)) == fast else pytest.mark.slow) for case in cases]


SOLVERS = [diffrax.Euler(), diffrax.Heun(), diffrax.Midpoint(), diffrax.Ralston(), diffrax.Bosh3(),
           diffrax.Tsit5(), diffrax.Dopri5(), diffrax.Dopri8()]
ADAPTIVE = [s for s in SOLVERS if not isinstance(s, (diffrax.Euler, diffrax.Midpoint, diffrax.Ralston))]
SAVEATS = {
    "t1": diffrax.SaveAt(t1=True),
    "ts": diffrax.SaveAt(ts=jnp.linspace(0.0, T1, 7)),
    "t0-ts-t1-fn": diffrax.SaveAt(t0=True, ts=jnp.array([0.05, 0.31, 0.32, 1.5]), t1=True,
                                  fn=lambda t, y, a: y * a["b"]),
}


@pytest.mark.parametrize(("solver", "saveat"), grid(SOLVERS, list(SAVEATS), fast=("Tsit5", "t0-ts-t1-fn")))
def test_constant_steps(solver, saveat):
    assert_same_solve_and_gradient(solver, diffrax.ConstantStepSize(), SAVEATS[saveat])


@pytest.mark.parametrize(("solver", "saveat"), grid(ADAPTIVE, list(SAVEATS), fast=("Dopri5", "ts")))
def test_pid_controller(solver, saveat):
    controller = diffrax.PIDController(rtol=1e-4, atol=1e-6, pcoeff=0.3, icoeff=0.4)
    assert_same_solve_and_gradient(solver, controller, SAVEATS[saveat])


@pytest.mark.slow
def test_rejected_steps_are_walked_past():
    controller = diffrax.PIDController(rtol=1e-7, atol=1e-7)
    (_, sol), _ = loss_and_grad(SymplecticAdjoint(), diffrax.Dopri5(), controller, SAVEATS["ts"], dt0=1.0)
    assert sol.stats["num_rejected_steps"] > 0  # else the comparison below tests nothing new
    assert_same_solve_and_gradient(diffrax.Dopri5(), controller, SAVEATS["ts"], dt0=1.0)


STEPS = {
    "steps": diffrax.SaveAt(steps=True),
    "t0-steps-fn": diffrax.SaveAt(t0=True, steps=True, fn=lambda t, y, a: y * a["b"] * t),
    "subs": diffrax.SaveAt(subs=[diffrax.SubSaveAt(ts=jnp.linspace(0.0, T1, 4)), diffrax.SubSaveAt(steps=True),
                                 diffrax.SubSaveAt(t1=True, fn=lambda t, y, a: jnp.sum(y**2))]),
    # 20 constant steps: steps=3 saves t1 in a row of its own, steps=2 and 4 as their last step.
    "steps=3-t0-t1": diffrax.SaveAt(steps=3, t1=True, t0=True),
    "ts-and-steps-in-one": diffrax.SaveAt(subs=[
        diffrax.SubSaveAt(steps=2, t1=True, fn=lambda t, y, a: y * a["b"] * t),
        diffrax.SubSaveAt(ts=jnp.array([0.05, 0.31, 0.32, 1.5]), steps=4, t0=True),
        diffrax.SubSaveAt(ts=jnp.linspace(0.0, T1, 6), steps=True, t1=True)]),
}


@pytest.mark.parametrize(("controller", "saveat"), grid(
    [diffrax.ConstantStepSize(), diffrax.PIDController(rtol=1e-4, atol=1e-6)], list(STEPS),
    fast=None))
def test_saveat_steps_and_subs(controller, saveat):
    assert_same_solve_and_gradient(diffrax.Tsit5(), controller, STEPS[saveat])


@pytest.mark.slow
@pytest.mark.parametrize("controller", [
    diffrax.StepTo(ts=jnp.array([0.0, 0.3, 0.35, 1.0, T1])),
    diffrax.PIDController(rtol=1e-5, atol=1e-7, jump_ts=jnp.array([0.5, 1.2]), step_ts=jnp.array([0.7])),
], ids=["StepTo", "PID-jump_ts-step_ts"])
def test_step_to_and_jumps(controller):
    dt0 = None if isinstance(controller, diffrax.StepTo) else 0.1
    assert_same_solve_and_gradient(diffrax.Dopri5(), controller, SAVEATS["t0-ts-t1-fn"], dt0=dt0)


@pytest.mark.slow
def test_throw_false_keeps_the_accepted_steps():
    controller = diffrax.PIDController(rtol=1e-8, atol=1e-8)
    (_, sol), _ = loss_and_grad(SymplecticAdjoint(), diffrax.Heun(), controller, SAVEATS["ts"], throw=False)
    assert sol.result != diffrax.RESULTS.successful  # max_steps=512 runs out: the failed solve is differentiated
    assert_same_solve_and_gradient(diffrax.Heun(), controller, SAVEATS["ts"], throw=False)


class _SSPRK3(diffrax.AbstractERK):
    """A user's explicit solver: a ButcherTableau diffrax does not ship."""

    tableau = diffrax.ButcherTableau(c=np.array([1.0, 0.5]), b_sol=np.array([1 / 6, 1 / 6, 2 / 3]),
                                     b_error=np.array([1 / 6, 1 / 6, -1 / 3]),
                                     a_lower=(np.array([1.0]), np.array([0.25, 0.25])))
    interpolation_cls = diffrax.ThirdOrderHermitePolynomialInterpolation.from_k

    def order(self, terms):
        return 3


@pytest.mark.slow
def test_a_users_explicit_solver():
    assert symadj.diffrax.partner_tableau(_SSPRK3.tableau, 3, "ssprk3").name == "ssprk3"
    assert_same_solve_and_gradient(_SSPRK3(), diffrax.PIDController(rtol=1e-4, atol=1e-6), SAVEATS["t0-ts-t1-fn"])


def grads_of(loss, *primals):
    """``loss(adjoint, *primals)``'s gradient under both adjoints, jitted."""
    ours = eqx.filter_jit(eqx.filter_grad(lambda *p: loss(SymplecticAdjoint(), *p)))(*primals)
    theirs = eqx.filter_jit(eqx.filter_grad(lambda *p: loss(diffrax.RecursiveCheckpointAdjoint(), *p)))(*primals)
    return ours, theirs


def assert_close_trees(ours, theirs):
    for got, want in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10 * float(jnp.max(jnp.abs(want))))


def test_a_closure_over_a_traced_array_is_differentiated():
    y0, args = problem()

    def loss(adjoint, w):
        term = diffrax.ODETerm(lambda t, y, _: jnp.tanh(w @ y))
        return weighted_sum(diffrax.diffeqsolve(term, diffrax.Tsit5(), 0.0, 1.0, 0.1, y0, adjoint=adjoint,
                                                saveat=diffrax.SaveAt(ts=jnp.linspace(0.0, 1.0, 5)), max_steps=64).ys)

    ours, theirs = grads_of(loss, args["w"])
    assert float(jnp.max(jnp.abs(ours))) > 0.1
    assert_close_trees(ours, theirs)


class _Field(eqx.Module):
    mlp: eqx.nn.MLP

    def __call__(self, t, y, args):
        return self.mlp(y) * jnp.cos(t)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["field", "closed-over"])
def test_equinox_modules(how):
    y0, _ = problem()
    mlp = eqx.nn.MLP(3, 3, 8, 2, key=jax.random.PRNGKey(0))

    def loss(adjoint, mlp):
        term = diffrax.ODETerm(_Field(mlp) if how == "field" else (lambda t, y, _: mlp(y)))
        controller = diffrax.PIDController(rtol=1e-5, atol=1e-7)
        return weighted_sum(diffrax.diffeqsolve(term, diffrax.Dopri5(), 0.0, 1.0, 0.1, y0, adjoint=adjoint,
                                                stepsize_controller=controller, max_steps=64).ys)

    assert_close_trees(*grads_of(loss, mlp))


@pytest.mark.slow
def test_vmap_over_initial_states_and_a_pytree_state():
    y0, args = problem()

    def loss(adjoint, y0, args):
        term = diffrax.ODETerm(lambda t, y, a: {"p": jnp.tanh(a["w"] @ y["q"]), "q": -y["p"]})
        sol = diffrax.diffeqsolve(term, diffrax.Tsit5(), 0.0, 1.0, 0.1, y0, args=args, adjoint=adjoint,
                                  stepsize_controller=diffrax.PIDController(rtol=1e-5, atol=1e-7),
                                  saveat=diffrax.SaveAt(ts=jnp.linspace(0.0, 1.0, 5)), max_steps=64)
        return weighted_sum(sol.ys)

    def batched(adjoint):
        grad = jax.grad(lambda y, a: loss(adjoint, y, a), argnums=(0, 1))
        states = {"p": jnp.stack([y0, 2 * y0, -y0]), "q": jnp.stack([y0, y0, 0.5 * y0])}
        return jax.jit(jax.vmap(grad, in_axes=(0, None)))(states, args)

    assert_close_trees(batched(SymplecticAdjoint()), batched(diffrax.RecursiveCheckpointAdjoint()))


@pytest.mark.slow
def test_time_running_backwards():
    y0, args = problem()

    def loss(adjoint, args):
        saveat = diffrax.SaveAt(ts=jnp.array([1.9, 1.0, 0.5]), t1=True)
        return weighted_sum(diffrax.diffeqsolve(diffrax.ODETerm(field), diffrax.Tsit5(), T1, 0.0, -0.1, y0,
                                                args=args, adjoint=adjoint, saveat=saveat, max_steps=64).ys)

    assert_close_trees(*grads_of(loss, args))


THINNED = {
    "checkpoints=2": SymplecticAdjoint(checkpoints=2),
    "checkpoints=6": SymplecticAdjoint(checkpoints=6),
    "memory=1200": SymplecticAdjoint(memory=1200),  # 50 states of 24 bytes for max_steps=512: 34 kept
}


@pytest.mark.parametrize("adjoint", [pytest.param(name, marks=() if name == "checkpoints=2" else pytest.mark.slow)
                                     for name in THINNED])
def test_thinned_states_give_the_same_gradient(adjoint):
    adjoint = THINNED[adjoint]
    y0, _ = problem()
    held = adjoint.plan(512, y0)
    controller = diffrax.PIDController(rtol=1e-10, atol=1e-12)  # 51 steps
    (_, sol), _ = loss_and_grad(adjoint, diffrax.Tsit5(), controller, SAVEATS["t0-ts-t1-fn"], dt0=0.05)
    assert int(sol.stats["num_accepted_steps"]) > held.checkpoints > 1  # thinned: strides 2, 4, ... ran
    saveat = diffrax.SaveAt(subs=[diffrax.SubSaveAt(ts=jnp.linspace(0.0, T1, 23)), diffrax.SubSaveAt(steps=True),
                                  diffrax.SubSaveAt(t0=True, t1=True, fn=lambda t, y, a: y * a["b"])])
    assert_same_solve_and_gradient(diffrax.Tsit5(), controller, saveat, adjoint=adjoint, dt0=0.05)


@pytest.mark.parametrize(("kept", "saveat"), [
    pytest.param("checkpoints=2", "t0-ts-t1-fn", id="checkpoints=2-t0-ts-t1-fn", marks=pytest.mark.slow),
    pytest.param("checkpoints=2", "t1", id="checkpoints=2-t1", marks=pytest.mark.slow),
    pytest.param("checkpoints=4", "ts", id="checkpoints=4-ts", marks=pytest.mark.slow),
    pytest.param("memory=512", "t0-ts-t1-fn", id="memory=512-t0-ts-t1-fn", marks=pytest.mark.slow),
])
def test_unbounded_max_steps_with_kept_states(kept, saveat, monkeypatch):
    """max_steps=None with K kept loop states: 10 accepted steps (and rejected tries) through K = 2 or 4 slots
    and segments of K states, so steps are re-run from a slot, from a segment's slot, and quadratically within;
    memory= counts whole loop states (the state, the solver's and the controller's), not states of y0's size."""
    from symadj_jax import diffrax_adjoint

    planned = []
    monkeypatch.setattr(diffrax_adjoint, "plan", lambda *a, **k: planned.append(a) or plan(*a, **k))
    plan = symadj.diffrax.plan
    adjoint = {"checkpoints=2": SymplecticAdjoint(checkpoints=2), "checkpoints=4": SymplecticAdjoint(checkpoints=4),
               "memory=512": SymplecticAdjoint(memory=512)}[kept]
    controller = diffrax.PIDController(rtol=1e-7, atol=1e-7)
    sol = assert_same_solve_and_gradient(diffrax.Tsit5(), controller, SAVEATS[saveat], adjoint=adjoint, dt0=1.0,
                                         reference=diffrax.RecursiveCheckpointAdjoint(checkpoints=4),
                                         max_steps=None)
    (_, slot_bytes, *_), *_ = planned
    assert slot_bytes > 2 * 3 * 8  # a loop state: more than y and the solver's last stage
    checkpoints = plan(None, slot_bytes, adjoint.checkpoints, adjoint.memory).checkpoints
    assert checkpoints * slot_bytes * 2 <= (adjoint.memory or float("inf"))
    assert int(sol.stats["num_rejected_steps"]) > 0
    assert int(sol.stats["num_accepted_steps"]) > checkpoints * 2  # thinned at least once, segments re-run


def test_unbounded_max_steps_needs_the_kept_states():
    y0, args = problem()
    with pytest.raises(symadj.diffrax.DiffraxScopeError, match=r"max_steps: None needs .*checkpoints=K"):
        jax.grad(lambda y: jnp.sum(solve(SymplecticAdjoint(), diffrax.Tsit5(), diffrax.ConstantStepSize(),
                                         SAVEATS["t1"], y, args, max_steps=None).ys))(y0)
    with pytest.raises(symadj.SymadjError, match="checkpoints= or memory="):
        symadj.diffrax.plan(None, 24)
    with pytest.raises(symadj.SymadjError, match="memory >= 96 bytes"):
        SymplecticAdjoint(memory=50).plan(None, y0)


def test_the_held_states_follow_the_budget():
    y0 = jnp.zeros(100)  # 800 bytes a state
    assert SymplecticAdjoint().plan(4096, y0) == (64, 64)  # about 2·√max_steps states by default
    assert SymplecticAdjoint(memory=800 * 5000).plan(4096, y0) == (4096, 1)  # all fit: no recomputation
    held = SymplecticAdjoint(memory=800 * 200).plan(4096, y0)
    assert held.states <= 200 and held.checkpoints * held.segment >= 4096
    assert SymplecticAdjoint(checkpoints=1001).plan(4096, y0) == (1000, 8)
    with pytest.raises(symadj.SymadjError, match="memory >= "):
        SymplecticAdjoint(memory=800 * 20).plan(4096, y0)
    with pytest.raises(symadj.SymadjError, match="checkpoints=0"):
        SymplecticAdjoint(checkpoints=0)


def _temp_bytes(adjoint, max_steps):
    """Compiled temp memory of a gradient through a small MLP field's solve."""
    mlp = eqx.nn.MLP(64, 64, 128, 2, key=jax.random.PRNGKey(0))
    params, static = eqx.partition(mlp, eqx.is_array)

    def loss(params, y0):
        term = diffrax.ODETerm(lambda t, y, _: eqx.combine(params, static)(y))
        sol = diffrax.diffeqsolve(term, diffrax.Tsit5(), 0.0, 1.0, 0.1, y0, adjoint=adjoint, max_steps=max_steps,
                                  stepsize_controller=diffrax.PIDController(rtol=1e-5, atol=1e-7))
        return jnp.sum(sol.ys)

    compiled = jax.jit(jax.grad(loss)).lower(params, jnp.ones(64)).compile()
    return compiled.memory_analysis().temp_size_in_bytes


@pytest.mark.slow
def test_compiled_memory_is_bounded():
    default, rca = _temp_bytes(SymplecticAdjoint(), 4096), _temp_bytes(diffrax.RecursiveCheckpointAdjoint(), 4096)
    assert default < rca
    small, large = (_temp_bytes(SymplecticAdjoint(memory="128KiB"), m) for m in (1024, 8192))
    # Beyond the budget, only the per-step scalars (two float64 times: 16 bytes a step) grow.
    assert large - small <= 16 * (8192 - 1024) + 16 * 1024


@pytest.mark.parametrize("event", [
    pytest.param(diffrax.Event(lambda t, y, args, **kw: y[0] < 0.2), id="boolean"),
    pytest.param(diffrax.Event(lambda t, y, args, **kw: y[0] - 0.2), id="real", marks=pytest.mark.slow),
])
def test_an_event_without_root_finder_ends_the_differentiated_solve(event):
    # The event (at t = 1.1) ends the solve before the last ts: t1 is saved in the row after 0.32's.
    saveat = SAVEATS["t0-ts-t1-fn"]
    (_, sol), _ = loss_and_grad(SymplecticAdjoint(), diffrax.Tsit5(), diffrax.ConstantStepSize(), saveat, event=event)
    assert sol.result == diffrax.RESULTS.event_occurred and float(sol.ts[4]) < 1.5
    assert_same_solve_and_gradient(diffrax.Tsit5(), diffrax.ConstantStepSize(), saveat, event=event)


TIMES = {
    "t0": lambda t: dict(t0=t - 1.0),
    "t1": lambda t: dict(t1=t + 1.0),
    "ts": lambda t: dict(saveat=diffrax.SaveAt(ts=jnp.stack([0.5 * t, t]))),
    "dt0": lambda t: dict(dt0=0.1 * t),
    "StepTo": lambda t: dict(dt0=None, stepsize_controller=diffrax.StepTo(ts=jnp.stack([0.0, t, T1]))),
}


@pytest.mark.parametrize("case", list(TIMES), ids=str)
def test_gradients_to_times_are_refused(case):
    y0, args = problem()

    def loss(t):
        kwargs = dict(terms=diffrax.ODETerm(field), solver=diffrax.Tsit5(), t0=0.0, t1=T1, dt0=0.1, y0=y0,
                      args=args, max_steps=64) | TIMES[case](t)
        return jnp.sum(diffrax.diffeqsolve(**kwargs, adjoint=SymplecticAdjoint()).ys)

    with pytest.raises(symadj.diffrax.DiffraxScopeError, match="times.*RecursiveCheckpointAdjoint"):
        jax.grad(loss)(1.0)


def _sde_terms():
    brownian = diffrax.VirtualBrownianTree(0.0, T1, tol=1e-3, shape=(3,), key=jax.random.PRNGKey(0))
    return diffrax.MultiTerm(diffrax.ODETerm(field), diffrax.ControlTerm(lambda t, y, a: jnp.eye(3), brownian))


REFUSED = {
    "implicit solver": dict(solver=diffrax.Kvaerno5(), stepsize_controller=diffrax.PIDController(rtol=1e-4, atol=1e-6)),
    "SDE terms": dict(terms=_sde_terms(), solver=diffrax.Euler()),
    "CDE term": dict(terms=diffrax.ControlTerm(lambda t, y, a: jnp.eye(3), diffrax.LinearInterpolation(
        ts=jnp.array([0.0, T1]), ys=jnp.zeros((2, 3))))),
    "dense": dict(saveat=diffrax.SaveAt(dense=True)),
    "event with a root finder": dict(event=diffrax.Event(lambda t, y, args, **kw: y[0] - 10.0,
                                                         root_finder=optx.Newton(rtol=1e-8, atol=1e-8))),
    "max_steps=None without checkpoints or memory": dict(max_steps=None),
}


@pytest.mark.parametrize("case", list(REFUSED), ids=str)
def test_out_of_scope_solves_are_refused_when_traced(case):
    y0, args = problem()
    kwargs = dict(terms=diffrax.ODETerm(field), solver=diffrax.Tsit5(), t0=0.0, t1=T1, dt0=0.1, y0=y0, args=args,
                  max_steps=64) | REFUSED[case]
    with pytest.raises(symadj.diffrax.DiffraxScopeError, match="RecursiveCheckpointAdjoint"):
        jax.grad(lambda y: jnp.sum(diffrax.diffeqsolve(**(kwargs | dict(y0=y)), adjoint=SymplecticAdjoint()).ys))(y0)


@pytest.mark.parametrize("case", ["implicit solver", "dense", "max_steps=None without checkpoints or memory"], ids=str)
def test_out_of_scope_solves_still_solve_forward(case):
    y0, args = problem()
    kwargs = dict(terms=diffrax.ODETerm(field), solver=diffrax.Tsit5(), t0=0.0, t1=T1, dt0=0.1, y0=y0, args=args,
                  max_steps=64) | REFUSED[case]
    ours = diffrax.diffeqsolve(**kwargs, adjoint=SymplecticAdjoint())
    theirs = diffrax.diffeqsolve(**kwargs, adjoint=diffrax.RecursiveCheckpointAdjoint())
    np.testing.assert_array_equal(ours.ys, theirs.ys)


def test_the_bench_row_is_diffrax_with_this_adjoint():
    bench_case = pytest.importorskip("symadj_jax.bench_case")
    assert isinstance(bench_case._diffrax_adjoint("SymplecticAdjoint"), SymplecticAdjoint)
    assert isinstance(bench_case._diffrax_adjoint("RecursiveCheckpointAdjoint"), diffrax.RecursiveCheckpointAdjoint)


def test_an_empty_state_solves():
    sol = diffrax.diffeqsolve(diffrax.ODETerm(lambda t, y, a: None), diffrax.Tsit5(), 0.0, 1.0, 0.1, None,
                              adjoint=SymplecticAdjoint(), max_steps=16)
    assert sol.ys is None and int(sol.stats["num_accepted_steps"]) == 10


def test_an_older_diffrax_is_refused_at_import():
    from symadj_jax.diffrax_adjoint import require_diffrax

    for old in ("0.6.1", "0.5.0", "0.6"):
        with pytest.raises(ImportError, match=r"diffrax>=0\.7, found " + old.replace(".", r"\.")):
            require_diffrax(old)
    for new in ("0.7.0", "0.7.2", "0.10.1", "1.0.0rc1"):
        require_diffrax(new)
