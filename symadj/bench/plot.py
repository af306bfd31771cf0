"""The bench figure: peak memory and time against the number of steps (the sweep), a line per
method, and the time of each method on the ``timeseries`` problem when it ran."""

from __future__ import annotations

import importlib.util
import statistics
from collections.abc import Sequence
from typing import Any

from .methods import bench_cases
from .runner import Row

INSTALL = "pip install 'symadj[plot]'"
MARKERS = "os^Dv"  # one per backend, in the order of their benchmark cases


def can_plot() -> bool:
    """Whether matplotlib is installed (checked without importing it)."""
    return importlib.util.find_spec("matplotlib") is not None


def _series(rows: Sequence[Row]) -> dict[str, list[tuple[float, float, float]]]:
    """Per method: (steps, peak MiB, seconds) at each sweep point, in order of steps.

    Methods that do not report steps (some peers) are placed at the median of the steps
    the other methods took at that point.
    """
    sweep = [row for row in rows if row.sweep and row.ok]
    point_steps = {point: statistics.median([row.steps for row in sweep if row.point == point and row.steps])
                   for point in {row.point for row in sweep if row.steps}}
    series: dict[str, list[tuple[float, float, float]]] = {}
    for row in sweep:
        steps = row.steps or point_steps.get(row.point)
        if steps and row.peak_mib is not None and row.seconds is not None:
            series.setdefault(row.method, []).append((steps, row.peak_mib, row.seconds))
    return {method: sorted(points) for method, points in series.items()}


def _timeseries(rows: Sequence[Row]) -> list[tuple[str, float]]:
    """(method, seconds) of each method measured on the ``timeseries`` problem."""
    return [(row.method, row.seconds) for row in rows
            if row.problem == "timeseries" and row.main and row.ok and row.seconds]


def write_figure(rows: Sequence[Row], path: str, title: str = "", timeseries_label: str = "") -> bool:
    """Write the PNG: the sweep's memory and time panels, and a time-series panel when the
    ``timeseries`` problem ran (titled ``timeseries_label``); returns False (writing nothing)
    when there is neither.

    Raises:
        ImportError: matplotlib is not installed (see :func:`can_plot`).
    """
    series = _series(rows)
    timeseries = _timeseries(rows)
    if not series and not timeseries:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 * bool(series) + bool(timeseries)
    figure, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.8), constrained_layout=True, squeeze=False)
    colors = plt.get_cmap("tab20").colors  # 20 distinct colours: every method of a full run its own
    color_of = {method: colors[i % len(colors)]
                for i, method in enumerate(dict.fromkeys([*series, *(method for method, _ in timeseries)]))}
    if series:
        _sweep_panels(rows, series, axes[0][0], axes[0][1], color_of)
    if timeseries:
        _timeseries_panel(axes[0][-1], timeseries_label or "timeseries problem", timeseries, color_of)
    if title:
        figure.suptitle(title)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True


def _sweep_panels(rows: Sequence[Row], series: dict[str, list[tuple[float, float, float]]], memory: Any, time: Any,
                  color_of: dict[str, Any]) -> None:
    backends = {row.method: row.backend for row in rows}
    markers = {case.backend: MARKERS[i % len(MARKERS)] for i, case in enumerate(bench_cases())}
    for method, points in series.items():
        steps, peaks, seconds = zip(*points)
        style = {"marker": markers.get(backends[method], MARKERS[-1]),
                 "linestyle": "-" if method.startswith("symadj") else "--",
                 "linewidth": 2.5 if method.endswith(":symplectic") else 1.2, "color": color_of[method]}
        memory.plot(steps, peaks, label=method, **style)
        time.plot(steps, seconds, label=method, **style)
    positive = all(peak > 0 for points in series.values() for _, peak, _ in points)
    memory.set(xlabel="accepted steps", ylabel="peak memory above baseline [MiB]", title="peak memory",
               xscale="log", yscale="log" if positive else "linear")
    time.set(xlabel="accepted steps", ylabel="forward + backward [s]", title="time", xscale="log", yscale="log")
    for axes in (memory, time):
        axes.grid(True, which="both", alpha=0.3)
    time.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def _timeseries_panel(axes: Any, label: str, timeseries: list[tuple[str, float]], color_of: dict[str, Any]) -> None:
    methods, seconds = zip(*timeseries)
    positions = range(len(methods))
    axes.barh(positions, seconds, color=[color_of[method] for method in methods])
    axes.set_yticks(list(positions), methods, fontsize=8)
    axes.invert_yaxis()
    title = label.replace(" (", " problem\n(", 1).replace(", t in", ",\nt in", 1)
    axes.set(xlabel="forward + backward [s]", title=title)
    axes.title.set_fontsize(10)
    axes.grid(True, axis="x", alpha=0.3)
