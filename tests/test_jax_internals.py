"""The JAX names the JAX backend relies on still exist (issue 27): a JAX release that drops
one fails here, by name, rather than somewhere inside a solve."""

from __future__ import annotations

import importlib
import pathlib
import re

import pytest

jax = pytest.importorskip("jax")

from symadj_jax import _jax_internals as internals  # noqa: E402

BACKEND = pathlib.Path(internals.__file__).parent


@pytest.mark.parametrize("module, name", [(module, name) for module, names in internals.PRIVATE.items()
                                          for name in names])
def test_every_private_name_the_backend_uses_exists(module, name):
    assert hasattr(importlib.import_module(module), name), (
        f"JAX {jax.__version__} has no {module}.{name}, which backends/symadj_jax/_jax_internals.py uses: "
        f"replace it there"
    )


@pytest.mark.parametrize("name", ["Tracer", "ClosedJaxpr", "jaxpr_as_fun", "memory_space", "trace_state_clean"])
def test_the_internals_module_names_each_thing_it_provides(name):
    assert getattr(internals, name) is not None


def test_private_jax_is_reached_only_through_the_internals_module():
    private = re.compile(r"jax\._src|jax\.interpreters|jax\.core\.|from jax\.core import|from jax import core")
    for path in sorted(BACKEND.glob("*.py")):
        if path.name == "_jax_internals.py":
            continue
        hits = [line for line in path.read_text(encoding="utf-8").splitlines() if private.search(line)]
        assert not hits, f"{path.name} reaches into JAX outside _jax_internals.py: {hits}"


def test_the_internals_names_work_as_the_backend_uses_them():
    import jax.numpy as jnp

    seen = []
    jax.jit(lambda x: seen.append((isinstance(x, internals.Tracer), internals.trace_state_clean())) or x)(1.0)
    assert seen == [(True, False)]
    assert internals.trace_state_clean() and not isinstance(jnp.ones(1), internals.Tracer)
    program = jax.make_jaxpr(lambda x: x * 2.0 + 1.0)(3.0)
    assert float(internals.jaxpr_as_fun(internals.ClosedJaxpr(program.jaxpr, program.consts))(3.0)[0]) == 7.0


def test_memory_spaces_are_named_on_this_jax():
    if not any(memory.kind == "pinned_host" for memory in jax.devices()[0].addressable_memories()):
        pytest.skip("this platform has no host memory space (checkpoints='offload' is refused on it)")
    assert internals.memory_space("host") is not None and internals.memory_space("device") is not None
