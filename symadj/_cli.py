"""The ``symadj`` command: ``symadj tableaux`` lists and verifies tableaux, ``symadj backends`` lists
backends, ``symadj bench`` measures the gradient modes against each other and the installed peers."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._plugins import registry
from ._tableau import Tableau
from .bench.config import add_arguments as add_bench_arguments
from .errors import SymadjError, TableauError


def _tableaux(args: argparse.Namespace) -> int:
    if args.verify:
        failed = 0
        for path in args.verify:
            try:
                tab = Tableau.from_file(path)
            except TableauError as exc:
                print(f"FAIL {exc}", file=sys.stderr)
                failed += 1
            else:
                print(f"ok   {path}: {tab.name}, order {tab.order}, {tab.stages} stages, "
                      f"dense order {_dense_order(tab)}")
        return 1 if failed else 0
    print(f"{'name':<12} {'order':<7} {'stages':>6}  {'FSAL':<5} {'adjoint VJPs':>12}  {'dense':>5}  description")
    for name in registry.list_tableaux():
        tab = registry.get_tableau(name)
        order = f"{tab.order}({tab.embedded_order})" if tab.adaptive else str(tab.order)
        vjps = sum(tab.adjoint.active)
        print(f"{name:<12} {order:<7} {tab.stages:>6}  {'yes' if tab.fsal else 'no':<5} {vjps:>12}  "
              f"{_dense_order(tab):>5}  {tab.description}")
    print("\nEach tableau above is verified when loaded: its order conditions, embedded estimates and "
          "continuous extension (at every power of θ) exactly for rational coefficients and to 1e-14 for "
          "decimal ones, its symplectic partner always exactly. 'dense' is the order of the interpolant "
          "within a step; with none ('-') the solver lands a step on every output time.")
    return 0


def _dense_order(tab: Tableau) -> str:
    return "-" if tab.dense_order is None else str(tab.dense_order)


def _backends(args: argparse.Namespace) -> int:
    for status in registry.list_backends():
        state = "available" if status.available else f"unavailable: {status.install}"
        print(f"{status.name:<18} {state}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from .bench.cli import run_command

    return run_command(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="symadj", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    tableaux = commands.add_parser("tableaux", help="list the registered tableaux, or verify files")
    tableaux.add_argument("--verify", nargs="+", metavar="FILE", help="verify tableau TOML files")
    tableaux.set_defaults(run=_tableaux)
    backends = commands.add_parser("backends", help="list the backends and whether they are installed")
    backends.set_defaults(run=_backends)
    bench = commands.add_parser(
        "bench", help="time and peak memory of every gradient mode and installed peer (fresh process each)",
        description="Neural ODE gradient benchmark: every symadj gradient mode on every installed backend, "
                    "torchdiffeq and diffrax, each in a fresh process; a table, and with --out CSV, JSON and a figure.")
    add_bench_arguments(bench)
    bench.set_defaults(run=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``symadj`` console script and ``python -m symadj``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return args.run(args)
    except SymadjError as exc:
        print(f"symadj: error: {exc}", file=sys.stderr)
        return 2
