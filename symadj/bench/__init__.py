"""``symadj bench``: a neural ODE gradient benchmark, each method in a fresh process.

Modules: :mod:`.problems` (the problems, defined once: seeded NumPy arrays, and the field and
loss in array-API form), :mod:`.cases` (what a backend plugin brings: its case and peers),
:mod:`.methods` (symadj's gradient modes on each case's backend, and the peers),
:mod:`.worker` (one method in its own process), :mod:`.measure` (peak resident memory),
:mod:`.runner` (the reference, then a worker per method), :mod:`.config` (flags to points),
:mod:`.report` (table, CSV, JSON) and :mod:`.plot` (the figure). The array-library code is
in the backend plugins, whose hook ``symadj_bench_cases`` names the module the worker loads.
"""
