"""The plugin manager and the registry of tableaux, backends and benchmark cases.

Plugins come from the entry-point group ``symadj``; symadj's own tableaux and
backends are plugins too. A plugin that fails to load or to register is reported
once (a :class:`PluginLoadWarning` and :func:`plugin_errors`) and the rest still load.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import threading
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy
import tomllib

from . import hookspecs
from ._backend import Backend, BackendInfo
from ._bench_case import BenchCaseInfo
from ._tableau import Tableau
from .errors import (
    BackendUnavailableError,
    DuplicateNameError,
    InvalidArgumentError,
    PluginLoadWarning,
    TableauError,
    UnknownNameError,
)

ENTRY_POINT_GROUP = "symadj"

# Used only when symadj runs from a source tree that was never installed (no entry points).
_BUILTIN_PLUGINS = {
    "tableaux": "symadj._tableaux_plugin",
    "numpy": "symadj_numpy.plugin",
    "torch": "symadj_torch.plugin",
    "jax": "symadj_jax.plugin",
}


@dataclass(frozen=True)
class BackendStatus:
    """A row of :func:`symadj.list_backends`.

    Attributes:
        name: the backend's registry name.
        available: whether its array library is installed.
        library: the import name of that library.
        install: the command that installs it, e.g. ``pip install 'symadj[torch]'``.

    Examples:
        >>> import symadj
        >>> [status.install for status in symadj.list_backends() if status.name == "torch"]
        ["pip install 'symadj[torch]'"]
    """

    name: str
    available: bool
    library: str
    install: str


class Registry:
    """Tableaux, backends and benchmark cases by name; thread-safe, filled from plugins on first use."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._loaded = False
        self._loading = False
        self._tableaux: dict[str, Tableau | Path] = {}
        self._backends: dict[str, BackendInfo] = {}
        self._backend_objects: dict[str, Backend] = {}
        self._bench_cases: dict[str, BenchCaseInfo] = {}
        self.errors: list[str] = []

    # -- loading --------------------------------------------------------------
    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        with self._lock:
            # A plugin that looks up the registry while registering (``get_tableau("rk4")``
            # to extend a shipped scheme) re-enters here on this thread: it sees the
            # registry as filled so far instead of starting the load over, recursively.
            if not self._loaded and not self._loading:
                self._loading = True
                try:
                    self._load_plugins()
                finally:
                    self._loading = False
                    self._loaded = True

    def _load_plugins(self) -> None:
        manager = pluggy.PluginManager(ENTRY_POINT_GROUP)
        manager.add_hookspecs(hookspecs)
        for name, load in _plugin_sources():
            try:
                manager.register(load(), name=name)
            except Exception as exc:
                self._report(f"plugin {name!r} failed to load: {type(exc).__name__}: {exc}")
        try:
            manager.check_pending()
        except pluggy.PluginValidationError as exc:
            self._report(f"plugin {exc.plugin!r} implements an unknown hook: {exc}")
        for impl in manager.hook.symadj_register_tableaux.get_hookimpls():
            self._call_plugin(impl, self._add_tableau_entry)
        for impl in manager.hook.symadj_register_backends.get_hookimpls():
            self._call_plugin(impl, self._add_backend)
        for impl in manager.hook.symadj_bench_cases.get_hookimpls():
            self._call_plugin(impl, self._add_bench_case)

    def _call_plugin(self, impl: Any, add: Any) -> None:
        try:
            contributions = impl.function() or []
            single = (str, Path, Tableau, BackendInfo, BenchCaseInfo)
            if isinstance(contributions, single) or not isinstance(contributions, Iterable):
                raise InvalidArgumentError(
                    f"{impl.function.__name__} must return a list, got {type(contributions).__name__}"
                )
            contributions = list(contributions)  # a generator may fail part-way: nothing is added then
        except Exception as exc:
            self._report(f"plugin {impl.plugin_name!r} failed to register: {type(exc).__name__}: {exc}")
            return
        for item in contributions:
            try:
                add(item, replace=False)
            except (DuplicateNameError, TableauError, InvalidArgumentError) as exc:
                self._report(f"plugin {impl.plugin_name!r}: {exc}")

    def _report(self, message: str) -> None:
        self.errors.append(message)
        warnings.warn(message, PluginLoadWarning, stacklevel=4)

    # -- tableaux -------------------------------------------------------------
    def _add_tableau_entry(self, item: Tableau | str | Path, *, replace: bool) -> str:
        if isinstance(item, Tableau):
            name, entry = item.name, item
        elif isinstance(item, (str, Path)):
            entry = Path(item)
            name = _tableau_name_in(entry)
        else:
            raise InvalidArgumentError(
                f"a tableau must be a symadj.Tableau or a path to a TOML file, got {type(item).__name__}"
            )
        with self._lock:
            if name in self._tableaux and not replace:
                raise DuplicateNameError(
                    f"a tableau named {name!r} is already registered; pass replace=True to replace it"
                )
            self._tableaux[name] = entry
        return name

    def register_tableau(self, tableau: Tableau | str | Path, *, replace: bool = False) -> Tableau:
        self._ensure_loaded()
        if not isinstance(tableau, (Tableau, str, Path)):
            raise InvalidArgumentError(
                f"register_tableau takes a symadj.Tableau or the path of a TOML file, got {type(tableau).__name__}"
            )
        if not isinstance(tableau, Tableau):
            tableau = Tableau.from_file(tableau)  # verify now: the caller wants errors at once
        self._add_tableau_entry(tableau, replace=replace)
        return tableau

    def get_tableau(self, name: str) -> Tableau:
        self._ensure_loaded()
        while True:
            with self._lock:
                entry = self._tableaux.get(name)
                if entry is None:
                    raise UnknownNameError("method", name, self._tableaux,
                                           hint="register your own with symadj.register_tableau")
            if not isinstance(entry, Path):
                return entry
            # Verified outside the lock, so that other threads' look-ups never wait on a file
            # (two threads may verify the same file at once: the same result, kept once).
            verified = Tableau.from_file(entry)
            with self._lock:
                if self._tableaux.get(name) is entry:
                    self._tableaux[name] = verified
                    return verified
            # Replaced while it was verified: the new entry is the one to give.

    def tableaux_with_dense_output(self) -> list[str]:
        """The registered tableaux that declare a continuous extension, for messages: a file not
        yet verified is only read for its ``[dense]`` section (a broken one is left out)."""
        self._ensure_loaded()
        with self._lock:
            entries = sorted(self._tableaux.items())
        names = []
        for name, entry in entries:
            if isinstance(entry, Tableau):
                has_dense = entry.dense is not None
            else:
                try:
                    has_dense = "dense" in tomllib.loads(entry.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    has_dense = False
            if has_dense:
                names.append(name)
        return names

    def list_tableaux(self) -> list[str]:
        self._ensure_loaded()
        with self._lock:
            return sorted(self._tableaux)

    # -- backends -------------------------------------------------------------
    def _add_backend(self, info: BackendInfo, *, replace: bool) -> None:
        if not isinstance(info, BackendInfo):
            raise InvalidArgumentError(f"a backend must be a symadj.BackendInfo, got {type(info).__name__}")
        with self._lock:
            if info.name in self._backends and not replace:
                raise DuplicateNameError(
                    f"a backend named {info.name!r} is already registered; pass replace=True to replace it"
                )
            self._backends[info.name] = info
            self._backend_objects.pop(info.name, None)

    def register_backend(self, info: BackendInfo, *, replace: bool = False) -> None:
        self._ensure_loaded()
        self._add_backend(info, replace=replace)

    def get_backend(self, name: str) -> Backend:
        self._ensure_loaded()
        with self._lock:
            if name in self._backend_objects:
                return self._backend_objects[name]
            info = self._backends.get(name)
            if info is None:
                raise UnknownNameError("backend", name, self._backends)
            if not _importable(info.library):
                raise BackendUnavailableError(
                    f"backend {name!r} needs {info.library}, which is not installed: "
                    f"pip install '{info.extra}'"
                )
            try:
                backend = info.load()
            except Exception as exc:
                raise BackendUnavailableError(
                    f"backend {name!r} failed to load: {type(exc).__name__}: {exc}; reinstall its plugin "
                    f"({info.extra}) or choose another backend"
                ) from exc
            if not isinstance(backend, Backend):
                raise BackendUnavailableError(
                    f"backend {name!r}: its load() returned a {type(backend).__name__}, not a symadj.Backend; "
                    f"the plugin that registered it is broken"
                )
            self._backend_objects[name] = backend
            return backend

    def plugin_module(self, public: str) -> ModuleType:
        """The plugin module that holds the contents of ``symadj.<public>`` (see
        :attr:`BackendInfo.modules`), imported.

        Raises:
            BackendUnavailableError: no plugin implements it, or its array library is missing.
        """
        self._ensure_loaded()
        with self._lock:
            infos = [info for info in self._backends.values() if public in dict(info.modules)]
        if not infos:
            raise BackendUnavailableError(
                f"symadj.{public} comes from a backend plugin, and no installed plugin provides it"
            )
        info = infos[0]
        if not _importable(info.library):
            raise BackendUnavailableError(
                f"symadj.{public} needs {info.library}, which is not installed: pip install '{info.extra}'"
            )
        return importlib.import_module(dict(info.modules)[public])

    def list_backends(self) -> list[BackendStatus]:
        self._ensure_loaded()
        with self._lock:
            return [
                BackendStatus(info.name, _importable(info.library), info.library, f"pip install '{info.extra}'")
                for info in sorted(self._backends.values(), key=lambda i: i.name)
            ]

    def backend_for(self, arrays: Iterable[Any]) -> Backend:
        """The backend that handles the type of ``arrays`` (all must agree)."""
        self._ensure_loaded()
        modules = {type(a).__module__.split(".")[0] for a in arrays}
        with self._lock:
            candidates = [i for i in self._backends.values() if modules <= set(i.array_modules)]
        if not candidates:
            types = sorted({type(a).__module__ + "." + type(a).__qualname__ for a in arrays})
            raise InvalidArgumentError(
                f"y0: no backend handles arrays of type {', '.join(types)}; backends: "
                f"{', '.join(sorted(self._backends))}. Pass arrays of one library (and one device), "
                f"or choose backend= explicitly"
            )
        best = max(candidates, key=lambda i: i.priority)
        return self.get_backend(best.name)

    # -- benchmark cases ------------------------------------------------------
    def _add_bench_case(self, case: BenchCaseInfo, *, replace: bool) -> None:
        if not isinstance(case, BenchCaseInfo):
            raise InvalidArgumentError(
                f"a benchmark case must be a symadj.bench.cases.BenchCaseInfo, got {type(case).__name__}"
            )
        with self._lock:
            if case.backend in self._bench_cases and not replace:
                raise DuplicateNameError(f"a benchmark case for backend {case.backend!r} is already registered")
            self._bench_cases[case.backend] = case

    def bench_cases(self) -> list[BenchCaseInfo]:
        """The benchmark cases, by their ``order``, then by backend name."""
        self._ensure_loaded()
        with self._lock:
            return sorted(self._bench_cases.values(), key=lambda case: (case.order, case.backend))


def _plugin_sources() -> list[tuple[str, Any]]:
    entry_points = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
    sources = [(ep.name, ep.load) for ep in entry_points]
    known_modules = {ep.value.split(":")[0] for ep in entry_points}
    for name, module in _BUILTIN_PLUGINS.items():
        if module not in known_modules:
            sources.append((name, lambda module=module: importlib.import_module(module)))
    return sources


def _importable(library: str) -> bool:
    try:
        return importlib.util.find_spec(library) is not None
    except (ImportError, ValueError):
        return False


def _tableau_name_in(path: Path) -> str:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TableauError(f"{path}: cannot read the tableau file ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise TableauError(f"{path}: not valid TOML: {exc}") from None
    name = data.get("name")
    if not isinstance(name, str):
        raise TableauError(f"{path}: missing required field 'name'")
    return name


registry = Registry()
