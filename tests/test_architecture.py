"""The import structure the README's layout table states: layers import only the layers above them, no two
files import each other (directly or around a loop), and the light entry points load no torch."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"sim2real_edit": 1, "envs": 2, "policies": 3, "evaluation": 4, "miniature": 5}  # scripts/: any layer


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(path): path for package in LAYERS for path in (ROOT / package).rglob("*.py")}


def imported_modules(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `path` imports anywhere in the file (a function's lazy import counts too), each
    resolved to its file: `from pkg import sub` names the submodule when `sub` is one."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in modules else module
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import a.b.c` of a name inside a module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imported_modules(path, modules) for name, path in modules.items()}


def test_layers_import_only_the_layers_above():
    upward = [
        f"{importer} imports {imported}"
        for importer, targets in import_graph().items()
        for imported in targets
        if LAYERS[imported.split(".")[0]] > LAYERS[importer.split(".")[0]]
    ]
    assert not upward, "imports against the layering of the README's layout table:\n" + "\n".join(sorted(upward))


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the groups of modules that reach each other (groups of one left out)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
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
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_no_import_cycles_between_files():
    assert strongly_connected(import_graph()) == []


def test_the_cycle_finder_finds_a_loop():
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def loaded_after(code: str) -> set[str]:
    """The modules loaded in a fresh interpreter after running `code`."""
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(json.loads(result.stdout.splitlines()[-1]))


HEAVY = {"torch", "diffusers", "transformers", "dreamsim", "open_clip", "timm", "tensorflow", "scipy"}


def test_importing_envs_loads_no_model_library():  # sim2real_edit.feedback: tests/test_light_imports_feedback.py
    assert loaded_after("import envs") & HEAVY == set()


def test_importing_the_miniature_map_loads_no_model_library():
    assert loaded_after("import miniature") & HEAVY == set()


def test_importing_envs_registers_the_env_and_makes_it_on_first_use():
    loaded = loaded_after(
        "import envs, gymnasium as gym\n"
        "assert 'EditedDrawer-v0' in gym.registry\n"
        "assert envs.EditOptions(preset='tiny').backend == 'standin'"
    )
    assert "envs.edited" in loaded  # the name pulled in its module, and only then
    assert "envs.edited" not in loaded_after("import envs")
