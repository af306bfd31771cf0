"""progress=True: the forward pass and the backward walk report t, steps and the time left
(tqdm when installed, plain lines on stderr otherwise); nothing at all when off."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

import symadj
from symadj import _progress
from symadj.errors import InvalidArgumentError

torch = pytest.importorskip("torch")


def hide_tqdm(monkeypatch):
    for name in ("tqdm", "tqdm.auto"):  # `from tqdm.auto import tqdm` fails
        monkeypatch.setitem(sys.modules, name, None)


@pytest.fixture
def plain_text(monkeypatch):
    """The fallback meter, with a line for every report (no interval)."""
    hide_tqdm(monkeypatch)
    monkeypatch.setattr(_progress, "TEXT_INTERVAL", 0.0)


def oscillator_solve(gradient: str, progress: bool) -> tuple[torch.Tensor, symadj.Solution]:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)).double()
    y0 = torch.tensor([[1.0, 0.0], [0.5, 0.5]], dtype=torch.float64)
    sol = symadj.solve(lambda t, y: net(y) + torch.stack([y[:, 1], -y[:, 0]], dim=1), y0,
                       torch.linspace(0.0, 20.0, 50, dtype=torch.float64), gradient=gradient, progress=progress)
    sol.ys.square().sum().backward()
    return torch.cat([p.grad.flatten() for p in net.parameters()]), sol


def lines_of(text: str, phase: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(f"symadj {phase}:")]


@pytest.mark.parametrize("gradient", ["symplectic", "checkpoint", "adjoint", "reversible"])
def test_long_solve_shows_both_phases_with_steps_and_time_left(plain_text, capsys, gradient):
    _, sol = oscillator_solve(gradient, progress=True)
    err = capsys.readouterr().err
    forward, backward = lines_of(err, "forward"), lines_of(err, "backward")
    n_steps = int(sol.stats.n_accepted)
    assert n_steps > 30
    # One report per step crossing a hundredth of [0, 20], then the closing line.
    assert 10 < len(forward) - 1 <= symadj._progress.REPORTS
    assert forward[-1].startswith(f"symadj forward: done, t=20, {n_steps} steps, in ")
    assert all("left" in line for line in forward[1:-1])
    counts = [int(m.group(1)) for line in forward[:-1] if (m := re.search(r", (\d+) steps", line))]
    assert counts == sorted(counts) and counts[-1] <= n_steps
    assert len(backward) > 10
    assert backward[-1].startswith("symadj backward: done, t=0")
    if gradient != "adjoint":  # the walk goes back through the forward's steps
        assert f", {n_steps} steps" in backward[-1]
    times = [float(re.search(r"t=([-0-9.e]+)", line).group(1)) for line in backward]
    assert times == sorted(times, reverse=True)


def test_backprop_shows_the_forward_pass(plain_text, capsys):
    oscillator_solve("backprop", progress=True)
    err = capsys.readouterr().err
    assert lines_of(err, "forward")[-1].startswith("symadj forward: done, t=20")
    assert lines_of(err, "backward") == []  # the backward pass is torch's own


def test_nothing_shown_and_same_gradients_when_off(plain_text, capsys):
    grad_off, sol_off = oscillator_solve("symplectic", progress=False)
    out = capsys.readouterr()
    assert out.err == "" and out.out == ""
    grad_on, sol_on = oscillator_solve("symplectic", progress=True)
    assert torch.equal(grad_off, grad_on)
    assert torch.equal(sol_off.ys, sol_on.ys)


def test_short_solve_prints_only_its_closing_lines(monkeypatch, capsys):
    hide_tqdm(monkeypatch)
    y0 = torch.ones(3, requires_grad=True)
    symadj.odeint(lambda t, y: -y, y0, torch.linspace(0, 1, 5), progress=True, gradient="symplectic").sum().backward()
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2
    assert err[0].startswith("symadj forward: done, t=1, ") and err[1].startswith("symadj backward: done, t=0, ")


def test_tqdm_bar_when_installed(capsys):
    pytest.importorskip("tqdm")
    _, sol = oscillator_solve("symplectic", progress=True)
    err = capsys.readouterr().err
    n_steps = int(sol.stats.n_accepted)
    assert re.search(rf"symadj forward: 100%\|.*\| \[[0-9:]+<[0-9:]+, t=20, {n_steps} steps\]", err)
    assert re.search(rf"symadj backward: 100%\|.*\| \[[0-9:]+<[0-9:]+, t=0, {n_steps} steps\]", err)


def test_events_stop_the_meter_at_the_event(plain_text, capsys):
    y0 = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    sol = symadj.solve(lambda t, y: -y, y0, torch.linspace(0, 5, 11, dtype=torch.float64),
                       event=lambda t, y: y[0] - 0.5, progress=True)
    sol.event.t.backward()
    forward = lines_of(capsys.readouterr().err, "forward")
    assert forward[-1].startswith(f"symadj forward: done, t={float(sol.stats.t_final):.6g}")


def test_numpy_backend_reports_too(plain_text, capsys):
    symadj.solve(lambda t, y: -y, np.ones(2), np.linspace(0.0, 3.0, 4), progress=True)
    assert lines_of(capsys.readouterr().err, "forward")[-1].startswith("symadj forward: done, t=3")


def test_progress_must_be_a_bool():
    with pytest.raises(InvalidArgumentError, match="progress must be True or False"):
        symadj.solve(lambda t, y: -y, np.ones(2), np.linspace(0.0, 1.0, 3), progress="yes")


class TestJax:
    jax = pytest.importorskip("jax")

    def test_jitted_gradient_reports_on_every_call(self, plain_text, capsys):
        import jax.numpy as jnp

        def loss(rate):
            ys = symadj.odeint(lambda t, y, a: -a * y + jnp.sin(3 * t), jnp.ones(3), jnp.linspace(0.0, 20.0, 40),
                               args=rate, progress=True)
            return jnp.sum(ys ** 2)

        grad = self.jax.jit(self.jax.grad(loss))
        for rate in (1.0, 2.0):
            grad(rate).block_until_ready()
            err = capsys.readouterr().err
            forward, backward = lines_of(err, "forward"), lines_of(err, "backward")
            steps = int(re.search(r"done, t=20, (\d+) steps", forward[-1]).group(1))
            assert steps > 20 and len(forward) > 10
            assert backward[-1].startswith(f"symadj backward: done, t=0, {steps} steps")
            # In program order, also across the custom gradient's two passes.
            assert err.index("symadj forward: done") < err.index("symadj backward:")

    def test_off_places_no_callback(self):
        import jax.numpy as jnp

        def solve(progress):
            return symadj.odeint(lambda t, y: -y, jnp.ones(2), jnp.linspace(0.0, 1.0, 3), progress=progress)

        # The meter's callbacks are the ordered ones (a failed solve's check is another).
        assert "effect=OrderedDebug" not in str(self.jax.make_jaxpr(lambda: solve(False))())
        assert "effect=OrderedDebug" in str(self.jax.make_jaxpr(lambda: solve(True))())


def test_model_wrappers_pass_progress_on(plain_text, capsys):
    import symadj.torch

    model = symadj.torch.NeuralODE(torch.nn.Linear(2, 2), torch.linspace(0.0, 1.0, 3), progress=True,
                                   gradient="symplectic")
    model(torch.ones(2)).sum().backward()
    err = capsys.readouterr().err
    assert lines_of(err, "forward") and lines_of(err, "backward")
    eqx = pytest.importorskip("equinox")
    import jax
    import jax.numpy as jnp

    import symadj.equinox

    mlp = eqx.nn.MLP(2, 2, width_size=4, depth=1, key=jax.random.PRNGKey(0))
    model = symadj.equinox.NeuralODE(mlp, jnp.linspace(0.0, 1.0, 3), progress=True)
    eqx.filter_grad(lambda m: jnp.sum(m(jnp.ones(2))))(model)
    err = capsys.readouterr().err
    assert lines_of(err, "forward") and lines_of(err, "backward")
