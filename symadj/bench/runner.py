"""Runs the benchmark: a float64 reference per problem, then a fresh worker process per method
(per backend with ``shared_workers``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, TextIO

from ..errors import BackendUnavailableError, SolverError
from .cases import BenchCaseInfo
from .methods import Method, all_methods, bench_cases, get_case
from .problems import ProblemSpec


@dataclass(frozen=True)
class Point:
    """One problem at one size: in the table when ``main``, in the figure when ``sweep``."""

    id: str
    spec: ProblemSpec
    main: bool = True
    sweep: bool = False


@dataclass(frozen=True)
class BenchConfig:
    """What to run and how.

    Attributes:
        points: the problems (and sweep points) to run.
        methods: the methods to compare; those not installed are reported as skipped.
        repeats: timed repeats after one warm-up (the median is reported).
        device: ``"cpu"`` or another device (``"cuda"``) for the backends that take one.
        threads: threads per worker (0: the libraries' defaults).
        count_apart: count evaluations in a second program where counting costs time (compiled cases),
            so that the timed one has no counter; off, one program is compiled and timed.
        reference_rtol: tolerance of the float64 dopri8 reference solve.
        timeout: seconds a worker may run before it is stopped.
        shared_workers: run each backend's methods in one worker process (one after the
            other, each peak from its own baseline; compiled cases compile side by side)
            instead of a fresh process per method.
    """

    points: tuple[Point, ...]
    methods: tuple[Method, ...]
    repeats: int = 3
    device: str = "cpu"
    threads: int = 0
    count_apart: bool = True
    reference_rtol: float = 1e-10
    timeout: float = 3600.0
    shared_workers: bool = False


@dataclass
class Row:
    """One method on one problem: the figures, or why there are none."""

    problem: str
    point: str
    main: bool
    sweep: bool
    method: str
    backend: str
    status: str
    end: float
    rtol: float
    seconds: float | None = None
    peak_mib: float | None = None
    temp_mib: float | None = None
    compile_s: float | None = None
    fevals: int | None = None
    steps: int | None = None
    grad_rel_error: float | None = None

    @property
    def ok(self) -> bool:
        """Whether the method ran and was measured."""
        return self.status == "ok"


class Progress:
    """A one-line status on a terminal (rewritten in place), plain lines elsewhere."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total, self.done, self.start = total, 0, time.perf_counter()
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()

    def update(self, text: str, advance: bool = False) -> None:
        self.done += advance
        elapsed = time.perf_counter() - self.start
        # At the pace so far: cases differ (a compiled case compiles first), so it is a rough guide.
        left = f", ~{elapsed * (self.total - self.done) / self.done:.0f}s left" if 0 < self.done < self.total else ""
        line = f"[{self.done}/{self.total} {elapsed:4.0f}s{left}] {text}"
        if self.live:
            self.stream.write("\r\033[K" + line[:150])
        elif advance:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.live:
            self.stream.write("\r\033[K")
            self.stream.flush()


def _environment(threads: int, case: BenchCaseInfo) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYTHONWARNINGS", "ignore")
    if threads:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[name] = str(threads)
        if threads == 1:
            for name, value in case.single_thread_env:
                env[name] = (env.get(name, "") + " " + value).strip()
    return env


def _worker(task: dict[str, Any], workdir: str, config: BenchConfig,
            on_line: Callable[[dict[str, Any]], None]) -> str | None:
    """Run one worker process; calls ``on_line`` with each result; returns an error or None."""
    name = task["methods"][0] if len(task["methods"]) == 1 else f"{len(task['methods'])}-methods"
    path = os.path.join(workdir, f"task-{name.replace(':', '-')}-{int(bool(task.get('reference')))}.json")
    with open(path, "w") as handle:
        json.dump(task, handle)
    command = [sys.executable, "-m", "symadj.bench.worker", path]
    errors = os.path.join(workdir, "stderr.txt")
    env = _environment(config.threads, get_case(task["backend"]))
    with open(errors, "w") as stderr, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True,
                                                       env=env) as process:
        deadline = time.monotonic() + config.timeout
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("{"):
                on_line(json.loads(line))
            if time.monotonic() > deadline:
                process.kill()
                return f"stopped after {config.timeout:g} s (--timeout)"
        process.wait()
    if process.returncode != 0:
        with open(errors) as stderr:
            lines = [line for line in stderr.read().splitlines() if line.strip()]
        return f"worker exited with {process.returncode}: {lines[-1] if lines else 'no message'}"
    return None


def reference_method(methods: tuple[Method, ...] = ()) -> Method:
    """The method that computes the float64 reference: symadj's ``checkpoint`` mode (an exact
    gradient computed without the symplectic code path), on a backend of ``methods`` if one
    is installed, else on any installed backend that brings a benchmark case.

    Raises:
        BackendUnavailableError: no such backend's array library is installed.
    """
    candidates = [method for method in all_methods() if method.library == "symadj" and method.mode == "checkpoint"]
    wanted = {method.backend for method in methods}
    for method in sorted(candidates, key=lambda method: method.backend not in wanted):
        if method.available:
            return method
    cases = bench_cases()
    if not cases:
        raise BackendUnavailableError("symadj bench needs a backend plugin that brings a benchmark case, and none "
                                      "is registered (symadj.plugin_errors() lists plugins that failed to load)")
    raise BackendUnavailableError(f"symadj bench needs {' or '.join(case.library for case in cases)}: "
                                  f"pip install {' or '.join(repr(case.extra) for case in cases)}")


def run(config: BenchConfig, progress: Progress | None = None, workdir: str | None = None) -> list[Row]:
    """Measure every method on every point; a method that is not installed or fails gets a
    row that says so.

    Raises:
        BackendUnavailableError: no backend's array library is installed (no reference possible).
        SolverError: the reference solve failed.
    """
    installed = [method for method in config.methods if method.available]
    progress = progress or Progress(len(config.points) * (len(installed) + 1))
    with tempfile.TemporaryDirectory(prefix="symadj-bench-") as scratch:
        workdir = workdir or scratch
        ref_dir = os.path.join(workdir, "reference")
        os.makedirs(ref_dir, exist_ok=True)
        _reference(config, workdir, ref_dir, progress)
        measured: dict[str, list[Row]] = {}
        for group in _worker_groups(config, installed):
            for row in _measure(config, group, workdir, ref_dir, progress):
                measured.setdefault(row.method, []).append(row)
    progress.close()
    rows = []
    for method in config.methods:
        if method.available:
            rows += measured[method.name]
        else:
            rows += [_row(point, method, f"skipped: not installed ({method.install})") for point in config.points]
    return rows


def _worker_groups(config: BenchConfig, installed: list[Method]) -> list[list[Method]]:
    """The methods each worker process runs: one each, or with ``shared_workers`` a backend's all."""
    if not config.shared_workers:
        return [[method] for method in installed]
    backends = dict.fromkeys(method.backend for method in installed)
    return [[method for method in installed if method.backend == backend] for backend in backends]


def _reference(config: BenchConfig, workdir: str, ref_dir: str, progress: Progress) -> None:
    method = reference_method(config.methods)
    problems = [{"id": point.id, "spec": asdict(point.spec.replace(
        method="dopri8", rtol=config.reference_rtol, atol=config.reference_rtol))} for point in config.points]
    device = config.device if get_case(method.backend).device else "cpu"
    task = {"backend": method.backend, "methods": [method.name], "problems": problems, "dtype": "float64",
            "device": device, "reference": True, "reference_dir": ref_dir, "threads": config.threads, "repeats": 1}
    failures = []

    def on_line(line: dict[str, Any]) -> None:
        if line["status"] != "ok":
            failures.append(f"{line['id']}: {line['status']}")
        progress.update(f"float64 reference for {line['id']} ({line['wall_s']:.1f} s)", advance=True)

    progress.update(f"float64 reference ({method.name}, dopri8, rtol {config.reference_rtol:g})")
    error = _worker(task, workdir, config, on_line)
    if error or failures:
        raise SolverError(f"the float64 reference solve failed: {error or '; '.join(failures)}")


def _measure(config: BenchConfig, methods: list[Method], workdir: str, ref_dir: str,
             progress: Progress) -> list[Row]:
    points = {point.id: point for point in config.points}
    backend = methods[0].backend
    task = {"backend": backend, "methods": [method.name for method in methods],
            "problems": [{"id": p.id, "spec": asdict(p.spec)} for p in config.points],
            "dtype": "float32", "device": config.device if get_case(backend).device else "cpu",
            "reference_dir": ref_dir, "threads": config.threads, "repeats": config.repeats,
            "count_apart": config.count_apart,
            "prepare_together": len(methods) > 1}
    rows: dict[tuple[str, str], Row] = {}
    by_name = {method.name: method for method in methods}

    def on_line(line: dict[str, Any]) -> None:
        point, method = points[line["id"]], by_name[line["method"]]
        known = {k: line.get(k) for k in ("seconds", "peak_mib", "temp_mib", "compile_s", "fevals", "steps",
                                          "grad_rel_error")}
        rows[method.name, point.id] = _row(point, method, line["status"], **known)
        summary = f"{line['seconds']:.3f} s" if line["status"] == "ok" else line["status"]
        progress.update(f"{method.name} on {point.id}: {summary}", advance=True)

    names = ", ".join(by_name) if len(methods) < 3 else f"{len(methods)} {backend} methods"
    progress.update(f"{names} (starting a worker)")
    error = _worker(task, workdir, config, on_line)
    result = []
    for method in methods:
        for point in config.points:
            if (method.name, point.id) not in rows:
                rows[method.name, point.id] = _row(point, method, f"failed: {error or 'no result'}")
                progress.update(f"{method.name} on {point.id}: failed", advance=True)
            result.append(rows[method.name, point.id])
    return result


def _row(point: Point, method: Method, status: str, **figures: Any) -> Row:
    return Row(problem=point.spec.kind, point=point.id, main=point.main, sweep=point.sweep, method=method.name,
               backend=method.backend, status=status, end=point.spec.end, rtol=point.spec.rtol, **figures)
