"""The backend contract: its groups, what a new backend must write, and that the engine keeps to it."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import symadj
from symadj.backend import Backend, Buffer, EagerBackend, ForwardField, call_with_args

ROOT = Path(__file__).resolve().parents[1]

ABSTRACT = {
    "namespace", "handles", "make_field",  # inputs and outputs
    "while_loop", "fori_loop", "cond", "select", "check", "host_callback",  # control flow
    "buffer", "buffer_of",  # storage
}
DEFAULTED = {
    "split_state", "as_times", "time_inputs", "check_params_found", "share_params",
    "host_buffer", "check_host_storage", "to_host", "to_device", "accumulate",
    "requires_grad", "stop_gradient", "vjp", "custom_vjp", "time_terms", "deferred_time_terms", "graph_meter",
}
#: Helpers the engine calls, not for a backend to write.
HELPERS = {"check_status"}


def test_contract_is_the_documented_groups():
    assert set(Backend.__abstractmethods__) == ABSTRACT
    methods = {name for name, value in vars(Backend).items() if callable(value) and not name.startswith("_")}
    assert methods == ABSTRACT | DEFAULTED | HELPERS
    docs = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    for name in sorted(ABSTRACT | DEFAULTED):
        assert getattr(Backend, name).__doc__, f"Backend.{name} has no docstring"
        assert f"`{name}(" in docs, f"Backend.{name} is not in docs/plugins.md's contract tables"
    assert set(Buffer.__abstractmethods__) == {"capacity", "write", "read", "stack"}


def test_eager_backend_leaves_three_methods_to_write():
    assert set(EagerBackend.__abstractmethods__) == {"namespace", "handles", "make_field"}


class _Forward(EagerBackend):
    name, differentiable = "forward_only_numpy", False

    def namespace(self):
        import array_api_compat.numpy

        return array_api_compat.numpy

    def handles(self, x):
        return isinstance(x, np.ndarray)

    def make_field(self, func, args, y0, ts, adjoint_params, layout):
        return ForwardField(layout.wrap(self.namespace(), call_with_args(func, args)))


def test_forward_only_backend_of_three_methods_solves_as_the_numpy_backend():
    symadj.register_backend(symadj.BackendInfo("forward_only_numpy", library="numpy", extra="symadj",
                                               array_modules=(), load=_Forward), replace=True)
    y0, ts = (np.array([1.0, 0.0]), np.array([0.5])), np.linspace(0.0, 3.0, 7)

    def func(t, y, k):
        position, rate = y
        return np.stack([position[1], -k * position[0]]), -rate

    ours = symadj.solve(func, y0, ts, args=2.0, backend="forward_only_numpy", method="tsit5")
    shipped = symadj.solve(func, y0, ts, args=2.0, backend="numpy", method="tsit5")
    for a, b in zip(ours.ys, shipped.ys):
        np.testing.assert_array_equal(a, b)


def _private_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        found += [f"{path.relative_to(ROOT)}: {name}" for name in names
                  if name.startswith("symadj.") and any(part.startswith("_") for part in name.split(".")[1:])]
    return found


def test_backends_import_no_private_symadj_module():
    found = [hit for path in sorted((ROOT / "backends").rglob("*.py")) for hit in _private_imports(path)]
    assert not found, f"backends import private symadj modules: {found}"


class _StrictBuffer(Buffer):
    """A buffer answering the four members of the interface and nothing else."""

    __slots__ = ("_inner",)

    def __init__(self, inner):
        self._inner = inner

    @property
    def capacity(self):
        return self._inner.capacity

    def write(self, index, value):
        return _StrictBuffer(self._inner.write(index, value))

    def read(self, index):
        return self._inner.read(index)

    def stack(self, count, fill=None):
        return self._inner.stack(count, fill)


@pytest.mark.parametrize("gradient,checkpoints", [
    ("symplectic", "all"), ("symplectic", "stages"), ("checkpoint", "offload"), ("symplectic", "revolve:3"),
    ("symplectic", symadj.Auto(memory="40B")), ("checkpoint", symadj.Auto(memory="40B")), ("symplectic", "auto"),
])
def test_checkpoint_policies_use_the_buffer_interface_only(gradient, checkpoints, monkeypatch):
    torch = pytest.importorskip("torch")
    backend = symadj.get_backend("torch")
    w = torch.tensor([[-0.5, 1.0], [-1.0, -0.2]], dtype=torch.float64, requires_grad=True)

    def gradients():
        y0 = torch.tensor([1.0, 0.5], dtype=torch.float64, requires_grad=True)
        sol = symadj.solve(lambda t, y: w @ y, y0, [0.0, 1.0, 2.0], method="rk4", options={"step_size": 0.05},
                           gradient=gradient, checkpoints=checkpoints)
        return torch.autograd.grad(sol.ys.sum(), (y0, w)), int(sol.stats.schedule)

    expected, schedule = gradients()
    for maker in ("buffer", "host_buffer", "buffer_of"):
        original = getattr(backend, maker)
        monkeypatch.setattr(backend, maker, lambda *args, original=original: _StrictBuffer(original(*args)))
    got, strict_schedule = gradients()
    assert strict_schedule == schedule
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
