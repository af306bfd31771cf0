"""symadj.testing's conformance suite on the backends this repository ships, and on an
out-of-tree plugin installed from a temporary directory."""

from __future__ import annotations

import doctest
import importlib
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import symadj
from symadj._plugins import registry
from symadj.testing import BackendConformance, BufferConformance, ForwardConformance, slow


@pytest.mark.parametrize("name", ["symadj.testing", "symadj.testing._reference", "symadj.testing._suite"])
def test_conformance_suite_docstring_examples_run(name):
    module = importlib.import_module(name)
    failed, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert tried >= 1 and failed == 0


class TestNumpyConformance(ForwardConformance, BufferConformance):
    backend = "numpy"


class TorchHooks:
    backend = "torch"

    def setup_method(self) -> None:
        pytest.importorskip("torch")

    def value_and_grad(self, loss, y0, params):
        import torch

        y0 = y0.detach().requires_grad_(True)
        params = {name: value.detach().requires_grad_(True) for name, value in params.items()}
        value = loss(y0, params)
        grad_y0, *grads = torch.autograd.grad(value, [y0, *params.values()])
        return value, grad_y0, dict(zip(params, grads))


class TestTorchConformance(TorchHooks, BackendConformance):
    pass


class JaxHooks:
    backend = "jax"
    # Backprop scans max_steps iterations under JAX: a bound near the steps taken keeps it quick.
    max_steps = 128
    # Compiled programs may fuse the products of different policies differently.
    policy_rtol = 1e-13

    def setup_method(self) -> None:
        jax = pytest.importorskip("jax")
        jax.config.update("jax_enable_x64", True)

    def value_and_grad(self, loss, y0, params):
        import jax

        # One compiled function per loss: the finite-difference check calls it three times.
        cache = self.__dict__.setdefault("_compiled", {})
        if loss not in cache:
            fast = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
            cache[loss] = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)), compiler_options=fast)
        value, (grad_y0, grads) = cache[loss](y0, params)
        return value, grad_y0, grads


class TestJaxConformance(JaxHooks, BackendConformance):
    # Every solve compiles: the default run keeps one case of a kind, the slow step runs the rest.
    fixed_step_methods = ("rk4", *slow("euler", "midpoint", "heun3", "rk38", "dopri5"))
    adaptive_methods = tuple(slow("bosh3", "dopri5", "tsit5", "dopri8"))
    exact_gradient_modes = ("symplectic", *slow("checkpoint"))
    gradient_methods = ("rk4", *slow("dopri5"))
    checkpoint_policies = tuple(slow(*BackendConformance.checkpoint_policies))
    slow_tests = ("test_dense_outputs_match_reference", "test_backward_in_time_matches_reference",
                  "test_state_turning_nonfinite_is_refused",
                  "test_too_few_steps_is_a_max_steps_error", "test_backprop_matches_finite_differences",
                  "test_adjoint_matches_backprop", "test_checkpoint_mode_with_revolve_gives_the_gradient_of_all")


# -- an out-of-tree plugin -------------------------------------------------------------------

PLUGIN = '''
"""A forward-only symadj backend for array_api_strict, written against symadj's public API alone."""

import symadj
from symadj.backend import EagerBackend, ForwardField, call_with_args


class StrictBackend(EagerBackend):
    name = "strict_demo"
    differentiable = False

    def namespace(self):
        import array_api_strict

        return array_api_strict

    def handles(self, x):
        return type(x).__module__.split(".")[0] == "array_api_strict"

    def make_field(self, func, args, y0, ts, adjoint_params, layout):
        return ForwardField(layout.wrap(self.namespace(), call_with_args(func, args)))


@symadj.hookimpl
def symadj_register_backends():
    return [symadj.BackendInfo("strict_demo", library="array_api_strict", extra="symadj-strict-demo",
                               array_modules=("array_api_strict",), load=StrictBackend)]
'''

PLUGIN_TESTS = '''
from symadj.testing import ForwardConformance


class TestStrictDemoConformance(ForwardConformance):
    backend = "strict_demo"
'''


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    """A directory holding the plugin package ``symadj_strict_demo`` as pip installs one: the
    module and a ``*.dist-info`` whose ``entry_points.txt`` registers it in symadj's group."""
    pytest.importorskip("array_api_strict")
    site = tmp_path / "site"
    (site / "symadj_strict_demo").mkdir(parents=True)
    (site / "symadj_strict_demo" / "__init__.py").write_text(textwrap.dedent(PLUGIN), encoding="utf-8")
    info = site / "symadj_strict_demo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: symadj-strict-demo\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text("[symadj]\nstrict_demo = symadj_strict_demo\n", encoding="utf-8")
    return site


@pytest.fixture
def fresh_registry(monkeypatch):
    """The registry emptied, so that its next use loads the plugins again (entry points
    included); put back as it was afterwards."""
    registry.list_tableaux()
    saved = {name: (dict(value) if isinstance(value, dict) else list(value) if isinstance(value, list) else value)
             for name, value in vars(registry).items()}
    registry._loaded = False
    registry._tableaux, registry._backends, registry._backend_objects, registry.errors = {}, {}, {}, []
    registry._bench_cases = {}
    yield registry
    vars(registry).update(saved)
    sys.modules.pop("symadj_strict_demo", None)


def test_conformance_out_of_tree_plugin_is_discovered_through_its_entry_point(plugin_dir, fresh_registry,
                                                                                monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_dir))
    statuses = {status.name: status for status in symadj.list_backends()}
    assert statuses["strict_demo"].available and statuses["strict_demo"].library == "array_api_strict"
    assert not [error for error in symadj.plugin_errors() if "strict_demo" in error]
    backend = symadj.get_backend("strict_demo")
    assert type(backend).__module__ == "symadj_strict_demo" and not backend.differentiable
    import array_api_strict as xs

    ys = symadj.odeint(lambda t, y: -y, xs.asarray([1.0, 2.0], dtype=xs.float64), [0.0, 1.0], backend="strict_demo")
    assert abs(float(ys[-1, 0]) - 0.36787944117144233) < 1e-7


def test_conformance_suite_forward_part_passes_on_an_out_of_tree_plugin(plugin_dir, tmp_path):
    """A fresh interpreter, as a plugin's own CI: the plugin is found through its entry point
    only, and its test module subclasses the suite."""
    (tmp_path / "test_strict_demo.py").write_text(textwrap.dedent(PLUGIN_TESTS), encoding="utf-8")
    here = [str(plugin_dir), str(Path(symadj.__file__).parents[1]), *sys.path]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(here)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error::symadj.PluginLoadWarning",
         "test_strict_demo.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    passed = re.search(r"(\d+) passed", result.stdout)
    assert passed and int(passed.group(1)) >= 20, result.stdout[-2000:]
    assert "skipped" not in result.stdout and "failed" not in result.stdout, result.stdout[-2000:]
