"""Sizes in bytes: read from what a user writes (``"512MiB"``), and written for a reader."""

from __future__ import annotations

import re

from .errors import InvalidArgumentError

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_bytes(value: int | str, what: str = "memory") -> int:
    """A size in bytes from an integer or a string such as ``"512MiB"``, ``"2GiB"``, ``"100MB"``.

    Args:
        value: bytes, or a number with a unit (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB).
        what: the argument's name, for the error message.

    Returns:
        The size in bytes.

    Raises:
        InvalidArgumentError: not a non-negative size, naming ``what``.

    Examples:
        >>> import symadj
        >>> symadj.parse_bytes("1.5GiB"), symadj.parse_bytes("64 MiB"), symadj.parse_bytes(4096)
        (1610612736, 67108864, 4096)
    """
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", value)
        if match and match.group(2).upper() in _UNITS:
            return int(float(match.group(1)) * _UNITS[match.group(2).upper()])
    raise InvalidArgumentError(
        f"{what}={value!r} is not a size: give bytes as an integer or a string such as '512MiB', '2GiB' or '100MB'"
    )


def size_text(bytes_: int) -> str:
    """``bytes_`` in the largest binary unit it reaches, to three figures (``"1.5GiB"``)."""
    for unit in ("GiB", "MiB", "KiB"):
        if bytes_ >= _UNITS[unit.upper()]:
            return f"{bytes_ / _UNITS[unit.upper()]:.3g}{unit}"
    return f"{bytes_}B"
