"""The house rules of docs/architecture.md, checked on the source: imports run from higher
layers to lower ones only, the core imports no plugin and no benchmark module, and no
function grows past what a reader can hold (about 60 lines of code, 10 parameters)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: The core's modules by layer, lowest first: a module imports from its own layer or below.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "_array_api", "_solution", "_callbacks", "_order", "_options", "_complex", "_bench_case", "_sizes"),
    ("_tableau", "_state", "_backend", "_progress", "hookspecs"),
    ("_rk_step", "_interpolant", "_landing", "_stepsize", "_plugins", "_tableaux_plugin", "_revolve"),
    ("_walk", "_symplectic_step", "_events", "_walks", "_auto_storage", "_checkpoint_policies", "_output_cotangents",
     "_walk_checks", "_observers", "_output_writers", "_recorder", "_loop"),
    ("_gradients", "_continuous_adjoint", "_reversible", "_gradient_names", "_time_gradients", "_auto_gradient"),
    ("_api", "_arguments", "backend", "__init__", "torch", "equinox", "torchdiffeq", "diffrax"),
    ("_cli", "__main__", "bench", "testing"),
)
#: Packages of the plugins and of the benchmark, which the core (every layer but the last) never imports.
NOT_FOR_THE_CORE = ("symadj_torch", "symadj_jax", "symadj_numpy", "symadj.bench", "bench")

MAX_CODE_LINES = 60
MAX_PARAMETERS = 10
#: Public signatures that mirror torchdiffeq's (or hold a tableau's published fields) keep their parameters.
MANY_PARAMETERS_ALLOWED = {
    "symadj/_api.py:solve", "symadj/_api.py:odeint", "symadj/_tableau.py:Tableau.__init__",
    "backends/symadj_torch/torchdiffeq.py:odeint", "backends/symadj_torch/torchdiffeq.py:odeint_adjoint",
}


def _layer_of(module: str) -> int:
    top = module.split(".")[0]
    for index, layer in enumerate(LAYERS):
        if top in layer:
            return index
    raise AssertionError(f"symadj.{module} is in no layer of tests/test_architecture.py: add it to LAYERS")


def _core_modules() -> list[tuple[str, Path]]:
    modules = []
    for path in sorted((ROOT / "symadj").rglob("*.py")):
        parts = path.relative_to(ROOT / "symadj").with_suffix("").parts
        modules.append((".".join(parts), path))
    return modules


def _imports(tree: ast.Module, package: str) -> list[tuple[int, str]]:
    """(line, module) of every import outside ``if TYPE_CHECKING:``, made absolute."""
    checking = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
                and getattr(block.test, "id", getattr(block.test, "attr", None)) == "TYPE_CHECKING"
                for node in ast.walk(block)}
    found = []
    for node in ast.walk(tree):
        if id(node) in checking:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                found.append((node.lineno, node.module or ""))
                continue
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            target = ".".join([*base, node.module] if node.module else base)
            names = [f"{target}.{alias.name}" for alias in node.names] if not node.module else [target]
            found += [(node.lineno, name) for name in names]
    return found


def _violations_of_layering() -> list[str]:
    problems = []
    for module, path in _core_modules():
        layer = _layer_of(module)
        package = "symadj." + module if path.name == "__init__.py" else "symadj." + module.rpartition(".")[0]
        package = package.rstrip(".")
        for line, imported in _imports(ast.parse(path.read_text()), package):
            where = f"symadj/{path.relative_to(ROOT / 'symadj')}:{line}"
            if layer < len(LAYERS) - 1 and imported.startswith(NOT_FOR_THE_CORE):
                problems.append(f"{where} imports {imported}: the core imports no plugin or benchmark module")
            if imported.startswith("symadj.") and not imported.startswith(("symadj_",)):
                target = imported.removeprefix("symadj.")
                if _layer_of(target) > layer:
                    problems.append(f"{where} imports {imported}, a higher layer than {module}")
    return problems


def test_imports_run_from_higher_layers_to_lower_ones_only():
    assert not _violations_of_layering(), "\n".join(_violations_of_layering())


def _functions(path: Path) -> list[tuple[str, ast.FunctionDef, int]]:
    source = path.read_text()
    tree = ast.parse(source)
    lines = source.splitlines()
    found = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.append((f"{prefix}{child.name}", child, _code_lines(lines, child)))
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def _code_lines(lines: list[str], function: ast.FunctionDef) -> int:
    """Lines of code in ``function``, its docstring, comments and blank lines not counted."""
    body = function.body
    docstring = range(0)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        docstring = range(body[0].lineno, body[0].end_lineno + 1)
    count = 0
    for number in range(function.lineno, function.end_lineno + 1):
        text = lines[number - 1].strip()
        if text and not text.startswith("#") and number not in docstring:
            count += 1
    return count


def _parameters(function: ast.FunctionDef) -> int:
    arguments = function.args
    names = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
    count = len(names) + (arguments.vararg is not None) + (arguments.kwarg is not None)
    return count - (1 if names and names[0].arg in ("self", "cls") else 0)


def _sources() -> list[Path]:
    return sorted([*(ROOT / "symadj").rglob("*.py"), *(ROOT / "backends").rglob("*.py")])


def _oversized() -> list[str]:
    problems = []
    for path in _sources():
        name = path.relative_to(ROOT).as_posix()
        for qualified, function, code_lines in _functions(path):
            if code_lines > MAX_CODE_LINES:
                problems.append(f"{name}:{function.lineno} {qualified} has {code_lines} lines of code")
            if _parameters(function) > MAX_PARAMETERS and f"{name}:{qualified}" not in MANY_PARAMETERS_ALLOWED:
                problems.append(f"{name}:{function.lineno} {qualified} takes {_parameters(function)} parameters")
    return problems


def test_no_function_is_longer_than_a_reader_can_hold():
    assert not _oversized(), "\n".join(_oversized())


def test_the_size_check_finds_a_long_function_and_a_wide_one(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_CODE_LINES))
    source = f'def long():\n    """Doc."""\n{body}\n\ndef wide(a, b, c, d, e, f, g, h, i, j, k):\n    pass\n'
    path = tmp_path / "sample.py"
    path.write_text(source)
    sizes = {name: (lines, _parameters(function)) for name, function, lines in _functions(path)}
    assert sizes["long"] == (MAX_CODE_LINES + 1, 0)
    assert sizes["wide"][1] == MAX_PARAMETERS + 1


@pytest.mark.parametrize("source, package, expected", [
    ("from .bench.cases import X\n", "symadj", "symadj.bench.cases"),
    ("from symadj_torch.modules import NeuralODE\n", "symadj", "symadj_torch.modules"),
    ("from . import _api\n", "symadj", "symadj._api"),
    ("from .._api import odeint\n", "symadj.bench", "symadj._api"),
])
def test_the_layering_check_reads_every_kind_of_import(source, package, expected):
    assert [name for _, name in _imports(ast.parse(source), package)] == [expected]


def test_the_layering_check_skips_imports_made_for_type_checkers_only():
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ._api import solve\n"
    assert [name for _, name in _imports(ast.parse(source), "symadj")] == ["typing"]
