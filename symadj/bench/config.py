"""The benchmark's command-line flags, and the points and methods they select.

Every problem field is a flag named ``--<problem>-<field>`` (``--mlp-width 256``,
``--pendulum-method dopri8``); ``--quick`` swaps in small defaults, and any flag given
explicitly still wins over them.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from ..errors import InvalidArgumentError, UnknownNameError
from .methods import select
from .problems import KINDS, PLAIN_MLP, ProblemSpec
from .runner import BenchConfig, Point

DEFAULTS: dict[str, ProblemSpec] = {
    "mlp": ProblemSpec("mlp"),
    "cnf": ProblemSpec("cnf", layers=4, width=64, batch=512, rtol=1e-7, atol=1e-7),
    "pendulum": ProblemSpec("pendulum", layers=3, width=64, batch=256, method="dopri8", end=2.0, outputs=11),
    "timeseries": ProblemSpec("timeseries", layers=2, width=64, batch=64, features=8, rtol=1e-5, atol=1e-5,
                              end=10.0, outputs=200),
    # A 1 MiB float32 state over about 130 steps, the network small: the states a mode keeps
    # a step (N·|y|) dominate its memory.
    "bigstate": ProblemSpec("bigstate", layers=2, width=32, batch=4096, features=64, end=20.0),
}
# What a plain ``symadj bench`` runs, and ``--quick``; the others are chosen with --problem.
DEFAULT_KINDS = ("mlp", "cnf", "pendulum")
QUICK_KINDS = ("mlp",)
# Small and smooth (lower gain: fewer steps), so that ``--quick`` is quick; the tolerances
# stay those of the full run. A peer's slow modes are left out too (Method.quick).
QUICK: dict[str, dict[str, Any]] = {
    "mlp": {"layers": 4, "width": 64, "batch": 32, "features": 8, "gain": 1.5},
    "cnf": {"layers": 3, "width": 32, "batch": 64, "gain": 1.0},
    "pendulum": {"layers": 3, "width": 32, "batch": 32, "end": 1.0, "outputs": 5, "gain": 1.0},
    "timeseries": {"width": 32, "batch": 16, "outputs": 50, "gain": 1.0},
    "bigstate": {"batch": 64, "features": 32, "end": 8.0},
}
SWEEPS = ("end", "rtol", "off")
SWEEP_VALUES = {"end": (0.5, 1.0, 2.0, 4.0), "rtol": (1e-5, 1e-6, 1e-7, 1e-8)}
QUICK_SWEEP_VALUES = {"end": (0.5, 1.0, 2.0), "rtol": (1e-5, 1e-6, 1e-7)}
# The sweep repeats the mlp problem several times over, so by default it runs at a
# smaller width and batch than the table's problem (--sweep-width/--sweep-batch).
SWEEP_SIZE = {"width": 256, "batch": 32}
_FIELDS = {f.name: f for f in dataclasses.fields(ProblemSpec) if f.name not in ("kind", "seed")}
_TYPES = {"int": int, "float": float, "str": str}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``symadj bench`` flags to ``parser``."""
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run of about a minute: the mlp problem (others with --problem) at small sizes "
                             "and a 3-point sweep, each backend's methods in one worker, without the peers' slow "
                             "modes (named with --method)")
    others = [kind for kind in KINDS if kind not in DEFAULT_KINDS]
    parser.add_argument("--problem", nargs="+", metavar="NAME",
                        help=f"problems to run (default {', '.join(DEFAULT_KINDS)}; also {', '.join(others)})")
    parser.add_argument("--backend", nargs="+", metavar="NAME",
                        help="backends to run (default every backend that brings a benchmark case)")
    parser.add_argument("--method", nargs="+", metavar="NAME",
                        help="methods whose name contains one of these (e.g. symplectic adjoint); default all")
    parser.add_argument("--out", metavar="DIR", help="write results.csv, results.json and bench.png to DIR")
    parser.add_argument("--repeats", type=int, help="timed repeats after a warm-up (default 3, quick 2)")
    parser.add_argument("--threads", type=int, default=0,
                        help="threads per worker process (default 0: the libraries' own, all cores)")
    parser.add_argument("--device", default="cpu",
                        help="device for the methods of backends that take one, e.g. cuda (default cpu)")
    parser.add_argument("--reference-rtol", type=float, default=1e-10,
                        help="tolerance of the float64 dopri8 reference gradient (default 1e-10)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds one worker may run (default 3600)")
    sweep = parser.add_argument_group("sweep (the figure: memory and time against steps, on the mlp problem)")
    sweep.add_argument("--sweep", choices=SWEEPS, default="end",
                       help="vary the integration length or the tolerance (default end); off: no sweep")
    sweep.add_argument("--sweep-values", nargs="+", type=float, metavar="X",
                       help="values of the swept field (default end 0.5 1 2 4, rtol 1e-5 ... 1e-8)")
    sweep.add_argument("--sweep-width", type=int, help=f"width of the swept mlp (default {SWEEP_SIZE['width']}; "
                                                       "quick: that of the mlp problem)")
    sweep.add_argument("--sweep-batch", type=int, help=f"batch of the swept mlp (default {SWEEP_SIZE['batch']}; "
                                                       "quick: that of the mlp problem)")
    for kind in KINDS:
        group = parser.add_argument_group(f"{kind} problem")
        for name, spec_field in _FIELDS.items():
            if kind not in PLAIN_MLP and name == "features":
                continue
            group.add_argument(f"--{kind}-{name}", type=_TYPES[str(spec_field.type)], metavar="X",
                               help=f"(default {getattr(DEFAULTS[kind], name)})")


def problem_specs(args: argparse.Namespace) -> dict[str, ProblemSpec]:
    """The selected problems at the sizes the flags give.

    Raises:
        UnknownNameError: a problem name that does not exist.
    """
    kinds = args.problem or list(QUICK_KINDS if args.quick else DEFAULT_KINDS)
    for kind in kinds:
        if kind not in KINDS:
            raise UnknownNameError("benchmark problem", kind, KINDS)
    specs = {}
    for kind in kinds:
        changes = dict(QUICK[kind]) if args.quick else {}
        for name in _FIELDS:
            value = getattr(args, f"{kind}_{name}", None)
            if value is not None:
                changes[name] = value
        specs[kind] = DEFAULTS[kind].replace(**changes)
    return specs


def points(args: argparse.Namespace) -> tuple[Point, ...]:
    """The table's problems, then the sweep points (a sweep point equal to a table problem is
    that problem, run once).

    Raises:
        UnknownNameError: a problem name that does not exist.
        InvalidArgumentError: a sweep value that is not positive.
    """
    specs = problem_specs(args)
    table = [Point(kind, spec) for kind, spec in specs.items()]
    if args.sweep == "off":
        return tuple(table)
    values = args.sweep_values or (QUICK_SWEEP_VALUES if args.quick else SWEEP_VALUES)[args.sweep]
    if any(not value > 0 for value in values):
        raise InvalidArgumentError(f"--sweep-values must be positive numbers, got {values}")
    base = specs.get("mlp") or problem_specs(argparse.Namespace(**{**vars(args), "problem": ["mlp"]}))["mlp"]
    if not args.quick:
        base = base.replace(**SWEEP_SIZE)
    base = base.replace(width=args.sweep_width or base.width, batch=args.sweep_batch or base.batch)
    result = list(table)
    for value in sorted(values):
        changes = {"end": value} if args.sweep == "end" else {"rtol": value, "atol": value}
        spec = base.replace(**changes)
        same = next((i for i, point in enumerate(result) if point.spec == spec), None)
        if same is None:
            result.append(Point(f"sweep-{args.sweep}={value:g}", spec, main=False, sweep=True))
        else:
            result[same] = dataclasses.replace(result[same], sweep=True)
    return tuple(result)


def bench_config(args: argparse.Namespace) -> BenchConfig:
    """The whole run the flags describe.

    Raises:
        UnknownNameError: a problem, backend or method name that does not exist.
        InvalidArgumentError: a flag value out of range.
    """
    repeats = args.repeats if args.repeats is not None else (2 if args.quick else 3)
    if repeats < 1:
        raise InvalidArgumentError(f"--repeats must be at least 1, got {repeats}")
    if args.threads < 0:
        raise InvalidArgumentError(f"--threads must be 0 (library defaults) or more, got {args.threads}")
    methods = select(args.backend, args.method)
    if args.quick and not args.method:
        methods = [method for method in methods if method.quick]
    return BenchConfig(points=points(args), methods=tuple(methods), repeats=repeats,
                       device=args.device, threads=args.threads, count_apart=not args.quick,
                       reference_rtol=args.reference_rtol, timeout=args.timeout,
                       shared_workers=args.quick)
