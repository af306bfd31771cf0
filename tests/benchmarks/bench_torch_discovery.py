"""What finding the tensors func reads costs (issue 26): forward+backward time of the torch
modes on the bench's problems, this tree against another checkout (``--before``), each run
in a fresh process on one thread, the two trees interleaved round by round; medians over
rounds of each process's median. Both wall-clock and CPU time (``time.process_time``, less
disturbed by other processes on a shared machine) are reported.

    python tests/benchmarks/bench_torch_discovery.py --before /path/to/older/checkout
    python tests/benchmarks/bench_torch_discovery.py --before ... --problem mlp --size full
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parents[2]
MODES = ("symplectic", "checkpoint", "adjoint")


def _worker(problem: str, size: str, repeats: int, modes: list[str]) -> None:
    import torch
    from symadj_torch.bench_case import BenchCase

    from symadj.bench.config import DEFAULTS, QUICK
    from symadj.bench.methods import Method

    torch.set_num_threads(1)
    spec = DEFAULTS[problem] if size == "full" else DEFAULTS[problem].replace(**QUICK[problem])
    times = {}
    for mode in modes:
        case = BenchCase(Method(f"symadj-torch:{mode}", "symadj", "torch", mode, (), ""), spec)
        case.run()  # warm-up
        wall, cpu = [], []
        for _ in range(repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            case.run()
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        times[mode] = (statistics.median(wall), statistics.median(cpu))
    print(json.dumps(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="root of the checkout to compare with")
    parser.add_argument("--problem", nargs="+", default=["mlp", "timeseries"])
    parser.add_argument("--size", choices=["quick", "full"], default="quick",
                        help="the bench's --quick sizes (default) or its full ones")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per process (their median)")
    parser.add_argument("--modes", nargs="+", default=list(MODES))
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker[0], args.worker[1], args.repeats, args.modes)
        return
    trees = {"before": pathlib.Path(args.before).resolve(), "after": HERE}
    for problem in args.problem:
        runs: dict[str, dict[str, list[list[float]]]] = {name: {m: [] for m in args.modes} for name in trees}
        for _ in range(args.rounds):
            for name, root in trees.items():
                env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{root / 'backends'}"}
                out = subprocess.run([sys.executable, __file__, "--before", str(root), "--worker", problem, args.size,
                                      "--repeats", str(args.repeats), "--modes", *args.modes],
                                     env=env, cwd=root, capture_output=True, text=True, check=True)
                for mode, seconds in json.loads(out.stdout.strip().splitlines()[-1]).items():
                    runs[name][mode].append(seconds)
        for mode in args.modes:
            line = f"{problem} ({args.size}) {mode:>10}:"
            for clock, index in (("wall", 0), ("cpu", 1)):
                before, after = (statistics.median(run[index] for run in runs[name][mode]) for name in trees)
                line += (f"  {clock} before {before * 1e3:7.1f} ms, after {after * 1e3:7.1f} ms "
                         f"({100 * (after / before - 1):+.1f}%)")
            print(line, flush=True)


if __name__ == "__main__":
    main()
