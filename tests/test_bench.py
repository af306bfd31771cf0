"""``symadj bench``: flags to points, the memory probe, the report, and the quick run end to end."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import symadj
from symadj import _plugins
from symadj._cli import build_parser, main
from symadj.bench import measure, plot, report, runner, worker
from symadj.bench.cases import BenchCaseInfo, Peer
from symadj.bench.config import bench_config, points
from symadj.bench.methods import SYMADJ_MODES, Method, all_methods, get_method, select
from symadj.bench.problems import (
    ProblemSpec,
    gradient_vector,
    loss_of,
    make_arrays,
    problem_arrays,
    vector_field,
)
from symadj.errors import UnknownNameError

FIGURES = ("seconds", "peak_mib", "fevals", "grad_rel_error")


def parse(*flags: str):
    return build_parser().parse_args(["bench", *flags])


def test_quick_run_is_the_mlp_problem_and_a_sweep_through_it_in_one_worker_per_backend():
    quick = points(parse("--quick"))
    assert [p.id for p in quick if p.main] == ["mlp"]
    sweep = [p for p in quick if p.sweep]
    assert sorted(p.spec.end for p in sweep) == [0.5, 1.0, 2.0]
    assert next(p for p in quick if p.id == "mlp").sweep  # the table's mlp is the sweep's t_end = 1, run once
    assert len({p.spec for p in quick}) == len(quick)
    # The sweep differs only in the integration length: one compiled program per JAX method.
    assert len({p.spec.replace(end=1.0) for p in quick}) == 1
    config = bench_config(parse("--quick"))
    assert config.shared_workers
    names = [m.name for m in config.methods]
    assert "diffrax:RecursiveCheckpointAdjoint" in names and "diffrax:DirectAdjoint" not in names
    assert {f"symadj-{b}:{mode}" for b in ("torch", "jax") for mode in SYMADJ_MODES} <= set(names)
    assert "diffrax:DirectAdjoint" in [m.name for m in bench_config(parse("--quick", "--method", "diffrax")).methods]
    full = bench_config(parse())
    assert not full.shared_workers
    assert [p.id for p in full.points if p.main] == ["mlp", "cnf", "pendulum"]


def test_worker_groups_are_one_method_each_or_one_backend_each():
    methods = [m for m in all_methods() if m.library != "nolib"]
    config = runner.BenchConfig(points=(), methods=tuple(methods))
    assert runner._worker_groups(config, methods) == [[m] for m in methods]
    shared = runner._worker_groups(runner.BenchConfig(points=(), methods=tuple(methods), shared_workers=True),
                                   methods)
    assert [{m.backend for m in group} for group in shared] == [{"torch"}, {"jax"}]
    assert sum(shared, []) == methods


def test_progress_lines_say_how_long_is_left():
    stream = io.StringIO()
    progress = runner.Progress(4, stream=stream)
    for k in range(4):
        progress.update(f"case {k}", advance=True)
    lines = stream.getvalue().splitlines()
    assert all("s left]" in line for line in lines[:3]) and "left" not in lines[3]


def test_problem_flags_override_quick_sizes():
    specs = {p.id: p.spec for p in points(parse("--quick", "--mlp-width", "16", "--pendulum-method", "rk4",
                                                 "--problem", "mlp", "cnf", "pendulum", "--sweep", "off"))}
    assert specs["mlp"].width == 16 and specs["mlp"].layers == 4
    assert specs["pendulum"].method == "rk4" and set(specs) == {"mlp", "cnf", "pendulum"}


def test_default_run_is_the_issue_problem():
    mlp = next(p.spec for p in points(parse()) if p.id == "mlp")
    assert (mlp.layers, mlp.width, mlp.batch, mlp.method, mlp.rtol) == (8, 512, 256, "dopri5", 1e-7)


def test_timeseries_is_chosen_by_name_at_its_defaults_and_left_out_of_the_default_run():
    spec = {p.id: p.spec for p in points(parse("--problem", "timeseries", "--sweep", "off"))}["timeseries"]
    assert (spec.layers, spec.width, spec.batch, spec.features) == (2, 64, 64, 8)
    assert (spec.method, spec.rtol, spec.atol, spec.end, spec.outputs) == ("dopri5", 1e-5, 1e-5, 10.0, 200)
    assert "timeseries" not in {p.id for p in points(parse())}
    quick = points(parse("--problem", "timeseries", "--quick", "--sweep", "off", "--timeseries-outputs", "7"))
    assert [p.id for p in quick] == ["timeseries"] and quick[0].spec.outputs == 7 and quick[0].spec.width == 32


def test_bigstate_is_chosen_by_name_and_its_states_outweigh_its_network():
    spec = {p.id: p.spec for p in points(parse("--problem", "bigstate", "--sweep", "off"))}["bigstate"]
    assert "bigstate" not in {p.id for p in points(parse())}
    arrays = make_arrays(spec)
    state = arrays["y0"][0].size
    network = sum(w.size + b.size for w, b in arrays["params"])
    # A float32 state of 1 MiB, and a network of a few thousand weights: one state a step for
    # some 200 steps (N·|y|, about 200 MiB) dwarfs the graph of one evaluation.
    assert state * 4 == 2**20 and network < state / 50
    quick = points(parse("--problem", "bigstate", "--quick", "--sweep", "off"))
    assert [p.id for p in quick] == ["bigstate"] and quick[0].spec.batch * quick[0].spec.features < state
    small = ProblemSpec("bigstate", layers=2, width=8, batch=4, features=3, end=1.0)
    small_arrays = problem_arrays(small, np.asarray)
    ys = np.stack([small_arrays.y0, 2 * small_arrays.y0])
    assert loss_of(np, small, ys) == pytest.approx(np.mean(4 * small_arrays.y0 ** 2))  # the final state's
    assert vector_field(np, small, 0.0, small_arrays.y0, small_arrays.params).shape == (4, 3)


@pytest.mark.slow
def test_diffrax_reversible_heun_runs_as_a_peer():
    pytest.importorskip("diffrax")
    spec = ProblemSpec("mlp", layers=2, width=8, batch=4, features=3, end=0.5, rtol=1e-5, atol=1e-5, gain=1.0)
    methods = (get_method("diffrax:ReversibleHeun"), get_method("symadj-jax:reversible"))
    config = runner.BenchConfig(points=(runner.Point("mlp", spec),), methods=methods, repeats=1, threads=1)
    rows = {row.method: row for row in runner.run(config, runner.Progress(2, stream=io.StringIO()))}
    for name, row in rows.items():
        assert row.status == "ok", f"{name}: {row.status}"
        # Another scheme (second order) than the reference's: its gradient is the problem's to its tolerance.
        assert row.steps > 0 and row.grad_rel_error < 1e-2, (name, row)
    assert rows["diffrax:ReversibleHeun"].steps > rows["symadj-jax:reversible"].steps


def test_timeseries_arrays_fit_a_teacher_trajectory_whatever_the_solver_settings():
    spec = ProblemSpec("timeseries", layers=2, width=8, batch=4, features=3, end=2.0, outputs=6)
    arrays = make_arrays(spec)
    assert [(w.shape, b.shape) for w, b in arrays["params"]] == [((3, 8), (8,)), ((8, 3), (3,))]
    (y0,), target = arrays["y0"], arrays["extra"]
    assert y0.shape == (4, 3) and target.shape == (6, 4, 3) and np.all(np.isfinite(target))
    np.testing.assert_allclose(arrays["times"], np.linspace(0.0, 2.0, 6))
    np.testing.assert_array_equal(target[0], y0)
    assert np.abs(target[-1] - y0).max() > 0.1  # the teacher moves the state
    # The float64 reference solves the same spec with dopri8 at another tolerance: same data.
    reference = make_arrays(spec.replace(method="dopri8", rtol=1e-10, atol=1e-10))
    np.testing.assert_array_equal(reference["extra"], target)
    np.testing.assert_array_equal(reference["params"][0][0], arrays["params"][0][0])


@pytest.mark.parametrize("flags, kind", [(("--problem", "lorenz"), "benchmark problem"),
                                         (("--backend", "tensorflow"), "benchmark backend"),
                                         (("--method", "rk45-magic"), "benchmark method")])
def test_unknown_names_list_what_exists(flags, kind):
    with pytest.raises(UnknownNameError) as caught:
        bench_config(parse(*flags))
    assert caught.value.kind == kind and caught.value.known


def test_cli_reports_an_unknown_name_without_a_traceback(capsys):
    assert main(["bench", "--problem", "lorenz"]) == 2
    err = capsys.readouterr().err
    assert "unknown benchmark problem 'lorenz'" in err and "'pendulum'" in err


def test_every_peer_and_mode_is_known():
    names = {method.name for method in all_methods()}
    assert {"symadj-torch:symplectic", "symadj-jax:backprop", "torchdiffeq:odeint", "torchdiffeq:odeint_adjoint",
            "diffrax:RecursiveCheckpointAdjoint", "diffrax:BacksolveAdjoint", "diffrax:DirectAdjoint",
            "diffrax:ReversibleHeun", "symadj-jax:reversible", "diffrax:SymplecticAdjoint"} <= names
    # diffrax's reversible solver compiles slowly: a quick run leaves it out unless named.
    assert not get_method("diffrax:ReversibleHeun").quick
    assert [m.name for m in select(["torch"], ["adjoint"])] == ["symadj-torch:adjoint", "torchdiffeq:odeint_adjoint"]


def test_peak_is_measured_above_the_baseline():
    measure.release_free_memory()
    baseline = measure.reset_peak()
    block = np.ones(64 * 2**20 // 8)
    peak = measure.peak_mib() - baseline
    del block
    assert 60 <= peak < 200


def test_a_missing_peer_is_listed_as_skipped_with_its_pip_command(monkeypatch):
    monkeypatch.setattr(runner, "_reference", lambda *args: None)
    absent = Method("nolib:odeint", "nolib", "torch", "odeint", ("no_such_module_here",), "pip install nolib")
    config = runner.BenchConfig(points=(runner.Point("mlp", ProblemSpec("mlp", layers=2, width=4, batch=2)),),
                                methods=(absent,))
    rows = runner.run(config, runner.Progress(1, stream=io.StringIO()))
    assert rows[0].status == "skipped: not installed (pip install nolib)"
    assert "pip install nolib" in report.format_table(rows, config)


class NumpyCase:
    """A third backend's case, forward only (symadj's NumPy backend): its "gradient" is the
    final state, enough to carry a case through the worker and the reference check."""

    def __init__(self, method, spec, dtype="float32", device="cpu", count_apart=True):
        self.spec, self.method, self.calls = spec, method, 0
        self.arrays = problem_arrays(spec, lambda a: np.asarray(a, dtype=dtype))
        self.final = None

    def field(self, t, y):
        self.calls += 1
        return vector_field(np, self.spec, t, y, self.arrays.params, self.arrays.probe)

    def run(self):
        spec = self.spec
        sol = symadj.solve(self.field, self.arrays.y0, self.arrays.times, method=spec.method, rtol=spec.rtol,
                           atol=spec.atol, backend="numpy")
        self.final = sol.ys[-1]
        return int(sol.stats.n_accepted)

    def counted(self):
        self.calls = 0
        return self.run(), self.calls

    def gradient(self):
        return gradient_vector(self.arrays.params, self.final)


@pytest.fixture
def third_backend(monkeypatch):
    """A backend plugin that is neither torch nor JAX, registered in-process: its case
    (NumpyCase) and a peer that is not installed, one of whose modes is slow."""
    plugin = types.ModuleType("third_backend_plugin")

    @symadj.hookimpl
    def symadj_bench_cases():
        peer = Peer("thirdpeer", ("odeint", "odeint_slow"), ("no_such_module_here",), "pip install thirdpeer",
                    slow_modes=("odeint_slow",))
        return [BenchCaseInfo("third", module="third_backend_bench_case", library="numpy", extra="symadj",
                              peers=(peer,))]

    plugin.symadj_bench_cases = symadj_bench_cases
    case_module = types.ModuleType("third_backend_bench_case")
    case_module.configure = lambda threads, dtype: None
    case_module.BenchCase = NumpyCase
    sources = _plugins._plugin_sources()
    monkeypatch.setattr(_plugins, "_plugin_sources", lambda: [*sources, ("third", lambda: plugin)])
    monkeypatch.setattr(_plugins, "registry", _plugins.Registry())
    monkeypatch.setitem(sys.modules, "third_backend_bench_case", case_module)


def test_a_third_backend_brings_its_case_and_peer_through_the_hook(third_backend):
    third = ["symadj-third:auto", "symadj-third:symplectic", "symadj-third:checkpoint", "symadj-third:backprop",
             "symadj-third:adjoint", "symadj-third:reversible", "thirdpeer:odeint", "thirdpeer:odeint_slow"]
    names = [m.name for m in all_methods()]
    assert names[-8:] == third and "symadj-torch:symplectic" in names and "diffrax:DirectAdjoint" in names
    assert [m.name for m in bench_config(parse("--backend", "third")).methods] == third
    assert [m.name for m in bench_config(parse("--quick", "--backend", "third")).methods] == third[:-1]
    assert get_method("thirdpeer:odeint").requires == ("numpy", "no_such_module_here")
    assert "no_such_module_here" in report.libraries()
    assert runner.reference_method((get_method("thirdpeer:odeint"),)).name == "symadj-third:checkpoint"
    assert _plugins.registry.errors == []


def test_a_third_backends_case_runs_in_the_worker_against_its_reference(third_backend, tmp_path, capsys):
    spec = ProblemSpec("pendulum", layers=2, width=8, batch=4, outputs=3)
    reference = runner.reference_method((get_method("symadj-third:symplectic"),))
    common = {"backend": "third", "device": "cpu", "reference_dir": str(tmp_path), "threads": 0}
    worker.run_task({**common, "methods": [reference.name], "dtype": "float64", "reference": True, "repeats": 1,
                     "problems": [{"id": "p", "spec": dataclasses.asdict(spec.replace(method="dopri8", rtol=1e-10,
                                                                                       atol=1e-10))}]})
    worker.run_task({**common, "methods": ["symadj-third:symplectic"], "dtype": "float32", "repeats": 2,
                     "problems": [{"id": "p", "spec": dataclasses.asdict(spec)}]})
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["status"] for line in lines] == ["ok", "ok"], lines
    assert (tmp_path / "p.npy").exists()
    measured = lines[1]
    assert measured["steps"] > 0 and measured["fevals"] >= 6 * measured["steps"]
    assert measured["seconds"] > 0 and measured["grad_rel_error"] < 1e-4


def test_the_benchmark_core_names_no_array_library_or_peer():
    # Cases and peers come from the backend plugins (symadj_bench_cases): a new backend
    # brings its own without edits here.
    core = Path(symadj.__file__).parent / "bench"
    for path in sorted(core.glob("*.py")):
        text = path.read_text(encoding="utf-8").lower()
        named = [name for name in ("torch", "jax", "diffrax", "equinox") if name in text]
        assert not named, f"symadj/bench/{path.name} names {named}"


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _check_quick_results(out, backends):
    rows = _rows(out / "results.csv")
    expected = [m.name for m in select(backends) if m.available and m.quick]
    point_ids = {row["point"] for row in rows}
    assert point_ids == {"mlp", "sweep-end=0.5", "sweep-end=2"}
    for name in expected:
        mine = [row for row in rows if row["method"] == name]
        assert len(mine) == len(point_ids), f"{name} is missing points"
        if name.startswith(("symadj-jax", "diffrax")):  # one program for the three points
            assert len({row["compile_s"] for row in mine}) == 1, name
        for row in mine:
            assert row["status"] == "ok", f"{name} on {row['point']}: {row['status']}"
            for figure in FIGURES:
                assert math.isfinite(float(row[figure])), f"{name} on {row['point']}: {figure} = {row[figure]!r}"
    for row in rows:
        if row["method"].endswith(":symplectic"):
            assert float(row["grad_rel_error"]) <= 1e-6, f"{row['method']} on {row['point']}"
    document = json.loads((out / "results.json").read_text())
    assert len(document["rows"]) == len(rows) and document["command"].startswith("symadj bench --quick")
    if plot.can_plot():
        assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _run_quick(out, *flags):
    command = [sys.executable, "-m", "symadj", "bench", "--quick", *flags, "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.mark.slow
def test_quick_run_on_torch_end_to_end(tmp_path):
    pytest.importorskip("torch")
    out = _run_quick(tmp_path, "--backend", "torch", "--repeats", "1")
    assert "symadj-torch:symplectic" in out and "grad rel err" in out
    _check_quick_results(tmp_path, ["torch"])


@pytest.mark.slow
def test_quick_run_on_jax_end_to_end(tmp_path):
    # The torch half runs in the default step above; XLA compiles every method and problem.
    pytest.importorskip("jax")
    out = _run_quick(tmp_path, "--backend", "jax", "--repeats", "1")
    assert "symadj-jax:symplectic" in out and "grad rel err" in out
    _check_quick_results(tmp_path, ["jax"])


@pytest.mark.slow
def test_timeseries_on_torch_end_to_end():
    # symadj's symplectic mode and both torchdiffeq peers, each in its own worker, against
    # the float64 reference: the same loss over every output time, so the errors compare.
    # (Every torch method on every default problem runs in the quick test above.)
    pytest.importorskip("torch")
    spec = ProblemSpec("timeseries", layers=2, width=16, batch=4, features=4, end=2.0, outputs=8, rtol=1e-8,
                       atol=1e-8, gain=1.0)
    methods = tuple(select(["torch"], ["symplectic", "torchdiffeq"]))
    config = runner.BenchConfig(points=(runner.Point("timeseries", spec),), methods=methods, repeats=1, threads=1)
    rows = {row.method: row for row in runner.run(config, runner.Progress(4, stream=io.StringIO()))}
    assert sorted(rows) == sorted(m.name for m in methods)
    for name in [m.name for m in methods if m.available]:
        row = rows[name]
        assert row.status == "ok", f"{name}: {row.status}"
        for figure in FIGURES:
            assert math.isfinite(getattr(row, figure)), f"{name}: {figure} = {getattr(row, figure)!r}"
    symplectic = rows["symadj-torch:symplectic"]
    assert symplectic.steps > 0 and symplectic.grad_rel_error <= 1e-6
    assert "timeseries (2x16, batch 4x4" in report.format_table(list(rows.values()), config)


@pytest.mark.slow
def test_torch_benchmark_floor_times_the_network_alone(capsys):
    pytest.importorskip("torch")
    sys.path.insert(0, str(Path(__file__).parent / "benchmarks"))
    try:
        import bench_torch
    finally:
        sys.path.pop(0)
    figures = bench_torch.main(["--quick", "--floor", "--layers", "2", "--width", "32", "--batch", "8"])
    assert all(math.isfinite(v) and v > 0 for v in figures.values())
    forward, vjp, backprop = figures["forward_ms"], figures["vjp_ms"], figures["backprop_ms"]
    # Each stage costs F + V in place of P. (That the bound exceeds 1, since V repeats the
    # work of P, is a timing and is left to the benchmark: under load it failed here.)
    assert figures["stages_floor"] == pytest.approx((forward + vjp) / backprop)
    assert "stages / backprop >=" in capsys.readouterr().out


def _report_rows():
    def row(point, method, seconds, steps, sweep=False, main=True, status="ok"):
        return runner.Row(problem=point.split("-")[0], point=point, main=main, sweep=sweep, method=method,
                          backend=method.split(":")[0].removeprefix("symadj-"), status=status, end=1.0, rtol=1e-7,
                          seconds=seconds, peak_mib=seconds and 2.0 * seconds, temp_mib=None,
                          fevals=steps and 10 * steps, steps=steps, grad_rel_error=1e-8)

    return [row("sweep-end=1", "symadj-torch:symplectic", 0.5, 10, sweep=True, main=False),
            row("sweep-end=2", "symadj-torch:symplectic", 0.9, 20, sweep=True, main=False),
            row("timeseries", "symadj-torch:symplectic", 0.25, 40),
            row("timeseries", "torchdiffeq:odeint_adjoint", 0.75, 44),
            row("timeseries", "diffrax:DirectAdjoint", None, None, status="skipped: pip install diffrax")]


@pytest.mark.skipif(not plot.can_plot(), reason="matplotlib is not installed")
@pytest.mark.parametrize("problems", [("sweep", "timeseries"), ("sweep",), ("timeseries",)])
def test_figure_has_a_time_series_panel_when_the_timeseries_problem_ran(problems, tmp_path, monkeypatch):
    import matplotlib.figure

    rows = [row for row in _report_rows() if row.problem in problems]
    panels = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                        lambda self, path, **kw: panels.append([axes.get_title() for axes in self.axes]))
    assert plot.write_figure(rows, str(tmp_path / "bench.png"), timeseries_label="ts label")
    expected = ["peak memory", "time"] * ("sweep" in problems) + ["ts label"] * ("timeseries" in problems)
    assert panels == [expected]


def test_figure_is_not_written_without_a_sweep_or_a_timeseries(tmp_path):
    rows = [dataclasses.replace(row, problem="mlp", point="mlp") for row in _report_rows() if not row.sweep]
    assert not plot.write_figure(rows, str(tmp_path / "bench.png"))


def test_markdown_report_carries_date_command_versions_and_one_table_per_problem():
    import datetime

    spec = ProblemSpec("timeseries", layers=2, width=16, batch=4, features=4, outputs=8)
    config = runner.BenchConfig(points=(runner.Point("timeseries", spec),), methods=())
    text = report.format_markdown(_report_rows(), config, "symadj bench --problem timeseries", "bench.png")
    lines = text.splitlines()
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    assert lines[0].startswith(f"Measured on {today} with `symadj bench --problem timeseries`")
    assert f"numpy {np.__version__}" in lines[0] and f"symadj {symadj.__version__}" in lines[0]
    table = [line for line in lines if line.startswith("| `")]
    assert table == ["| `symadj-torch:symplectic` | 0.250 | 0.5 | - | 400 | 40 | 1.0e-08 |",
                     "| `torchdiffeq:odeint_adjoint` | 0.750 | 1.5 | - | 440 | 44 | 1.0e-08 |"]
    assert f"**{spec.label}**" in lines and "Not installed, so not run: `diffrax:DirectAdjoint`." in lines
    assert lines[-1].endswith("(bench.png)")
