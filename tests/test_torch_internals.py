"""Issue 27, torch: every private torch API the backend uses is named in one module
(backends/symadj_torch/_torch_internals.py) and exists in the installed torch; the version-dependent
ones fall back on the declared floor (torch 2.1)."""

from __future__ import annotations

import importlib
import pathlib
import re
import types

import pytest

torch = pytest.importorskip("torch")
from symadj_torch import _torch_internals as internals  # noqa: E402

import symadj  # noqa: E402

BACKEND = pathlib.Path(internals.__file__).parent
F64 = torch.float64


def _owner(path: str):
    module, _, attribute = path.rpartition(".")
    try:
        return importlib.import_module(path)
    except ImportError:
        return getattr(importlib.import_module(module), attribute)


@pytest.mark.parametrize("owner, name", sorted(internals.PRIVATE))
def test_each_private_attribute_exists_in_the_installed_torch(owner, name):
    assert hasattr(_owner(owner), name), (
        f"{owner}.{name} is gone from torch {torch.__version__}; symadj's torch backend uses it for: "
        f"{internals.PRIVATE[(owner, name)]}. Replace it in backends/symadj_torch/_torch_internals.py"
    )


def test_the_functions_behind_them_still_work():
    x = torch.ones(2, requires_grad=True)
    before = internals.version(x)
    with torch.no_grad():
        x.add_(1.0)
    assert internals.version(x) == before + 1
    first = internals.sequence_nr_now()
    assert internals.sequence_nr((x * 2).grad_fn) > first
    totals = [torch.zeros(2)]
    internals.foreach_add_(totals, [torch.ones(2)])
    assert totals[0].tolist() == [1.0, 1.0]
    assert internals.functorch_level() is None
    assert torch.func.vmap(lambda v: torch.tensor(internals.is_batched(v)))(torch.ones(3)).all()
    assert not internals.is_batched(torch.ones(3))


def test_no_private_torch_use_outside_the_internals_module():
    private = re.compile(r"torch\._[A-Za-z]|\._version\b|\._sequence_nr\b|_foreach_")
    for path in BACKEND.glob("*.py"):
        if path.name == "_torch_internals.py":
            continue
        uses = [line for line in path.read_text().splitlines()
                if private.search(line) and "torch._dynamo" not in line]
        assert not uses, f"{path.name} uses private torch APIs outside _torch_internals.py: {uses}"


class _OldTorch:
    """torch as the internals module sees it, with some attributes as an older torch had them (patching
    torch itself would change torch's own internals too)."""

    def __init__(self, **changed):
        self._changed = changed

    def __getattr__(self, name):
        if name in self._changed:
            if self._changed[name] is None:
                raise AttributeError(name)
            return self._changed[name]
        return getattr(torch, name)


def test_compiler_disable_without_the_reason_keyword(monkeypatch):
    # torch before 2.8: torch.compiler.disable(fn, recursive=True) takes no reason.
    seen = []

    def old_disable(fn=None, recursive=True):
        seen.append(fn)
        return fn

    monkeypatch.setattr(internals, "torch", _OldTorch(compiler=types.SimpleNamespace(disable=old_disable)))
    wrapped = internals.compiler_disable(lambda: 3, reason="why")
    assert wrapped() == 3 and len(seen) == 1


@pytest.mark.filterwarnings("ignore:torch.*autocast.*deprecated:DeprecationWarning")
def test_autocast_queries_before_torch_2_4(monkeypatch):
    # torch before 2.4: is_autocast_enabled() took no device (CUDA), CPU had its own query, and
    # get_autocast_dtype did not exist.
    def old_enabled(*args):
        if args:
            raise TypeError("is_autocast_enabled() takes 0 positional arguments but 1 was given")
        return torch.is_autocast_enabled("cuda")

    monkeypatch.setattr(internals, "torch", _OldTorch(is_autocast_enabled=old_enabled, get_autocast_dtype=None))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert internals.autocast_enabled("cpu")
        assert not internals.autocast_enabled("cuda")
        assert not internals.autocast_enabled("mps")
        assert internals.autocast_dtype("cpu") == torch.bfloat16
        # A solve under autocast still runs its own arithmetic in the state's precision.
        y0 = torch.ones(1, 2, dtype=torch.float32)
        net = torch.nn.Linear(2, 2)
        ys = symadj.odeint(lambda t, y: net(y), y0, torch.tensor([0.0, 1.0]), gradient="symplectic")
        assert ys.dtype == torch.float32
        ys.sum().backward()
    assert net.weight.grad is not None
    assert not internals.autocast_enabled("cpu")
