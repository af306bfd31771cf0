"""The documentation runs: docstring examples, the README's quick start, the worked examples."""

from __future__ import annotations

import ast
import doctest
import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

import symadj
from symadj._plugins import registry

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(path for path in (ROOT / "docs" / "examples").glob("*.py") if not path.name.startswith("_"))
PUBLIC_MODULES = [
    "symadj", "symadj._api", "symadj._backend", "symadj._gradients", "symadj._continuous_adjoint",
    "symadj._gradient_names", "symadj._reversible", "symadj._options",
    "symadj._plugins", "symadj._solution", "symadj._state", "symadj._tableau", "symadj.backend", "symadj.errors",
    "symadj.hookspecs", "symadj._checkpoint_policies", "symadj._sizes", "symadj._bench_case", "symadj.bench.problems",
    "symadj.testing",
]
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@pytest.fixture
def restored_registry():
    """Docstring examples register tableaux and backends; put the registry back afterwards."""
    registry.list_tableaux()
    tableaux, backends, objects = dict(registry._tableaux), dict(registry._backends), dict(registry._backend_objects)
    yield
    registry._tableaux, registry._backends, registry._backend_objects = tableaux, backends, objects


def attribute_docstrings(module) -> list[doctest.DocTest]:
    """Doctests in the string after a module-level assignment (``hookimpl = ...`` then ``\"\"\"...\"\"\"``),
    which mkdocstrings renders but :mod:`doctest` does not collect."""
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    parser, tests = doctest.DocTestParser(), []
    for node, following in zip(tree.body, tree.body[1:]):
        if isinstance(node, ast.Assign) and isinstance(following, ast.Expr) and \
                isinstance(following.value, ast.Constant) and isinstance(following.value.value, str):
            name = f"{module.__name__}.{node.targets[0].id}"
            tests.append(parser.get_doctest(following.value.value, {}, name, module.__file__, following.lineno))
    return [test for test in tests if test.examples]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_docstring_examples_run(name, restored_registry):
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    tests = doctest.DocTestFinder().find(module) + attribute_docstrings(module)
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}; see the output above"


@pytest.mark.parametrize("name", symadj.__all__)
def test_public_names_have_documented_examples(name):
    obj = getattr(symadj, name)
    if name == "hookimpl":
        # A pluggy marker instance cannot carry __doc__; its docstring follows the assignment.
        assert "symadj.hookspecs.hookimpl" in {t.name for t in attribute_docstrings(sys.modules["symadj.hookspecs"])}
        return
    doc = inspect.getdoc(obj) or ""
    assert "Examples:" in doc and ">>>" in doc, f"symadj.{name} has no Examples: section (Google style)"
    if inspect.isfunction(obj) and inspect.signature(obj).parameters:
        assert "Args:" in doc, f"symadj.{name} does not document its arguments"
    if inspect.isfunction(obj) and inspect.signature(obj).return_annotation not in ("None", None):
        assert "Returns:" in doc, f"symadj.{name} does not document what it returns"


def readme_quick_start() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("--8<-- [start:quickstart]")[1].split("--8<-- [end:quickstart]")[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_readme_quick_start_is_the_docs_home_page():
    assert len(readme_quick_start()) == 2  # PyTorch and JAX
    assert '--8<-- "README.md:quickstart"' in (ROOT / "docs" / "index.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("index", [0, 1], ids=["torch", "jax"])
def test_readme_quick_start_runs(index, capsys):
    pytest.importorskip(["torch", "jax"][index])
    exec(compile(readme_quick_start()[index], f"README.md quick start {index}", "exec"), {})


@pytest.mark.slow
@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_quick(script, tmp_path):
    """Every worked example runs with --quick (CI runs the slow checks)."""
    command = [sys.executable, str(script), "--quick"]
    if script.stem == "cnf_torch":
        command += ["--out", str(tmp_path / "density.png")]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{script.name} --quick failed:\n{result.stdout}\n{result.stderr}"
    if script.stem == "cnf_torch":
        assert (tmp_path / "density.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_example_is_on_the_examples_page():
    page = (ROOT / "docs" / "examples" / "index.md").read_text(encoding="utf-8")
    assert EXAMPLES, "no examples found"
    for script in EXAMPLES:
        assert f'--8<-- "docs/examples/{script.name}"' in page, f"{script.name} is not shown in docs/examples/index.md"


def test_every_error_and_warning_has_a_section_on_the_errors_page():
    """docs/errors.md gives each exception and warning class its cause and fix: a new class
    in symadj.errors without a section there fails here."""
    import symadj.errors

    page = (ROOT / "docs" / "errors.md").read_text(encoding="utf-8")
    headings = set(re.findall(r"^##+ (\w+)$", page, re.M))
    classes = [name for name, obj in vars(symadj.errors).items()
               if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == "symadj.errors"]
    assert len(classes) >= 15
    missing = sorted(set(classes) - headings)
    assert not missing, f"docs/errors.md has no section for {missing}"
    for name in classes:
        bases = [base.__name__ for base in getattr(symadj.errors, name).__bases__]
        section = page.split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]
        assert all(f"`{base}`" in section for base in bases), f"the section on {name} does not name its bases {bases}"


def test_plugins_walkthrough_backend_solves(restored_registry, capsys):
    """docs/plugins.md's backend, written against symadj.Backend alone, solves as the numpy backend does."""
    text = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    section = text.split("<!-- walkthrough:start -->")[1].split("<!-- walkthrough:end -->")[0]
    namespace: dict = {}
    for block in re.findall(r"```python\n(.*?)```", section, re.S):
        exec(compile(block, "docs/plugins.md", "exec"), namespace)
    assert capsys.readouterr().out.strip() == "[0.367879 0.367879]"
    backend = symadj.get_backend("minimal_numpy")
    assert type(backend).__mro__[1] is symadj.Backend  # the contract alone, not EagerBackend
    np = pytest.importorskip("numpy")
    y0, ts = np.array([1.0, -0.5]), [0.0, 0.5, 2.0]
    for options in ({"checkpoints": "revolve:2"}, {"method": "rk4", "options": {"step_size": 0.1}}):
        ours = symadj.solve(lambda t, y: np.stack([y[1], -y[0]]), y0, ts, backend="minimal_numpy", **options)
        shipped = symadj.solve(lambda t, y: np.stack([y[1], -y[0]]), y0, ts, backend="numpy", **options)
        np.testing.assert_array_equal(ours.ys, shipped.ys)
        assert int(ours.stats.n_accepted) == int(shipped.stats.n_accepted)
