"""Registers the JAX backend, and its benchmark case with diffrax as the peer, without importing jax."""

from __future__ import annotations

from symadj import BackendInfo, hookimpl
from symadj.bench.cases import BenchCaseInfo, Peer


def _load():
    from ._backend import JaxBackend

    return JaxBackend()


@hookimpl
def symadj_register_backends() -> list[BackendInfo]:
    return [BackendInfo("jax", library="jax", extra="symadj[jax]", array_modules=("jax", "jaxlib"), load=_load,
                        modules=(("equinox", "symadj_jax.equinox"), ("diffrax", "symadj_jax.diffrax_adjoint")))]


@hookimpl
def symadj_bench_cases() -> list[BenchCaseInfo]:
    # A quick run compiles each JAX method once, diffrax's the slowest to compile (20 to 30 s
    # each on 2 cores): it keeps diffrax's default adjoint, and --method names the others.
    # ReversibleHeun is diffrax's reversible solver (not an adjoint), run with its default adjoint;
    # "diffrax:SymplecticAdjoint" is diffrax's solve with adjoint=symadj.diffrax.SymplecticAdjoint().
    diffrax = Peer("diffrax", ("RecursiveCheckpointAdjoint", "SymplecticAdjoint", "BacksolveAdjoint", "DirectAdjoint",
                               "ReversibleHeun"),
                   ("diffrax", "equinox"), "pip install diffrax",
                   slow_modes=("BacksolveAdjoint", "DirectAdjoint", "ReversibleHeun"))
    one_thread = ("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
    return [BenchCaseInfo("jax", module="symadj_jax.bench_case", library="jax", extra="symadj[jax]", peers=(diffrax,),
                          order=20, versions=("jaxlib",), single_thread_env=(one_thread,))]
