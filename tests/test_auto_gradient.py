"""gradient="auto" (symadj.AutoGradient): backprop's graph for the first steps, the symplectic
walk for the rest; the same steps, outputs, events and statistics as one solve, and the
gradient of plain backprop through it (torch autograd), with the switch anywhere."""

from __future__ import annotations

import pytest
import torch

import symadj

RTOL = 1e-10


def _problem(dtype=torch.float64):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).to(dtype)
    y0 = torch.randn(4, 3, dtype=dtype, requires_grad=True)
    return net, y0


def _run(mode, method="dopri5", t=None, dtype=torch.float64, **kwargs):
    """The solution and the gradient of a loss on every output (and the event time and state)."""
    net, y0 = _problem(dtype)
    t = torch.linspace(0.0, 2.0, 7, dtype=torch.float64) if t is None else t
    sol = symadj.solve(lambda t, y: net(y), y0, t, method=method, gradient=mode, **kwargs)
    loss = (sol.ys * torch.linspace(0.5, 1.5, 3, dtype=dtype)).pow(2).sum()
    if sol.event is not None:
        loss = loss + 3.0 * sol.event.t.sum() + sol.event.y.sin().sum()
    loss.backward()
    grad = torch.cat([y0.grad.flatten(), *(p.grad.flatten() for p in net.parameters())])
    return sol, grad


def _same_solve(sol, ref):
    assert torch.equal(sol.ys.detach(), ref.ys.detach())
    for name in ("n_attempts", "n_accepted", "n_rejected", "n_fevals", "n_outputs", "status"):
        assert int(getattr(sol.stats, name)) == int(getattr(ref.stats, name)), name
    assert float(sol.stats.t_final) == float(ref.stats.t_final)
    if ref.event is not None:
        assert torch.equal(sol.event.t.detach(), ref.event.t.detach()) and torch.equal(sol.event.fired, ref.event.fired)


def _close(grad, ref):
    assert float((grad - ref).norm() / ref.norm()) <= RTOL


def _switches(n_accepted):
    """At the first step, in the middle, never (past the last step)."""
    return (0, n_accepted // 2, n_accepted + 1)


SOLVES = {
    "dopri5": {"method": "dopri5", "rtol": 1e-7, "atol": 1e-9},  # FSAL, zero weights
    "tsit5": {"method": "tsit5", "rtol": 1e-7, "atol": 1e-9},  # FSAL
    "cash_karp": {"method": "cash_karp", "rtol": 1e-7, "atol": 1e-9},  # zero weights, no FSAL
    "rk4": {"method": "rk4", "options": {"step_size": 0.15}},  # fixed steps, outputs between them
}


@pytest.mark.parametrize("name", sorted(SOLVES))
def test_equals_backprop_with_the_switch_anywhere(name):
    ref, ref_grad = _run("backprop", **SOLVES[name])
    n = int(ref.stats.n_accepted)
    assert n >= 6
    for switch in _switches(n):
        sol, grad = _run(symadj.AutoGradient(switch_step=switch), **SOLVES[name])
        _same_solve(sol, ref)
        _close(grad, ref_grad)
        assert int(sol.stats.graph_steps) == min(switch, n) and int(sol.stats.walk_steps) == n - min(switch, n)


def test_a_user_tableau_and_rejected_steps():
    heun = symadj.get_tableau("heun_euler")
    user = symadj.Tableau("my_heun", c=heun.c, a=heun.a, b=heun.b, order=heun.order, embedded=heun.embedded)
    kwargs = {"method": user, "rtol": 1e-4, "atol": 1e-6, "t": torch.tensor([0.0, 0.7, 2.0], dtype=torch.float64)}
    ref, ref_grad = _run("backprop", **kwargs)
    n = int(ref.stats.n_accepted)
    assert int(ref.stats.n_rejected) > 0
    for switch in _switches(n):
        sol, grad = _run(symadj.AutoGradient(switch_step=switch), **kwargs)
        _same_solve(sol, ref)
        _close(grad, ref_grad)


def test_events_on_either_side_of_the_switch():
    def event(t, y):
        return y[:, 0].sum() + 3.5

    t = torch.tensor([0.0, 0.4, 0.8, 5.0], dtype=torch.float64)
    ref, ref_grad = _run("backprop", t=t, event=event, rtol=1e-7, atol=1e-9)
    assert bool(ref.event.fired)
    n = int(ref.stats.n_accepted)  # the event fires in the last step
    for switch in (0, n // 2, n - 1, n, n + 1):
        sol, grad = _run(symadj.AutoGradient(switch_step=switch), t=t, event=event, rtol=1e-7, atol=1e-9)
        _same_solve(sol, ref)
        _close(grad, ref_grad)


def test_per_row_events_run_the_symplectic_mode():
    def event(t, y):
        return y[:, 0] + 1.0

    t = torch.tensor([0.0, 5.0], dtype=torch.float64)
    ref, ref_grad = _run("backprop", t=t, event=event, rtol=1e-7, atol=1e-9)
    sol, grad = _run(symadj.AutoGradient(switch_step=2), t=t, event=event, rtol=1e-7, atol=1e-9)
    _close(grad, ref_grad)
    assert int(sol.stats.graph_steps) == 0 and int(sol.stats.walk_steps) == int(ref.stats.n_accepted)


def test_float32_smoke():
    ref, ref_grad = _run("backprop", dtype=torch.float32, rtol=1e-5, atol=1e-6)
    sol, grad = _run(symadj.AutoGradient(switch_step=2), dtype=torch.float32, rtol=1e-5, atol=1e-6)
    _same_solve(sol, ref)
    assert float((grad - ref_grad).norm() / ref_grad.norm()) <= 1e-5


def _graph_bytes(output: torch.Tensor) -> int:
    """The bytes of the distinct storages the autograd graph behind ``output`` holds, read
    from its nodes' saved tensors (independent of the mode's own count)."""
    storages, seen, nodes = {}, set(), [output.grad_fn]
    while nodes:
        node = nodes.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        for name in dir(node):
            if name.startswith("_saved_"):
                value = getattr(node, name)
                for tensor in value if isinstance(value, tuple) else (value,):
                    if isinstance(tensor, torch.Tensor):
                        storage = tensor.untyped_storage()
                        storages[storage.data_ptr()] = storage.nbytes()
        nodes.extend(next_node for next_node, _ in node.next_functions)
    return sum(storages.values())


def test_the_graph_and_checkpoints_stay_within_the_budget():
    net, y0 = _problem()
    t = torch.linspace(0.0, 2.0, 7, dtype=torch.float64)
    backprop = symadj.solve(lambda t, y: net(y), y0, t, gradient="backprop", rtol=1e-7, atol=1e-9)
    whole = _graph_bytes(backprop.ys)
    n = int(backprop.stats.n_accepted)
    split = 0
    for share in (0.1, 0.3, 0.6, 1.0, 2.0):
        budget = int(share * whole)
        sol = symadj.solve(lambda t, y: net(y), y0, t, rtol=1e-7, atol=1e-9,
                           gradient=symadj.AutoGradient(memory=budget))
        held = _graph_bytes(sol.ys) + int(sol.stats.checkpoint_bytes)
        assert held <= budget, (share, held, budget)
        assert int(sol.stats.peak_bytes) <= budget
        assert int(sol.stats.graph_steps) + int(sol.stats.walk_steps) == n
        split += 0 < int(sol.stats.graph_steps) < n
    assert split >= 2  # budgets that switched in the middle of the solve


def test_arguments_are_checked():
    with pytest.raises(symadj.InvalidArgumentError, match="switch_step"):
        symadj.AutoGradient(switch_step=-1)
    with pytest.raises(symadj.InvalidArgumentError, match="memory"):
        symadj.AutoGradient(memory="lots")
    assert symadj.as_gradient_mode("auto") == symadj.AutoGradient()
    assert repr(symadj.AutoGradient(memory="1MiB")) == "AutoGradient(memory=1048576)"
    # A checkpoint policy asked for beside "auto" by name is the symplectic mode's.
    y0 = torch.ones(2, requires_grad=True)
    sol = symadj.solve(lambda t, y: -y, y0, [0.0, 1.0], gradient="auto", checkpoints="all")
    assert symadj.Schedule(int(sol.stats.schedule)) == symadj.Schedule.STEPS


@pytest.mark.slow  # a compilation of each mode; the default JAX tests run "auto" (the default) throughout
def test_jax_runs_the_symplectic_mode_under_the_budget():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    w = jnp.array([[0.3, -1.1], [0.9, 0.2]])
    y0 = jnp.array([1.0, -0.5])
    ts = jnp.linspace(0.0, 1.5, 4)

    def loss(mode):
        def of(y0, w):
            sol = symadj.solve(lambda t, y, w: jnp.tanh(w @ y), y0, ts, args=w, gradient=mode, rtol=1e-8, atol=1e-10)
            return jnp.sum(sol.ys ** 2), sol.stats.walk_steps
        return jax.jit(jax.grad(of, argnums=(0, 1), has_aux=True))

    (ref_y0, ref_w), _ = loss("backprop")(y0, w)
    (g_y0, g_w), walked = loss(symadj.AutoGradient(memory="1MiB"))(y0, w)
    assert int(walked) > 0  # recorded for the walk: no graph is kept under jit
    for grad, ref in ((g_y0, ref_y0), (g_w, ref_w)):
        assert float(jnp.linalg.norm(grad - ref) / jnp.linalg.norm(ref)) <= RTOL


def test_the_callers_saved_tensor_hooks_still_see_every_tensor():
    packed = []

    def pack(tensor):
        packed.append(tensor)
        return ("outer", tensor)

    def unpack(box):
        assert box[0] == "outer"
        return box[1]

    ref, ref_grad = _run("backprop", rtol=1e-7, atol=1e-9)
    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        sol, grad = _run(symadj.AutoGradient(), rtol=1e-7, atol=1e-9)
    assert int(sol.stats.graph_steps) == int(ref.stats.n_accepted) and len(packed) > 0
    _close(grad, ref_grad)
    with torch.autograd.graph.disable_saved_tensors_hooks("hooks are off here"):
        sol, grad = _run(symadj.AutoGradient(), rtol=1e-7, atol=1e-9)
    assert int(sol.stats.walk_steps) == int(ref.stats.n_accepted)  # no count: all walked
    _close(grad, ref_grad)


def test_gradients_with_respect_to_the_output_times():
    net, y0 = _problem()

    def time_grads(mode):
        t = torch.linspace(0.0, 2.0, 5, dtype=torch.float64, requires_grad=True)
        ys = symadj.odeint(lambda t, y: net(y), y0, t, gradient=mode, rtol=1e-7, atol=1e-9)
        (grad,) = torch.autograd.grad(ys.pow(2).sum(), [t])
        return grad

    ref = time_grads("backprop")
    _close(time_grads(symadj.AutoGradient(switch_step=3)), ref)


def test_a_forced_switch_past_the_budget_is_refused():
    with pytest.raises(symadj.InvalidArgumentError, match="switch earlier or give more memory"):
        _run(symadj.AutoGradient(memory=2000, switch_step=4), rtol=1e-7, atol=1e-9)
