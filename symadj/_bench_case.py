"""What a backend plugin brings to ``symadj bench`` (hook ``symadj_bench_cases``): its case,
and the peer libraries it can time. Part of the plugin contract, so the registry reads it
without importing the benchmark (``symadj.bench.cases`` is its public name).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Peer:
    """Another library's solver that a backend's case can time, one method per mode.

    Attributes:
        library: the peer's name, the first part of its methods' names (``"<library>:<mode>"``).
        modes: what the case times: the peer's functions or gradient classes, say.
        requires: modules it needs besides the backend's array library.
        install: the command that installs them.
        slow_modes: modes a ``--quick`` run leaves out unless ``--method`` names them
            (slow to compile, say).

    Examples:
        >>> Peer("mypeer", ("odeint",), ("mypeer",), "pip install mypeer").modes
        ('odeint',)
    """

    library: str
    modes: tuple[str, ...]
    requires: tuple[str, ...]
    install: str
    slow_modes: tuple[str, ...] = ()


@dataclass(frozen=True)
class BenchCaseInfo:
    """A backend's benchmark case, as the hook ``symadj_bench_cases`` returns it.

    The worker process imports ``module``, which supplies ``configure(threads, dtype)`` (set
    up the process before any case) and ``BenchCase(method, spec, dtype, device,
    count_apart)``: one method on one problem, its arrays from
    :func:`symadj.bench.problems.problem_arrays`, its field and loss
    :func:`~symadj.bench.problems.vector_field` and :func:`~symadj.bench.problems.loss_of`
    in the library's namespace. A case has ``run()`` (a forward and backward pass),
    ``counted() -> (steps, fevals)`` and ``gradient()`` (the canonical float64 vector,
    :func:`~symadj.bench.problems.gradient_vector`); optionally an ``info`` dict of extra
    figures (``compile_s``, ``temp_mib``) and ``reset_peak()``/``peak_mib()`` where the peak
    is not the process's resident memory. The module may also supply
    ``fit_max_steps(specs, dtype)``, called once with every problem before the first case.
    Every case runs in float32 (timed) and in float64 (symadj's ``checkpoint`` mode gives
    the reference gradient).

    Attributes:
        backend: the symadj backend the case solves with; its methods are
            ``"symadj-<backend>:<mode>"``, and ``--backend`` selects them by this name.
        module: the module the worker imports (which imports the array library).
        library: the import name of the array library.
        extra: the pip requirement that installs it, e.g. ``"symadj[mylib]"``.
        peers: the other libraries the case can time on the same problems.
        device: whether the case runs on ``--device`` (otherwise on the CPU).
        order: where the case comes among the others (lower first, then by backend name): in
            the table, and as the backend that computes the float64 reference when several can.
        versions: more distributions whose versions ``results.json`` records, besides the
            library and the peers' requirements.
        single_thread_env: environment variables (appended to a value already set) that
            keep the library to one thread, for ``--threads 1``.

    Examples:
        >>> case = BenchCaseInfo("mylib", "mylib_plugin.bench_case", "mylib", "symadj-mylib")
        >>> case.peers, case.device
        ((), False)
    """

    backend: str
    module: str
    library: str
    extra: str
    peers: tuple[Peer, ...] = ()
    device: bool = False
    order: int = 100
    versions: tuple[str, ...] = ()
    single_thread_env: tuple[tuple[str, str], ...] = ()
