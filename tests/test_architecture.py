"""The package's layers (docs/architecture.md): every import points down, and no modules import each other in a
circle. Read from the source with ast, function-level imports included, so a new import that points up or closes
a circle fails here rather than in a reader's head."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "visiontrain"

# From the bottom up; a module belongs to the first layer with a prefix that matches its dotted name. The registries'
# providers (the modules that fill DATASETS, MODELS, PRESETS, EXPORTERS) are imported by name on the first lookup,
# as plugins are (visiontrain/_registry.py), and are not imports of the registry's module.
LAYERS = [
    ("base: errors, io helpers, registries", ["errors", "_io", "_csv", "_registry", "_version"]),
    ("config and presets", ["config", "presets", "windows"]),
    ("data, models, metrics", ["data", "models", "metrics"]),
    ("engine, run folder, inference, drawing", ["engine.loop", "engine.optim", "engine.precision", "engine.checkpoint",
                                                 "engine.distributed", "engine.ema", "engine.imbalance",
                                                 "engine.progress", "engine.overfit", "engine", "run", "inference",
                                                 "figures"]),
    ("the build step, and sizing it to a time budget", ["engine.build", "engine.budget"]),
    ("workflows", ["fit", "posthoc", "evaluation", "predict", "explain", "export", "report", "sweep", "lrfind",
                   "eject"]),
    ("entry points: the API facade and the CLI", ["api", "cli", "completion", "__main__", ""]),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def layer_of(name: str) -> int:
    best = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if name == prefix or (prefix and name.startswith(prefix + ".")):
                length = len(prefix)
                if best is None or length > best[1]:
                    best = (index, length)
    if best is None:
        raise AssertionError(f"visiontrain.{name} is in no layer of tests/test_architecture.py; add it to one")
    return best[0]


def imports_of(name: str) -> set[str]:
    """The package's modules that `name` imports anywhere in its file (relative and absolute imports), as dotted
    names relative to the package; `from . import x` counts as an import of submodule x where x is one."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                module = "visiontrain" + "".join("." + part for part in base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from package import submodule` imports the submodule (the parent package is initialised for any
            # import below it, which is no dependency); `from module import name` imports the module
            targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}".removeprefix("visiontrain.") in MODULES
                       else module for alias in node.names]
        else:
            continue
        for target in targets:
            if target == "visiontrain" or target.startswith("visiontrain."):
                inner = target.removeprefix("visiontrain").removeprefix(".")
                if inner in MODULES:
                    found.add(inner)
    found.discard(name)
    return found


GRAPH = {name: imports_of(name) for name in MODULES}


def test_every_module_is_in_a_layer():
    for name in MODULES:
        layer_of(name)


def test_every_import_points_down_or_sideways():
    upward = [f"visiontrain.{name} ({LAYERS[layer_of(name)][0]}) imports visiontrain.{target} "
              f"({LAYERS[layer_of(target)][0]})"
              for name, targets in GRAPH.items() for target in sorted(targets)
              if layer_of(target) > layer_of(name) and not _package_face(name, target)]
    assert not upward, "imports that point up:\n" + "\n".join(upward)


def _package_face(name: str, target: str) -> bool:
    """A package's __init__ importing its own submodules (data/__init__ -> data.folder) hands names on."""
    return target.startswith(name + ".") if name else False


def test_no_modules_import_each_other_in_a_circle():
    """Strongly connected groups of the import graph, packages' __init__ included."""
    graph = GRAPH
    index, low, on_stack, stack, circles, counter = {}, {}, set(), [], [], [0]

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for node in graph:
        if node not in index:
            visit(node)
    assert not circles, "modules that import each other in a circle: " + "; ".join(" <-> ".join(c) for c in circles)


@pytest.mark.parametrize("module, must_not_reach", [
    ("config", "models"), ("config", "data"), ("report.html", "fit"), ("report.plots", "explain"),
    ("models.pretrained", "engine"), ("data.folder", "engine"), ("inference", "fit")])
def test_the_lower_rooms_do_not_reach_the_upper_ones(module, must_not_reach):
    """Some of the circles this test was written against, named: the report reads a run folder and never calls back
    into a workflow; config validates names through the registries, not by importing the models."""
    reached, todo = set(), [module]
    while todo:
        for target in GRAPH[todo.pop()]:
            if target not in reached:
                reached.add(target)
                todo.append(target)
    assert not any(t == must_not_reach or t.startswith(must_not_reach + ".") for t in reached)


def test_function_level_imports_of_the_package_say_why():
    """An import inside a function is for start-up time or an optional dependency (torch stays out of an ONNX
    bundle's prediction), never to break a circle: outside the entry points (cli.py, __init__.py, whose imports are
    all lazy so that `visiontrain --help` answers at once), each carries its reason as a comment."""
    unexplained = []
    for name, path in MODULES.items():
        if name in ("cli", "") or path.name == "__init__.py" and name == "":
            continue
        lines = path.read_text().splitlines()
        for function in ast.walk(ast.parse(path.read_text())):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("visiontrain")):
                    if "#" not in lines[node.lineno - 1]:
                        unexplained.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: "
                                           f"{lines[node.lineno - 1].strip()}")
    assert not unexplained, "function-level imports without their reason:\n" + "\n".join(unexplained)


def test_no_test_module_imports_another():
    """Shared test code lives in tests/helpers.py (and conftest.py, realdata.py), so that each test module can be run,
    moved or deleted alone."""
    tests = Path(__file__).resolve().parent
    offenders = [f"{path.relative_to(tests)} imports {alias.name if isinstance(node, ast.Import) else node.module}"
                 for path in tests.rglob("test_*.py")
                 for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, (ast.Import, ast.ImportFrom))
                 for alias in (node.names if isinstance(node, ast.Import) else [node])
                 if ((alias.name if isinstance(node, ast.Import) else node.module) or "").split(".")[-1]
                 .startswith("test_")]
    assert not offenders, offenders
