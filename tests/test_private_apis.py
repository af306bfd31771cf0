"""symadj and its backends use only public jax/torch APIs, except in the one internals module
each backend keeps (``backends/symadj_torch/_torch_internals.py``,
``backends/symadj_jax/_jax_internals.py``), which names every private use in one place so
that a release that moves one fails loudly there rather than changing behaviour silently."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = ("_torch_internals.py", "_jax_internals.py")  # the backends' internals modules only

# What counts as private: modules and attributes whose names the libraries do not promise to keep.
PRIVATE = {
    "jax._src (JAX's internals)": r"\bjax\._src\b",
    "jax.core (a namespace JAX is pruning; jax.extend is the public door)":
        r"\bjax\.core\b|\bfrom\s+jax\s+import\s+core\b",
    "jax.interpreters": r"\bjax\.interpreters\b|\bfrom\s+jax\s+import\s+interpreters\b",
    "jax.lib / jaxlib internals": r"\bjax\.lib\b|\bjaxlib\.\w|\b(?:from|import)\s+jaxlib\b",
    "torch._* (torch._C, torch._foreach_*, torch._dynamo, torch._functorch, ...)": r"\btorch\._\w+",
    "a private name imported from jax or torch":
        r"\bfrom\s+(?:jax|torch)(?:\.\w+)*\s+import\s+\(?[^)\n]*\b_[A-Za-z]\w*",
    "grad_fn._sequence_nr() (autograd's private node numbering)": r"\._sequence_nr\b",
}


def _code(source: str) -> str:
    """The source without its comments (a comment may name a private API; code may not)."""
    tokens = [token for token in tokenize.generate_tokens(io.StringIO(source).readline)
              if token.type != tokenize.COMMENT]
    return tokenize.untokenize(tokens)


def private_uses(source: str) -> list[tuple[int, str, str]]:
    """(line, what, text) for every private jax/torch use in ``source``'s code."""
    found = []
    for number, line in enumerate(_code(source).splitlines(), 1):
        found += [(number, what, line.strip()) for what, pattern in PRIVATE.items() if re.search(pattern, line)]
    return found


def _sources() -> list[Path]:
    files = sorted([*(ROOT / "symadj").rglob("*.py"), *(ROOT / "backends").rglob("*.py")])
    return [path for path in files if not (path.parent.parent.name == "backends" and path.name in ALLOWED)]


def test_no_private_jax_or_torch_api_outside_the_backends_internals_modules():
    hits = [f"{path.relative_to(ROOT)}:{line}: {what}: {text}"
            for path in _sources() for line, what, text in private_uses(path.read_text())]
    assert not hits, ("private jax/torch APIs outside the backends' internals modules (use a public API, or move "
                      "the use into the backend's internals module with a test that fails when it disappears):\n"
                      + "\n".join(hits))


def test_the_scan_covers_the_core_and_every_backend_but_not_the_internals_modules():
    scanned = {path.relative_to(ROOT).as_posix() for path in _sources()}
    assert {"symadj/_api.py", "backends/symadj_jax/_backend.py", "backends/symadj_torch/_backend.py"} <= scanned
    assert not any(name.startswith("backends/") and name.rsplit("/", 1)[-1] in ALLOWED for name in scanned)
    assert "symadj/_array_api.py" in scanned


@pytest.mark.parametrize("line", [
    "from jax._src.core import trace_state_clean",
    "flat = jax.core.eval_jaxpr(jaxpr, consts, *args)",
    "isinstance(t, jax.core.Tracer)",
    "from jax import core",
    "from jax.interpreters import ad",
    "torch._C._functorch.is_batchedtensor(x)",
    "torch._foreach_add_(totals, increments)",
    "if 'torch._dynamo' not in sys.modules:",
    "import torch._dynamo",
    "from torch import _C",
    "from jaxlib import xla_client",
    "jaxlib.xla_extension.ArrayImpl",
    "from torch.autograd.graph import (Node, _private_helper)",
    "node._sequence_nr() < marker",
])
def test_each_kind_of_private_use_is_found(line):
    assert private_uses(line + "\n")


@pytest.mark.parametrize("line", [
    "# jax.core.eval_jaxpr moved in 0.4.36, hence _jax_internals",
    "import jax.extend",
    "from torch.func import vmap",
    "torch.autograd.graph.Node",
    "jax.tree_util.tree_leaves(tree)",
    "self._foreach = 1",
    'array_modules=("jax", "jaxlib")',
])
def test_comments_and_public_apis_are_not_flagged(line):
    assert not private_uses(line + "\n")
