"""The package's layers and the rule between them, checked by test/test_layers.py.

Each module belongs to the layer of its longest matching prefix below. A layer may import
from itself and from the layers it lists, never from any other (an *upward* import). Every
``import`` statement counts, inside functions too. ``docs/architecture.md`` shows the same
table to people.
"""

from __future__ import annotations

import ast
from pathlib import Path

#: module prefix -> layer (the longest matching prefix wins).
PREFIXES = {
    "reloc_ros": "core",  # the bare package (its __init__) sits with the core
    "reloc_ros.core": "core",
    "reloc_ros.data": "data",
    "reloc_ros.ros": "ros",
    "reloc_ros.mapping": "mapping",
    "reloc_ros.eval": "eval",
    "reloc_sim": "sim",
    "reloc_train": "train",
    "reloc_train.experiments": "experiments",
    "reloc_ros.tools": "tools",
}

#: layer -> the layers it may import (besides itself).
ALLOWED = {
    "core": set(),
    "data": {"core"},
    "ros": {"core"},
    "mapping": {"core", "data"},
    "eval": {"core", "data", "mapping"},
    "sim": {"core", "data", "eval"},
    "train": {"core", "data", "mapping", "eval", "sim"},
    "experiments": {"core", "data", "mapping", "eval", "sim", "train"},
    "tools": {"core", "data", "ros", "mapping", "eval", "sim", "train", "experiments"},
}

#: source folder -> the package it is installed as (setup.py's package_dir).
SOURCES = {"reloc_ros": "reloc_ros", "reloc_sim": "reloc_sim", "train": "reloc_train"}


def layer_of(module: str) -> str | None:
    """The layer of a dotted module name (None: not one of the project's)."""
    best = None
    for prefix in PREFIXES:
        if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > len(best)):
            best = prefix
    return PREFIXES[best] if best else None


def module_name(path: Path, root: Path) -> str:
    """The dotted module name of a source file under ``root`` (a repository checkout)."""
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    parts[0] = SOURCES[parts[0]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in ``tree``, at any depth."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((node.lineno, target))
            # "from pkg import submodule" imports the submodule too
            out += [(node.lineno, f"{target}.{a.name}") for a in node.names]
    return out


def upward_imports(root: Path) -> list[str]:
    """``"file:line: layer imports module (layer)"`` for every import against :data:`ALLOWED`."""
    problems = []
    for folder in SOURCES:
        for path in sorted((root / folder).rglob("*.py")):
            module = module_name(path, root)
            own = layer_of(module)
            tree = ast.parse(path.read_text(), filename=str(path))
            for line, target in imported_modules(tree, module, path.name == "__init__.py"):
                other = layer_of(target)
                if other is None or other == own or other in ALLOWED[own]:
                    continue
                problems.append(f"{path.relative_to(root)}:{line}: {own} imports {target} ({other})")
    return sorted(set(problems))


def unexplained_local_imports(root: Path) -> list[str]:
    """``"file:line: module"`` of every import inside a function that carries no ``# lazy:``
    comment (on its line or the line above) saying why it is not at module level."""
    problems = []
    for folder in SOURCES:
        for path in sorted((root / folder).rglob("*.py")):
            lines = path.read_text().splitlines()
            tree = ast.parse("\n".join(lines), filename=str(path))
            for fn in ast.walk(tree):
                if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                for node in ast.walk(fn):
                    if not isinstance(node, (ast.Import, ast.ImportFrom)):
                        continue
                    here = lines[node.lineno - 1] + " " + lines[max(0, node.lineno - 2)]
                    if "# lazy:" not in here:
                        name = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                        problems.append(f"{path.relative_to(root)}:{node.lineno}: {name}")
    return sorted(set(problems))
