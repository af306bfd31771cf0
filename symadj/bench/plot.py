"""The sweep's figure: peak memory and time against the number of steps, a line per method."""

from __future__ import annotations

import importlib.util
import statistics
from collections.abc import Sequence

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


def write_figure(rows: Sequence[Row], path: str, title: str = "") -> bool:
    """Write the two-panel PNG; returns False (writing nothing) when there is no sweep to draw.

    Raises:
        ImportError: matplotlib is not installed (see :func:`can_plot`).
    """
    series = _series(rows)
    if not series:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (memory, time) = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    colors = plt.get_cmap("tab20").colors  # 20 distinct colours: every method of a full run its own
    backends = {row.method: row.backend for row in rows}
    markers = {case.backend: MARKERS[i % len(MARKERS)] for i, case in enumerate(bench_cases())}
    for index, (method, points) in enumerate(series.items()):
        steps, peaks, seconds = zip(*points)
        style = {"marker": markers.get(backends[method], MARKERS[-1]),
                 "linestyle": "-" if method.startswith("symadj") else "--",
                 "linewidth": 2.5 if method.endswith(":symplectic") else 1.2, "color": colors[index % len(colors)]}
        memory.plot(steps, peaks, label=method, **style)
        time.plot(steps, seconds, label=method, **style)
    positive = all(peak > 0 for points in series.values() for _, peak, _ in points)
    memory.set(xlabel="accepted steps", ylabel="peak memory above baseline [MiB]", title="peak memory",
               xscale="log", yscale="log" if positive else "linear")
    time.set(xlabel="accepted steps", ylabel="forward + backward [s]", title="time", xscale="log", yscale="log")
    for axes in (memory, time):
        axes.grid(True, which="both", alpha=0.3)
    time.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if title:
        figure.suptitle(title)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return True
