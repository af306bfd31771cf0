"""The one door to array-api-compat: every array namespace the core uses comes from here."""

from __future__ import annotations

from typing import Any

import array_api_compat


def namespace_of(*arrays: Any) -> Any:
    """The array-API namespace of ``arrays`` (torch, JAX, NumPy, array-api-strict, ...)."""
    return array_api_compat.array_namespace(*arrays)


def is_array(value: Any) -> bool:
    """Whether ``value`` is an array of a library array-api-compat knows."""
    return array_api_compat.is_array_api_obj(value)


def device_of(array: Any) -> Any:
    """The device an array lives on."""
    return array_api_compat.device(array)
