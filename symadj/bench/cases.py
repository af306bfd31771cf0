"""What a backend plugin brings to ``symadj bench``: its case, and the peer libraries it can time.

A plugin returns these from the hook ``symadj_bench_cases``; the benchmark core knows no
array library, only the cases the plugins describe. Describing a case must not import
its array library (the description is read to list the methods, installed or not).
"""

from __future__ import annotations

from .._bench_case import BenchCaseInfo, Peer

__all__ = ["BenchCaseInfo", "Peer"]
