"""The benchmark's results as a terminal table, CSV, JSON and a Markdown page section."""

from __future__ import annotations

import csv
import dataclasses
import datetime
import importlib.metadata
import json
import math
import os
import platform
from collections.abc import Sequence
from typing import Any

from .methods import bench_cases
from .runner import BenchConfig, Row

COLUMNS = (("time [s]", 10), ("peak [MiB]", 11), ("XLA temp [MiB]", 15), ("fevals", 8), ("steps", 6),
           ("grad rel err", 13))


def libraries() -> list[str]:
    """The distributions whose versions are recorded: symadj, NumPy, then each benchmark
    case's array library and its peers' requirements."""
    names = ["symadj", "numpy"]
    for case in bench_cases():
        names += [case.library, *case.versions, *(module for peer in case.peers for module in peer.requires)]
    return list(dict.fromkeys(names))


def environment() -> dict[str, Any]:
    """The machine and the installed library versions, for the record."""
    versions = {}
    for name in libraries():
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {"platform": platform.platform(), "python": platform.python_version(), "cpu": _cpu_model(),
            "cpu_count": os.cpu_count(), "versions": versions}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _figure(value: float | None, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, fmt)


def format_table(rows: Sequence[Row], config: BenchConfig) -> str:
    """The table problems, one block each: a line per method, then the methods that did not run."""
    workers = "each backend's methods in one process" if config.shared_workers else "each method in a fresh process"
    lines = [f"float32 forward+backward, median of {config.repeats} after a warm-up, {workers} "
             f"({config.threads or 'default'} thread(s), {config.device}); peak = "
             f"{'CUDA max allocated' if config.device.startswith('cuda') else 'resident memory above baseline'}; "
             f"grad rel err against float64 dopri8 at rtol {config.reference_rtol:g}"]
    header = f"{'method':<36}" + "".join(f"{title:>{width}}" for title, width in COLUMNS)
    for point in [point for point in config.points if point.main]:
        point_rows = [row for row in rows if row.point == point.id]
        lines += ["", point.spec.label, header, "-" * len(header)]
        for row in point_rows:
            if row.ok:
                figures = (_figure(row.seconds, ".3f"), _figure(row.peak_mib, ".1f"), _figure(row.temp_mib, ".1f"),
                           _figure(row.fevals, "d"), _figure(row.steps, "d"), _figure(row.grad_rel_error, ".1e"))
                lines.append(f"{row.method:<36}" + "".join(f"{f:>{w}}" for f, (_, w) in zip(figures, COLUMNS)))
            elif not row.status.startswith("skipped"):
                lines.append(f"{row.method:<36}  {row.status}")
    skipped = {row.method: row.status for row in rows if row.status.startswith("skipped")}
    if skipped:
        lines += [""] + [f"{method:<36}  {status}" for method, status in skipped.items()]
    return "\n".join(lines)


def _plain(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def write_csv(rows: Sequence[Row], path: str) -> None:
    """One line per method and point; empty cells where a figure does not exist."""
    names = [f.name for f in dataclasses.fields(Row)]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=names)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if _plain(v) is None else v for k, v in dataclasses.asdict(row).items()})


def write_json(rows: Sequence[Row], config: BenchConfig, path: str, command: str) -> None:
    """Every row, the problems' settings, the command and the environment (non-finite numbers as null)."""
    document = {
        "command": command,
        "environment": environment(),
        "settings": {"repeats": config.repeats, "threads": config.threads, "device": config.device,
                     "reference": f"float64 dopri8, rtol = atol = {config.reference_rtol:g}"},
        "problems": {point.id: {**dataclasses.asdict(point.spec), "label": point.spec.label, "main": point.main,
                                "sweep": point.sweep} for point in config.points},
        "rows": [{k: _plain(v) for k, v in dataclasses.asdict(row).items()} for row in rows],
    }
    with open(path, "w") as handle:
        json.dump(document, handle, indent=1)
        handle.write("\n")


def format_markdown(rows: Sequence[Row], config: BenchConfig, command: str, figure: str | None = None) -> str:
    """The table problems as Markdown tables under a line giving the date, the command, the
    machine and the library versions: the measured section of docs/benchmarks.md, ready to paste.

    Examples:
        >>> from symadj.bench.runner import BenchConfig
        >>> text = format_markdown([], BenchConfig(points=(), methods=()), "symadj bench")
        >>> text.splitlines()[0].startswith("Measured on ")
        True
    """
    env = environment()
    versions = ", ".join(f"{name} {version}" for name, version in env["versions"].items() if version)
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    lines = [f"Measured on {date} with `{command}`: {env['cpu']} ({env['cpu_count']} cores), {env['platform']}, "
             f"Python {env['python']}; {versions}.", "", format_table([], config).splitlines()[0] + "."]
    header = "| method | " + " | ".join(title for title, _ in COLUMNS) + " |"
    for point in [point for point in config.points if point.main]:
        lines += ["", f"**{point.spec.label}**", "", header, "|---" * (len(COLUMNS) + 1) + "|"]
        for row in (row for row in rows if row.point == point.id and not row.status.startswith("skipped")):
            if row.ok:
                figures = (_figure(row.seconds, ".3f"), _figure(row.peak_mib, ".1f"), _figure(row.temp_mib, ".1f"),
                           _figure(row.fevals, "d"), _figure(row.steps, "d"), _figure(row.grad_rel_error, ".1e"))
            else:
                figures = (row.status, *[""] * (len(COLUMNS) - 1))
            lines.append(f"| `{row.method}` | " + " | ".join(figures) + " |")
    skipped = sorted({row.method for row in rows if row.status.startswith("skipped")})
    if skipped:
        lines += ["", "Not installed, so not run: " + ", ".join(f"`{method}`" for method in skipped) + "."]
    if figure:
        lines += ["", f"![peak memory and time against accepted steps, one line per method; time on the "
                      f"timeseries problem]({figure})"]
    return "\n".join(lines) + "\n"


def write_markdown(rows: Sequence[Row], config: BenchConfig, path: str, command: str,
                   figure: str | None = None) -> None:
    """Write :func:`format_markdown` to ``path``."""
    with open(path, "w") as handle:
        handle.write(format_markdown(rows, config, command, figure))
