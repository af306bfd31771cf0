"""Forward+backward time and peak memory of each gradient mode, next to torchdiffeq.

Each method runs in a fresh process so that memory peaks do not mix. On the CPU the
peak is the process's peak resident memory above its baseline, measured after one
warm-up forward and backward with the kernel's peak counter reset; on CUDA it is
``torch.cuda.max_memory_allocated`` over the same iterations.

    python tests/benchmarks/bench_torch.py            # 8 layers x 512, batch 256, dopri5, rtol 1e-7
    python tests/benchmarks/bench_torch.py --quick    # a small version, under a minute
    python tests/benchmarks/bench_torch.py --floor    # the network's own costs, and the least
                                                      # time checkpoints="stages" can take
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time

# "library:mode", or "symadj:mode@policy" for a checkpoint policy other than the default "auto".
METHODS = [
    "symadj:symplectic", "symadj:symplectic@all", "symadj:symplectic@stages", "symadj:checkpoint", "symadj:backprop",
    "symadj:adjoint", "torchdiffeq:odeint", "torchdiffeq:odeint_adjoint",
]


def _parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small network and batch")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--end", type=float, default=1.0, help="integrate over [0, end]")
    parser.add_argument("--gain", type=float, default=2.0,
                        help="weights ~ N(0, gain²/fan_in): 2 gives ~30 dopri5 steps on [0, 1] at rtol 1e-7")
    parser.add_argument("--rtol", type=float, default=1e-7)
    parser.add_argument("--atol", type=float, default=1e-7)
    parser.add_argument("--method", default="dopri5")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--only", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--floor", action="store_true",
                        help="time the network alone and print the lower bound of stages/backprop")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--measure", choices=["time", "memory"], default="time", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.layers, args.width, args.batch, args.repeats = 4, 128, 64, 2
    return args


def _model(args, torch):
    torch.manual_seed(0)
    layers, size = [], args.features
    for _ in range(args.layers - 1):
        layers += [torch.nn.Linear(size, args.width), torch.nn.Tanh()]
        size = args.width
    net = torch.nn.Sequential(*layers, torch.nn.Linear(size, args.features)).to(args.device)
    with torch.no_grad():
        for layer in net:
            if isinstance(layer, torch.nn.Linear):
                layer.weight.normal_(0.0, args.gain / math.sqrt(layer.in_features))

    class Field(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, t, y):
            return self.net(y)

    return Field()


def _status_mib(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


def _reset_peak(torch, device):
    """Start a new peak measurement; returns the baseline (MiB) it is measured above."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return 0.0
    try:  # Linux: writing 5 to clear_refs resets the peak resident set size (VmHWM)
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return _status_mib("VmRSS")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _peak_mib(torch, device):
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        return _status_mib("VmHWM")
    except (OSError, KeyError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(args):
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    library, mode = args.worker.split(":")
    mode, _, policy = mode.partition("@")
    func = _model(args, torch)
    y0 = torch.randn(args.batch, args.features, device=args.device)
    ts = torch.tensor([0.0, args.end], device=args.device)
    counter = {"fevals": 0}
    original = func.forward

    def counted(t, y):
        counter["fevals"] += 1
        return original(t, y)

    func.forward = counted
    if library == "symadj":
        import symadj

        def run():
            return symadj.solve(func, y0, ts, method=args.method, rtol=args.rtol, atol=args.atol, gradient=mode,
                                checkpoints=policy or None)
    else:
        import torchdiffeq

        solver = torchdiffeq.odeint if mode == "odeint" else torchdiffeq.odeint_adjoint

        def run():
            return solver(func, y0, ts, method=args.method, rtol=args.rtol, atol=args.atol)

    def iteration():
        result = run()
        ys = result.ys if hasattr(result, "ys") else result
        ys[-1].square().mean().backward()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        func.zero_grad(set_to_none=True)
        return result

    iteration()  # warm-up: one-time allocations of autograd and the allocator are not charged
    baseline = _reset_peak(torch, args.device)
    times, steps = [], None
    for _ in range(args.repeats):
        counter["fevals"] = 0
        start = time.perf_counter()
        result = iteration()
        times.append(time.perf_counter() - start)
        if hasattr(result, "stats"):
            steps = int(result.stats.n_accepted)
    peak = _peak_mib(torch, args.device) - baseline
    print(json.dumps({"method": args.worker, "seconds": statistics.median(times), "peak_mib": peak,
                      "fevals": counter["fevals"], "steps": steps}))


def _run_worker(passthrough, method, measure):
    """One fresh process; memory is measured in a process of its own, with an allocator setting
    (a fixed mmap threshold, so that glibc unmaps large frees at once and the resident set
    follows live memory) that would slow the timing down."""
    env = dict(os.environ)
    if measure == "memory":
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    out = subprocess.run([sys.executable, __file__, *passthrough, "--worker", method, "--measure", measure,
                          *(["--repeats", "1"] if measure == "memory" else [])],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr else "no output")
    row = json.loads(out.stdout.strip().splitlines()[-1])
    return {"peak_mib": row["peak_mib"]} if measure == "memory" else {k: v for k, v in row.items() if k != "peak_mib"}


def floor(args, evaluations=60):
    """Per evaluation of the network: a forward without a graph (F), backprop through a chain
    of evaluations as a solve makes (P), and one vector-Jacobian product with its own forward
    (V). A solve with checkpoints="stages" takes F + V per stage where backprop takes P, so
    (F + V) / P bounds its time ratio from below, whatever the solver's own overhead."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    net = _model(args, torch).net
    params = list(net.parameters())
    states = [0.1 * torch.randn(args.batch, args.features, device=args.device) for _ in range(evaluations)]

    def no_graph():
        with torch.no_grad():
            for y in states:
                net(y)

    def chain():
        y = states[0]
        for _ in states:
            y = y + 0.01 * net(y)
        y.square().mean().backward()
        net.zero_grad(set_to_none=True)

    def vjps():
        totals = [torch.zeros_like(p) for p in params]
        for y in states:
            y = y.detach().requires_grad_(True)
            out = net(y)
            torch._foreach_add_(totals, list(torch.autograd.grad(out, (y, *params), torch.ones_like(out))[1:]))

    def per_evaluation_ms(fn):
        fn()
        times = []
        for _ in range(max(args.repeats, 3)):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        return 1e3 * statistics.median(times) / evaluations

    f, p, v = per_evaluation_ms(no_graph), per_evaluation_ms(chain), per_evaluation_ms(vjps)
    print(f"# {args.layers} layers x {args.width}, batch {args.batch}, device {args.device}, "
          f"threads {torch.get_num_threads()}; ms per network evaluation")
    print(f"forward without graph        F = {f:8.3f}")
    print(f"backprop through a chain     P = {p:8.3f}   (backward/forward {(p - f) / f:.2f})")
    print(f"VJP with its own forward     V = {v:8.3f}")
    print(f"stages / backprop >= (F + V) / P = {(f + v) / p:.3f}")
    return {"forward_ms": f, "backprop_ms": p, "vjp_ms": v, "stages_floor": (f + v) / p}


def main(argv=None):
    args = _parse(argv)
    if args.worker:
        return worker(args)
    if args.floor:
        return floor(args)
    print(f"# {args.layers} layers x {args.width} (gain {args.gain}), batch {args.batch}, {args.method}, "
          f"rtol {args.rtol}, t in [0, {args.end}], device {args.device}, median of {args.repeats}")
    print(f"{'method':<28} {'fwd+bwd s':>10} {'peak MiB':>10} {'fevals':>8} {'steps':>6}")
    passthrough = [a for a in sys.argv[1:] if a not in ("--only",) and a not in METHODS]
    rows = []
    for method in args.only:
        try:
            row = {**_run_worker(passthrough, method, "memory"), **_run_worker(passthrough, method, "time")}
        except RuntimeError as exc:
            print(f"{method:<28} failed: {exc}")
            continue
        rows.append(row)
        print(f"{method:<28} {row['seconds']:>10.3f} {row['peak_mib']:>10.1f} {row['fevals']:>8} "
              f"{row['steps'] if row['steps'] is not None else '-':>6}", flush=True)
    return rows


if __name__ == "__main__":
    main()
