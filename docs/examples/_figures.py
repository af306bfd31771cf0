"""The figure both spiral examples save: the loss curve next to the data and the fitted trajectory."""

from __future__ import annotations

from typing import Any


def save_fit_figure(path: str, losses: list[float], ys: Any, fitted: Any) -> None:
    """Save the figure as a PNG (``ys`` and ``fitted``: NumPy-convertible (time, 2) arrays)."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is not installed: no figure (pip install matplotlib)")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 4))
    left.semilogy(range(1, len(losses) + 1), losses)
    left.set(xlabel="iteration", ylabel="training loss (mean abs error)", title="loss")
    right.plot(ys[:, 0], ys[:, 1], label="data", lw=2, alpha=0.5)
    right.plot(fitted[:, 0], fitted[:, 1], "--", label="neural ODE")
    right.set(xlabel="y1", ylabel="y2", title="trajectory")
    right.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    print(f"saved {path}")
