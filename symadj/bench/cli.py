"""``symadj bench``: build the run from the flags, run it, print the table, write the files."""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from . import plot, report
from .config import bench_config
from .runner import BenchConfig, run


def run_command(args: argparse.Namespace) -> int:
    """Run the benchmark the parsed flags describe; returns the exit status (1 if a method failed)."""
    config = bench_config(args)
    if not config.methods:
        print("no benchmark method matches --backend/--method", file=sys.stderr)
        return 2
    if args.out:
        os.makedirs(args.out, exist_ok=True)
    rows = run(config)
    print(report.format_table(rows, config))
    if args.out:
        command = shlex.join(["symadj", *getattr(args, "argv", ["bench"])])
        report.write_csv(rows, os.path.join(args.out, "results.csv"))
        report.write_json(rows, config, os.path.join(args.out, "results.json"), command)
        written = ["results.csv", "results.json"]
        if not plot.can_plot():
            print(f"\nno figure: matplotlib is not installed ({plot.INSTALL})")
        elif plot.write_figure(rows, os.path.join(args.out, "bench.png"), _sweep_title(config),
                               _timeseries_label(config)):
            written.append("bench.png")
        report.write_markdown(rows, config, os.path.join(args.out, "results.md"), command,
                              "bench.png" if "bench.png" in written else None)
        written.append("results.md")
        print(f"\nwrote {', '.join(written)} to {args.out}")
    failed = [row for row in rows if row.status.startswith("failed")]
    return 1 if failed else 0


def _timeseries_label(config: BenchConfig) -> str:
    labels = [point.spec.label for point in config.points if point.main and point.spec.kind == "timeseries"]
    return "\n".join(labels)


def _sweep_title(config: BenchConfig) -> str:
    swept = [point.spec for point in config.points if point.sweep]
    if not swept:
        return ""
    spec = swept[0]
    ends = ", ".join(f"{end:g}" for end in sorted({s.end for s in swept}))
    rtols = ", ".join(f"{rtol:g}" for rtol in sorted({s.rtol for s in swept}, reverse=True))
    size = f"mlp {spec.layers}x{spec.width}, batch {spec.batch}x{spec.features}"
    return f"{size}, {spec.method}: t_end {ends}; rtol {rtols}"
