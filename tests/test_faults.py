"""Faults: a func that raises in the forward or the backward pass, and a KeyboardInterrupt
midway through a solve (from func or from a step callback).

The exception reaches the caller unchanged (the same object, never wrapped in a
SymadjError), nothing global is left changed (registries, caches, torch's grad mode,
default dtype, saved-tensor hooks and torch-function modes, JAX's config, open progress
meters), and the next solve gives bit-identical values and gradients. Under JAX an
exception raised by func at trace time is Python's and passes unchanged; one raised at run
time by a host callback (``jax.pure_callback``, a step callback) comes back wrapped by JAX
(docs/errors.md). Last, a thousand solves keep resident memory flat.
"""

from __future__ import annotations

import gc
import os
import sys

import pytest

import symadj
from symadj import _order, _progress

torch = pytest.importorskip("torch")

MODES = ["symplectic", "checkpoint", "backprop", "adjoint"]


class Fault(Exception):
    """What a faulty func raises."""


def fault_of(kind: str) -> BaseException:
    return KeyboardInterrupt() if kind == "interrupt" else Fault("func failed")


def open_bars() -> int:
    try:
        from tqdm import tqdm
    except ImportError:
        return 0
    return len([bar for bar in getattr(tqdm, "_instances", ()) if not bar.disable])


def global_state() -> dict[str, object]:
    """What a solve might leave changed behind it, process-wide."""
    state: dict[str, object] = {
        "tableaux": symadj.list_tableaux(),
        "backends": symadj.list_backends(),
        "plugin errors": symadj.plugin_errors(),
        "rooted trees cached": _order.rooted_trees.cache_info().currsize,
        "meters shown": list(_progress._SHOWN),
        "open tqdm bars": open_bars(),
        "grad enabled": torch.is_grad_enabled(),
        "inference mode": torch.is_inference_mode_enabled(),
        "anomaly mode": torch.is_anomaly_enabled(),
        "default dtype": torch.get_default_dtype(),
        "torch function modes": torch._C._len_torch_function_stack(),
        "saved tensor hooks": torch._C._autograd._top_saved_tensors_default_hooks(False),
    }
    if "jax" in sys.modules:
        import jax

        state.update({name: getattr(jax.config, name) for name in (
            "jax_enable_x64", "jax_disable_jit", "jax_debug_nans", "jax_numpy_rank_promotion")})
    return state


# -- torch -------------------------------------------------------------------------------

T = torch.linspace(0.0, 1.0, 3, dtype=torch.float64)


class TorchProblem:
    """``func`` = tanh(W y), raising ``fault`` from its ``fail_at``-th call on while
    ``armed`` (a flag the test flips); ``in_vjp``: raise from its backward pass instead,
    through an autograd node (backprop's backward never calls func)."""

    def __init__(self, fault: BaseException | type[BaseException] | None = None, fail_at: int = 1,
                 in_vjp: bool = False) -> None:
        self.weight = torch.tensor([[-0.5, 1.0], [-1.0, -0.5]], dtype=torch.float64, requires_grad=True)
        self.fault, self.fail_at, self.in_vjp = fault, fail_at, in_vjp
        self.armed = fault is not None
        self.arm_after_forward = False
        self.calls = 0

    def __call__(self, t, y):
        self.calls += 1
        if self.armed and not self.in_vjp and self.calls >= self.fail_at:
            raise self.fault
        if self.in_vjp:
            y = _RaisingBackward.apply(y, self)
        return torch.tanh(y @ self.weight.T)

    def solve(self, gradient: str, progress: bool = False):
        """The outputs and the gradients of a loss with respect to y0 and W."""
        y0 = torch.tensor([1.0, 0.5], dtype=torch.float64, requires_grad=True)
        ys = symadj.odeint(self, y0, T, gradient=gradient, progress=progress)
        if self.arm_after_forward:
            self.armed = True
        grads = torch.autograd.grad(ys.square().sum(), (y0, self.weight))
        return ys.detach(), *grads


class _RaisingBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, problem):
        ctx.problem = problem
        return y.view_as(y)

    @staticmethod
    def backward(ctx, cotangent):
        if ctx.problem.armed:
            raise ctx.problem.fault
        return cotangent, None


def assert_same(first, second):
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)


@pytest.fixture(params=[False, True], ids=["quiet", "progress"])
def progress(request, capsys) -> bool:
    return request.param


def assert_next_meter_on_its_line(capsys, gradient):
    """A bar left open would push the next solve's bar a line down (tqdm's cursor-up)."""
    capsys.readouterr()
    TorchProblem().solve(gradient, progress=True)
    assert "\x1b[A" not in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["error", "interrupt"])
@pytest.mark.parametrize("fail_at", [1, 2, 9], ids=["probe", "first-step", "midway"])
@pytest.mark.parametrize("gradient", MODES)
def test_torch_forward_fault_passes_unchanged_and_leaves_nothing(gradient, fail_at, kind, progress, capsys):
    reference = TorchProblem().solve(gradient, progress)
    before = global_state()
    faulty = TorchProblem(fault_of(kind), fail_at)
    with pytest.raises(type(faulty.fault)) as caught:
        faulty.solve(gradient, progress)
    assert caught.value is faulty.fault
    assert global_state() == before
    assert_same(TorchProblem().solve(gradient, progress), reference)
    if progress:
        assert_next_meter_on_its_line(capsys, gradient)


@pytest.mark.parametrize("kind", ["error", "interrupt"])
@pytest.mark.parametrize("in_vjp", [False, True], ids=["func", "vjp"])
@pytest.mark.parametrize("gradient", MODES)
def test_torch_backward_fault_passes_unchanged_and_leaves_nothing(gradient, in_vjp, kind, progress, capsys):
    if gradient == "backprop" and not in_vjp:
        pytest.skip("backprop's backward pass does not call func")
    reference = TorchProblem(in_vjp=in_vjp).solve(gradient, progress)
    before = global_state()
    faulty = TorchProblem(fault_of(kind), in_vjp=in_vjp)
    faulty.armed, faulty.arm_after_forward = False, True
    with pytest.raises(type(faulty.fault)) as caught:
        faulty.solve(gradient, progress)
    assert caught.value is faulty.fault
    assert global_state() == before
    assert_same(TorchProblem(in_vjp=in_vjp).solve(gradient, progress), reference)
    if progress:
        assert_next_meter_on_its_line(capsys, gradient)


def test_torch_backward_fault_under_backward_call():
    """``loss.backward()`` rather than ``torch.autograd.grad``: the same object, grad mode on."""
    faulty = TorchProblem(Fault("late"))
    faulty.armed = False
    y0 = torch.tensor([1.0, 0.5], dtype=torch.float64, requires_grad=True)
    loss = symadj.odeint(faulty, y0, T, gradient="symplectic").sum()  # a backward pass that calls func
    faulty.armed = True
    with pytest.raises(Fault) as caught:
        loss.backward()
    assert caught.value is faulty.fault
    assert torch.is_grad_enabled()


@pytest.mark.parametrize("gradient", MODES)
def test_torch_interrupt_from_step_callback(gradient, progress, capsys):
    reference = TorchProblem().solve(gradient, progress)
    before = global_state()
    faulty = TorchProblem()
    interrupt = KeyboardInterrupt()
    seen = []

    def callback_step(t0, y0, dt):
        seen.append(float(t0))
        if len(seen) == 3:
            raise interrupt

    faulty.callback_step = callback_step
    with pytest.raises(KeyboardInterrupt) as caught:
        faulty.solve(gradient, progress)
    assert caught.value is interrupt
    assert global_state() == before
    assert_same(TorchProblem().solve(gradient, progress), reference)


def test_torch_probe_fault_restores_hooks_and_modes_inside_no_grad_contexts():
    """A fault in the parameter probe leaves the caller's own hooks and modes in place."""

    def keep(x):
        return x

    with torch.autograd.graph.saved_tensors_hooks(keep, keep):
        hooks = torch._C._autograd._top_saved_tensors_default_hooks(False)
        with pytest.raises(Fault):
            TorchProblem(Fault("probe"), fail_at=1).solve("symplectic")
        assert torch._C._autograd._top_saved_tensors_default_hooks(False) == hooks
        assert torch._C._len_torch_function_stack() == 0
    with torch.inference_mode(), pytest.raises(Fault):
        symadj.odeint(TorchProblem(Fault("inference"), fail_at=2), torch.ones(2, dtype=torch.float64), T)
    assert not torch.is_inference_mode_enabled() and torch.is_grad_enabled()


# -- JAX ---------------------------------------------------------------------------------


@pytest.fixture
def jx():
    jax = pytest.importorskip("jax")
    if "jax" not in {b.name for b in symadj.list_backends()}:
        pytest.skip("the jax backend plugin is not registered")
    jax.config.update("jax_enable_x64", True)
    return jax


class JaxProblem:
    """``func(t, y, W)`` = tanh(W y) through a host round trip that raises ``fault`` in the
    forward (``"forward"``) or backward (``"backward"``) pass while armed, or raising at
    trace time (``"trace"``) from its ``fail_at``-th call."""

    def __init__(self, jax, fault: BaseException | None = None, where: str = "trace", fail_at: int = 1) -> None:
        import jax.numpy as jnp

        self.jax, self.jnp = jax, jnp
        self.fault, self.where, self.fail_at = fault, where, fail_at
        self.armed = False
        self.calls = 0
        self.host = self._host_round_trip()

    def _host_round_trip(self):
        jax = self.jax

        def on_host(where):
            def check(x):
                if self.armed and self.where == where:
                    raise self.fault
                return x
            return lambda x: jax.pure_callback(check, jax.ShapeDtypeStruct(x.shape, x.dtype), x)

        forward, backward = on_host("forward"), on_host("backward")

        @jax.custom_vjp
        def host(x):
            return forward(x)

        host.defvjp(lambda x: (forward(x), None), lambda _, cotangent: (backward(cotangent),))
        return host

    def __call__(self, t, y, weight):
        self.calls += 1
        if self.armed and self.where == "trace" and self.calls >= self.fail_at:
            raise self.fault
        return self.jnp.tanh(weight @ self.host(y))

    def gradient_fn(self, gradient: str, progress: bool = False, jit: bool = False):
        jnp = self.jnp
        ts = jnp.linspace(0.0, 1.0, 3)

        def loss(y0, weight):
            ys = symadj.odeint(self, y0, ts, args=weight, gradient=gradient, progress=progress)
            return jnp.sum(ys**2), ys

        fn = self.jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)
        fn = self.jax.jit(fn) if jit else fn

        def solve():
            (_, ys), grads = fn(jnp.array([1.0, 0.5]), jnp.array([[-0.5, 1.0], [-1.0, -0.5]]))
            return (ys, *grads)

        return solve


def assert_same_jax(first, second):
    import numpy as np

    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), strict=True)


def jax_cases(axes: dict[str, list], fast: list[tuple]) -> list:
    """Every combination of ``axes``; those outside ``fast`` are marked slow: an eager JAX
    gradient traces and compiles the solve on each call (seconds), a jitted one once."""
    import itertools

    cases = []
    for values in itertools.product(*axes.values()):
        marks = () if values in fast else (pytest.mark.slow,)
        cases.append(pytest.param(*values, marks=marks, id="-".join(map(str, values))))
    return cases


PASSES = {"gradient": MODES, "jit": [True, False], "progress": [False, True]}


@pytest.mark.parametrize(("gradient", "jit", "progress", "kind"), jax_cases(
    {**PASSES, "kind": ["error", "interrupt"]},
    fast=[("symplectic", True, False, "error"), ("backprop", True, False, "error")]))
def test_jax_trace_time_fault_passes_unchanged(jx, gradient, jit, progress, kind):
    """func raising in Python while JAX traces it: JAX does not touch the exception."""
    problem = JaxProblem(jx, fault_of(kind), "trace", fail_at=3)
    reference = problem.gradient_fn(gradient, progress, jit)()
    before = global_state()
    problem.armed, problem.calls = True, 0
    retrace = problem.gradient_fn(gradient, progress, jit)  # a new function: traced again
    with pytest.raises(type(problem.fault)) as caught:
        retrace()
    assert caught.value is problem.fault
    assert global_state() == before
    problem.armed = False
    assert_same_jax(retrace(), reference)


def runtime_error_types(jax):
    """What JAX raises for an exception in a host callback at run time: ``JaxRuntimeError``
    (a RuntimeError) whose message holds the callback's traceback; an eager call JAX has
    cached may report it as a ``ValueError`` with that message."""
    return (jax.errors.JaxRuntimeError, ValueError)


@pytest.mark.parametrize(("gradient", "jit", "progress", "where"), jax_cases(
    {**PASSES, "where": ["forward", "backward"]},
    fast=[("symplectic", True, False, "forward"), ("symplectic", True, True, "backward")]))
def test_jax_run_time_fault_is_wrapped_by_jax_and_leaves_nothing(jx, gradient, jit, progress, where, capsys):
    problem = JaxProblem(jx, Fault(f"host callback failed in the {where} pass"), where)
    solve = problem.gradient_fn(gradient, progress, jit)
    reference = solve()
    before = global_state()
    problem.armed = True
    with pytest.raises(runtime_error_types(jx)) as caught:
        solve()
    assert f"Fault: host callback failed in the {where} pass" in str(caught.value)
    problem.armed = False
    capsys.readouterr()
    assert_same_jax(solve(), reference)
    # A meter the failed run left open is closed by the next one to start (nothing of
    # ours runs between the failing callback and the caller): the next bar is not pushed down.
    assert "\x1b[A" not in capsys.readouterr().err
    assert global_state() == before


@pytest.mark.parametrize("jit", [True, pytest.param(False, marks=pytest.mark.slow)], ids=["jit", "eager"])
def test_jax_interrupt_from_step_callback_comes_back_wrapped(jx, jit):
    """A step callback runs inside the compiled loop, eager or not: JAX turns its
    KeyboardInterrupt into a JaxRuntimeError naming it."""
    problem = JaxProblem(jx, where="callback")
    seen = []

    def callback_step(t0, y0, dt):
        seen.append(float(t0))
        if problem.armed and len(seen) == 3:
            raise KeyboardInterrupt

    problem.callback_step = callback_step
    solve = problem.gradient_fn("symplectic", jit=jit)
    reference = solve()
    before = global_state()
    problem.armed, seen[:] = True, []
    with pytest.raises(runtime_error_types(jx)) as caught:
        solve()
    assert "KeyboardInterrupt" in str(caught.value)
    assert global_state() == before
    problem.armed = False
    assert_same_jax(solve(), reference)


# -- resident memory ---------------------------------------------------------------------


def resident_mib() -> float:
    gc.collect()
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def growth_over(solve, warm_up: int = 100, repeats: int = 1000) -> float:
    for _ in range(warm_up):
        solve()
    start = resident_mib()
    for _ in range(repeats):
        solve()
    return resident_mib() - start


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads /proc/self/statm")
@pytest.mark.parametrize("gradient", ["symplectic", "adjoint"])
def test_torch_thousand_solves_keep_memory_flat(gradient):
    weight = torch.tensor([[-0.5, 1.0], [-1.0, -0.5]], dtype=torch.float64, requires_grad=True)
    ts = torch.linspace(0.0, 0.5, 2, dtype=torch.float64)

    def solve():
        y0 = torch.tensor([1.0, 0.5], dtype=torch.float64, requires_grad=True)
        ys = symadj.odeint(lambda t, y: torch.tanh(y @ weight.T), y0, ts, gradient=gradient, method="rk4",
                           options={"step_size": 0.25})
        ys.square().sum().backward()

    growth = growth_over(solve)
    print(f"torch {gradient}: resident memory grew {growth:.2f} MiB over 1000 solves")
    assert growth < 20


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads /proc/self/statm")
def test_jax_thousand_solves_keep_memory_flat(jx):
    jnp = jx.numpy
    ts = jnp.linspace(0.0, 0.5, 2)

    @jx.jit
    def gradients(y0, weight):
        def loss(y0, weight):
            ys = symadj.odeint(lambda t, y, w: jnp.tanh(w @ y), y0, ts, args=weight, method="rk4",
                               options={"step_size": 0.25})
            return jnp.sum(ys**2)
        return jx.grad(loss, argnums=(0, 1))(y0, weight)

    y0, weight = jnp.array([1.0, 0.5]), jnp.array([[-0.5, 1.0], [-1.0, -0.5]])
    growth = growth_over(lambda: jx.block_until_ready(gradients(y0, weight)))
    print(f"jax: resident memory grew {growth:.2f} MiB over 1000 solves")
    assert growth < 20


def test_adjoint_callbacks_warning_is_a_symadj_warning():
    """Every warning symadj emits derives from SymadjWarning (docs/errors.md)."""
    func = TorchProblem()
    func.callback_step_adjoint = lambda t, y, dt: None
    with pytest.warns(symadj.SymadjWarning, match="has none, so they are not called"):
        symadj.odeint(func, torch.ones(2, dtype=torch.float64), T)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_jax_meters_open_when_the_solve_runs_not_when_it_is_traced(jx, jit, monkeypatch, capsys):
    """The backward meter's start, traced with the forward pass, used to run right then
    (its operands are concrete): it opened during the forward pass and, now that a meter
    starting closes one left open, cut the forward meter short."""
    for name in ("tqdm", "tqdm.auto"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setattr(_progress, "TEXT_INTERVAL", 0.0)
    problem = JaxProblem(jx)
    problem.gradient_fn("symplectic", progress=True, jit=jit)()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("symadj ")]
    assert not [line for line in lines if "stopped" in line]
    forward_done = lines.index(next(line for line in lines if line.startswith("symadj forward: done")))
    assert lines[forward_done - 1].startswith("symadj forward: t=1,")
    assert all(line.startswith("symadj backward:") for line in lines[forward_done + 1:])
    assert lines[-1].startswith("symadj backward: done")
    assert _progress._SHOWN == []


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads /proc/self/statm")
def test_torch_thousand_failed_solves_keep_memory_flat():
    """A failed solve leaves nothing behind either: its graph, hooks and meter go with it.

    func raises a new exception each time (``raise Fault``): an exception kept where its own
    traceback's frames reach it (``self.fault`` above) forms a cycle through the failed
    backward's autograd node that Python's collector does not free, keeping the solve's
    residuals (about 55 kB each here), as any autograd.Function would.
    """

    def fail():
        faulty = TorchProblem(Fault)
        faulty.armed, faulty.arm_after_forward = False, True
        with pytest.raises(Fault):
            faulty.solve("symplectic", progress=True)

    growth = growth_over(fail)
    print(f"torch, failing in the backward pass: resident memory grew {growth:.2f} MiB over 1000 solves")
    assert growth < 20
    assert _progress._SHOWN == [] and open_bars() == 0
