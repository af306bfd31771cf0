"""The JAX names the JAX backend uses, in one place, each with why (issue 27).

Public names first: they exist, under these names, on every JAX from the declared floor
(0.4.30) to the newest tested. Then the private ones, which JAX may drop in any release:
each is imported here and nowhere else, and ``tests/test_jax_internals.py`` checks that every
name in :data:`PRIVATE` still exists, so that a JAX release removing one fails loudly.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.core
import jax.extend.core

# Public in jax.core on every supported JAX (0.4.30 to 0.10): the base class of traced values,
# how the backend tells a value being traced (under jit, grad, vmap) from a concrete one.
Tracer = jax.core.Tracer
# Public in jax.extend.core since before 0.4.30 (jax.core.eval_jaxpr is the older spelling):
# a traced function evaluated again with its closed-over values replaced.
ClosedJaxpr = jax.extend.core.ClosedJaxpr
jaxpr_as_fun = jax.extend.core.jaxpr_as_fun



def memory_space(kind: str) -> Any:
    """Where ``jax.device_put`` puts an array: ``"host"`` (pinned host memory) or ``"device"``.

    ``jax.memory.Space`` is newer than the floor; older JAX names the memory kind on a
    sharding of the first device (public there too).
    """
    memory = getattr(jax, "memory", None)
    if memory is not None and hasattr(memory, "Space"):
        return memory.Space.Host if kind == "host" else memory.Space.Device
    memory_kind = "pinned_host" if kind == "host" else "device"
    return jax.sharding.SingleDeviceSharding(jax.devices()[0], memory_kind=memory_kind)


# Private names, by module: what tests/test_jax_internals.py checks exists.
PRIVATE = {
    # Whether JAX is tracing nothing now. No public query answers it on every supported JAX
    # (jax.core.unsafe_am_i_under_a_jit_DO_NOT_USE is newer than the floor and answers for jit
    # only). Without it, a progress meter's host calls made while a solve is traced would run
    # at trace time instead of in the program, and closures would be searched for traced
    # values outside any trace.
    "jax._src.core": ("trace_state_clean",),
}

try:
    from jax._src.core import trace_state_clean
except ImportError as exc:  # pragma: no cover - a JAX that dropped it
    raise ImportError(
        f"symadj's JAX backend needs jax._src.core.trace_state_clean, which JAX {jax.__version__} "
        f"no longer has (see backends/symadj_jax/_jax_internals.py); use a JAX symadj supports, or report it"
    ) from exc

__all__ = ["PRIVATE", "ClosedJaxpr", "Tracer", "jaxpr_as_fun", "memory_space", "trace_state_clean"]
