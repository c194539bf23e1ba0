"""A tiny name -> object registry: the one way to add a dataset, model, preset, export format or logger.

The registries themselves live here, at the bottom of the package, so that any layer can look a name up (the
config checks `--model` and `--dataset` before anything is loaded) without importing the layers that fill them.
Each names its providers: the modules that register its entries when imported. They are imported on the first
lookup, the way plugins are, so `import visiontrain.config` stays light and imports only ever point down.
"""
from __future__ import annotations

import difflib
import importlib
from typing import Any, Callable, Generic, Iterator, TypeVar

from .errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, providers: tuple[str, ...] = ()):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._lazy: list[Callable[[], None]] = []
        self._prefixes: dict[str, tuple[Callable[[str], T], str]] = {}
        self._providers = list(providers)  # modules that register entries on import, imported on first lookup

    def _provide(self) -> None:
        for provider in list(self._providers):  # a provider that looks a name up while it is being imported gets
            importlib.import_module(provider)  # its own half-made module back from sys.modules: no recursion
            if provider in self._providers:
                self._providers.remove(provider)  # only once imported: a failed import fails the next lookup too

    def register_lazy(self, loader: Callable[[], None]) -> None:
        """`loader` registers more names when first needed (torchvision's ~80 models cost 2 s to import)."""
        self._lazy.append(loader)

    def register_prefix(self, prefix: str, resolve: Callable[[str], T], description: str) -> None:
        """Names `prefix + NAME` that are looked up on demand, not listed (timm's ~1,400 architectures):
        `resolve(NAME)` returns the object, or raises UnknownNameError with the sentence to show."""
        self._prefixes[prefix] = (resolve, description)

    def prefixes(self) -> dict[str, str]:
        """prefix -> a line describing the names it stands for (for listings)."""
        self._provide()
        return {prefix: description for prefix, (_, description) in self._prefixes.items()}

    def _resolve(self, name: str) -> T | None:
        """The object of a prefixed name; None when `name` has no registered prefix."""
        for prefix, (resolve, _) in self._prefixes.items():
            if name.startswith(prefix):
                return resolve(name[len(prefix):])
        return None

    def _load_lazy(self) -> None:
        while self._lazy:
            self._lazy.pop(0)()

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items:  # torchvision's rule: a silent overwrite hides bugs
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        self._provide()
        if name not in self._items:
            resolved = self._resolve(name)  # raises UnknownNameError for an unknown prefixed name
            if resolved is not None:
                return resolved
            self._load_lazy()
        if name not in self._items:
            raise UnknownNameError(self.unknown_message(name))
        return self._items[name]

    def unknown_message(self, name: str) -> str:
        self._provide()
        self._load_lazy()
        try:
            self._resolve(name)
        except UnknownNameError as error:  # a prefixed name: the prefix's own sentence
            return str(error)
        close = difflib.get_close_matches(name, list(self._items), n=3, cutoff=0.5)
        close += [prefix + name for prefix in self._prefixes if self._resolves(prefix + name)]
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        return f"unknown {self.kind} {name!r}: {hint}valid names are: {', '.join(sorted(self._items))}"

    def names(self) -> list[str]:
        self._provide()
        self._load_lazy()
        return sorted(self._items)

    def _resolves(self, name: str) -> bool:
        try:
            return self._resolve(name) is not None
        except UnknownNameError:
            return False

    def __contains__(self, name: object) -> bool:
        self._provide()
        if name in self._items or (isinstance(name, str) and self._resolves(name)):
            return True
        self._load_lazy()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


# The package's registries and the modules that fill them.
DATASETS: Registry[Any] = Registry(  # data/registry.py: DatasetSource; data/memory.py: python/<name> (from Python)
    "dataset", ("visiontrain.data.registry", "visiontrain.data.memory"))
MODELS: Registry[Callable[..., Any]] = Registry(  # builders -> Classifier; other packages' via entry points
    "model", ("visiontrain.models", "visiontrain.models.plugins"))
PRESETS: Registry[dict[str, Any]] = Registry("preset", ("visiontrain.presets",))  # tuned config fields
EXPORTERS: Registry[Any] = Registry("export format", ("visiontrain.export",))  # export/: ExportFormat
LOGGERS: Registry[Any] = Registry("logger", ("visiontrain.engine.loggers",))  # engine/loggers.py: LoggerKind
