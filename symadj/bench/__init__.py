"""``symadj bench``: a neural ODE gradient benchmark, each method in a fresh process.

Modules: :mod:`.problems` (the problems as seeded NumPy arrays), :mod:`.methods` (symadj's
gradient modes and the peers), :mod:`.worker` (one method in its own process),
:mod:`.measure` (peak resident memory), :mod:`.runner` (the reference, then a worker per
method), :mod:`.config` (flags to points), :mod:`.report` (table, CSV, JSON) and
:mod:`.plot` (the figure). The problems' torch and JAX code is in the backend plugins
(``symadj_torch.bench_case``, ``symadj_jax.bench_case``), which the worker loads.
"""
