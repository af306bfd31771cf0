"""Checkpoint policies on a long solve: peak memory and forward+backward time of
``gradient="symplectic"`` with ``checkpoints="all"``, ``"revolve:K"`` and ``"stages"``.

A 2000-step dopri5 solve (fixed steps, so every policy takes the same steps) of a small
MLP field on a large state, where the checkpoints, not the network, dominate memory.
Each policy runs in a fresh process: one pass for memory, then timed passes; the peak is the
resident set above the baseline (CPU; measured as ``symadj bench`` does, see
symadj/bench/measure.py) or ``torch.cuda.max_memory_allocated`` (CUDA).

    python tests/benchmarks/bench_checkpoints.py            # 2000 steps, state 256 x 64
    python tests/benchmarks/bench_checkpoints.py --quick    # 200 steps, about a minute
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from symadj.bench import measure

POLICIES = ["all", "revolve:4", "revolve:16", "revolve:64", "stages"]


def _parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 steps")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--only", nargs="+", default=POLICIES)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.repeats = 200, 2
    return args


def worker(args):
    import torch

    import symadj

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(args.features, args.width), torch.nn.Tanh(),
                              torch.nn.Linear(args.width, args.features)).to(args.device)
    calls = {"fevals": 0}

    def field(t, y):
        calls["fevals"] += 1
        return net(y) - 0.1 * y

    y0 = torch.randn(args.batch, args.features, device=args.device)
    end = 0.01 * args.steps
    ts = torch.tensor([0.0, end], device=args.device)
    options = {"step_size": end / args.steps, "max_steps": args.steps + 10}

    def iteration():
        sol = symadj.solve(field, y0, ts, method="dopri5", options=options, checkpoints=args.worker,
                           adjoint_params=list(net.parameters()))
        sol.ys[-1].square().mean().backward()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        net.zero_grad(set_to_none=True)
        return sol.stats

    cuda = args.device.startswith("cuda")
    # The memory pass first, with blocks of 64 KiB and more mmapped from the start so that
    # resident memory follows live memory (after heap-allocated timing passes, the heap they
    # left free would serve those blocks and the peak would count its fragmentation).
    measure.set_mmap_threshold(measure.SMALL_MMAP_THRESHOLD)
    iteration()
    measure.release_free_memory()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    baseline = torch.cuda.memory_allocated() / 2**20 if cuda else measure.reset_peak()
    calls["fevals"] = 0
    stats = iteration()
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else measure.peak_mib()
    fevals = calls["fevals"]
    measure.set_mmap_threshold(measure.LARGE_MMAP_THRESHOLD)
    iteration()
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        iteration()
        times.append(time.perf_counter() - start)
    print(json.dumps({"policy": args.worker, "seconds": statistics.median(times),
                      "peak_mib": peak - baseline, "steps": int(stats.n_accepted),
                      "fevals": fevals, "extra_fevals": int(stats.extra_fevals),
                      "checkpoint_mib": int(stats.checkpoint_bytes) / 2**20}))


def main(argv=None):
    args = _parse(argv)
    if args.worker:
        return worker(args)
    state_mib = args.batch * args.features * 4 / 2**20
    print(f"# {args.steps} dopri5 steps, state {args.batch}x{args.features} float32 ({state_mib:.3f} MiB), "
          f"MLP 2x{args.width}, device {args.device}, median of {args.repeats}")
    print(f"{'checkpoints':<12} {'fwd+bwd s':>10} {'vs all':>7} {'peak MiB':>9} {'held MiB':>9} "
          f"{'fevals':>7} {'extra':>7}")
    passthrough = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--only" and a not in args.only]
    baseline_seconds = None
    for policy in args.only:
        out = subprocess.run([sys.executable, __file__, *passthrough, "--worker", policy],
                             capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{policy:<12} failed: {out.stderr.strip().splitlines()[-1] if out.stderr else 'no output'}")
            continue
        row = json.loads(out.stdout.strip().splitlines()[-1])
        baseline_seconds = baseline_seconds or row["seconds"]
        print(f"{policy:<12} {row['seconds']:>10.3f} {row['seconds'] / baseline_seconds:>7.2f} "
              f"{row['peak_mib']:>9.1f} {row['checkpoint_mib']:>9.1f} {row['fevals']:>7} {row['extra_fevals']:>7}",
              flush=True)


if __name__ == "__main__":
    main()
