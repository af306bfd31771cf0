"""The benchmark's worker process: one method (or, for a quick run, one backend's methods), run on each problem.

``python -m symadj.bench.worker TASK.json`` prints one JSON line per problem, as soon as
it is measured, so that the runner can show progress. The full run starts a fresh worker
for every method so that memory peaks of different methods never mix; ``--quick`` runs
each backend's methods in one worker. Within a worker, each case's peak is measured from
a baseline taken after the previous one is freed.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import statistics
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from . import measure
from .methods import Method, get_case, get_method
from .problems import LIBRARY_DEFAULTS, ProblemSpec


def case_module(backend: str) -> Any:
    """The module of ``backend``'s benchmark case (hook ``symadj_bench_cases``); importing it
    imports the array library, which the core never does. It supplies
    ``configure(threads, dtype)`` and ``BenchCase(method, spec, dtype, device, count_apart)``
    (see :class:`symadj.bench.cases.BenchCaseInfo`)."""
    return importlib.import_module(get_case(backend).module)


def measure_case(case: Any, repeats: int) -> dict[str, Any]:
    """Peak memory, evaluations, steps and the gradient from one run after a warm-up, then
    the time (median of ``repeats`` after another warm-up).

    Memory comes first: blocks of 64 KiB and more are then mmapped from the start, so
    resident memory follows live memory. Measured after fast (heap-allocated) timing runs,
    those blocks would be served from the heap the timing runs left free, and the peak
    would count the heap's fragmentation too.
    """
    reset_peak = getattr(case, "reset_peak", measure.reset_peak)
    peak_mib = getattr(case, "peak_mib", measure.peak_mib)
    measure.set_mmap_threshold(measure.SMALL_MMAP_THRESHOLD)
    case.run()
    measure.release_free_memory()
    baseline = reset_peak()
    steps, fevals = case.counted()
    peak = peak_mib() - baseline  # read before the gradient is copied out for checking
    gradient = case.gradient()
    measure.set_mmap_threshold(measure.LARGE_MMAP_THRESHOLD)
    case.run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        case.run()
        times.append(time.perf_counter() - start)
    return {"seconds": statistics.median(times), "peak_mib": max(peak, 0.0), "fevals": fevals, "steps": steps,
            "gradient": gradient, **getattr(case, "info", {})}


def relative_error(gradient: np.ndarray, reference_file: str | None) -> float:
    """‖g − g_ref‖ / ‖g_ref‖, or NaN when there is no reference."""
    if not reference_file or not os.path.exists(reference_file):
        return math.nan
    reference = np.load(reference_file)
    return float(np.linalg.norm(gradient - reference) / np.linalg.norm(reference))


def run_task(task: dict[str, Any]) -> None:
    """Measure each of ``task["methods"]`` (one backend's) on each of ``task["problems"]``,
    printing a JSON line each.

    With ``task["reference"]`` set, compute and save each problem's gradient instead
    (``<reference_dir>/<id>.npy``). With ``task["prepare_together"]``, every case is built
    first (a compiled case's programs compile side by side, one thread per core), then
    measured one at a time.
    """
    methods = [get_method(name) for name in task["methods"]]
    cases = case_module(methods[0].backend)
    cases.configure(task.get("threads", 0), task["dtype"])
    jobs = [(method, item) for method in methods for item in task["problems"]]
    if hasattr(cases, "fit_max_steps"):
        # All at once, before any case (and any thread) starts: problems that can share a
        # compiled program get one bound.
        specs = [ProblemSpec(**item["spec"]) for item in task["problems"]]
        try:
            cases.fit_max_steps([spec for spec in specs if spec.kind not in LIBRARY_DEFAULTS], task["dtype"])
        except Exception:  # each case then fits its own bound, and reports its own failure
            traceback.print_exc(file=sys.stderr)
    prepared = _prepare_together(cases, methods, task) if task.get("prepare_together") else {}
    for method, item in jobs:
        row: dict[str, Any] = {"method": method.name, "id": item["id"]}
        start = time.perf_counter()
        try:
            case = prepared.pop((method.name, item["id"]), None) or _case(cases, method, item, task)
            if isinstance(case, Exception):
                raise case
            if task.get("reference"):
                steps, fevals = case.counted()
                gradient = case.gradient()
                np.save(os.path.join(task["reference_dir"], f"{item['id']}.npy"), gradient)
                row.update(status="ok", steps=steps, fevals=fevals)
            else:
                result = measure_case(case, task["repeats"])
                ref_file = os.path.join(task["reference_dir"], f"{item['id']}.npy") if task["reference_dir"] else None
                row.update(status="ok", grad_rel_error=relative_error(result.pop("gradient"), ref_file), **result)
            del case
        except Exception as exc:  # a failure is a result: reported in the table, not fatal to the run
            traceback.print_exception(exc, file=sys.stderr)
            row.update(status=f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
        row["wall_s"] = time.perf_counter() - start
        measure.release_free_memory()
        print(json.dumps(row), flush=True)


def _case(cases: Any, method: Method, item: dict[str, Any], task: dict[str, Any]) -> Any:
    return cases.BenchCase(method, ProblemSpec(**item["spec"]), task["dtype"], task["device"],
                           task.get("count_apart", True))


def _prepare_together(cases: Any, methods: list[Method], task: dict[str, Any]) -> dict[tuple[str, str], Any]:
    """Every (method, problem) case, built on ``os.cpu_count()`` threads, one method per
    thread (its problems in turn, so that they share its compiled program); a case that
    fails to build is kept as its exception."""

    def build(method: Method) -> list[tuple[tuple[str, str], Any]]:
        built = []
        for item in task["problems"]:
            try:
                built.append(((method.name, item["id"]), _case(cases, method, item, task)))
            except Exception as exc:  # reported when its turn to be measured comes
                built.append(((method.name, item["id"]), exc))
        return built

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return dict(pair for built in pool.map(build, methods) for pair in built)


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m symadj.bench.worker TASK.json``."""
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0]) as handle:
        run_task(json.load(handle))
    return 0


if __name__ == "__main__":
    sys.exit(main())
