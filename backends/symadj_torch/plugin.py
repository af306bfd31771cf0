"""Registers the PyTorch backend, and its benchmark case with torchdiffeq as the peer, without importing torch."""

from __future__ import annotations

from symadj import BackendInfo, hookimpl
from symadj.bench.cases import BenchCaseInfo, Peer


def _load():
    from ._backend import TorchBackend

    return TorchBackend()


@hookimpl
def symadj_register_backends() -> list[BackendInfo]:
    return [BackendInfo("torch", library="torch", extra="symadj[torch]", array_modules=("torch",), load=_load,
                        modules=(("torch", "symadj_torch.modules"), ("torchdiffeq", "symadj_torch.torchdiffeq")))]


@hookimpl
def symadj_bench_cases() -> list[BenchCaseInfo]:
    torchdiffeq = Peer("torchdiffeq", ("odeint", "odeint_adjoint"), ("torchdiffeq",), "pip install torchdiffeq")
    return [BenchCaseInfo("torch", module="symadj_torch.bench_case", library="torch", extra="symadj[torch]",
                          peers=(torchdiffeq,), device=True, order=10)]
