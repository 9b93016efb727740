"""The codebase's own rules, enforced with the tests: lint, types, and the import boundaries that
docs/ARCHITECTURE.md describes (no cycles; the stages import only the stages below them; the
render and the store never import torch or the compute)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "generator"

LAYERS = (
    ("generator.errors", "generator.demo", "generator.files"),
    ("generator.inputs",),
    ("generator.config",),
    ("generator.store",),
    ("generator.compute",),
    ("generator.explain",),
    ("generator.site",),
    ("generator.run",),
    ("generator.cli",),
)
"""The stages from the bottom up: a module may import its own layer and the layers below it
(generator.demo's training script reaches up to the inputs: it trains with the corpus reader and
saves in the model-folder format)."""
HEAVY = ("torch", "transformer_lens", "sae_lens", "transformers", "umap", "numba")
"""what the render and the store must never import (the render runs without a GPU stack)."""


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports anywhere: at the top, inside functions, under TYPE_CHECKING
    (a dependency all the same). `from generator.x import y` counts as generator.x.y when that
    is a module."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            # a relative import would hide a dependency from every rule below: there are none
            assert node.level == 0 and node.module, f"{path}:{node.lineno}: relative import"
            found.add(node.module)
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                if (ROOT / (name.replace(".", "/") + ".py")).exists() or \
                        (ROOT / name.replace(".", "/") / "__init__.py").exists():
                    found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    """generator's modules -> the generator modules they import (packages' __init__ included)."""
    modules = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
    return {name: {m for m in imports_of(path) if m in modules and m != name}
            for name, path in modules.items()}


def cycle_in(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (its modules in order, the first repeated at the end), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def layer_of(module: str) -> int:
    for n, layer in enumerate(LAYERS):
        if any(module == top or module.startswith(top + ".") for top in layer):
            return n
    if module == "generator":
        return 0
    raise AssertionError(f"{module} is in no layer of LAYERS: add it (and to docs/ARCHITECTURE.md)")


def test_the_import_walk_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The walk itself: top-level, lazy and TYPE_CHECKING imports all count."""
    source = tmp_path / "m.py"
    source.write_text("import os\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                      "    import torch\ndef f():\n    from generator.site import writer\n")
    assert {"os", "typing", "torch", "generator.site", "generator.site.writer"} <= imports_of(source)
    assert cycle_in({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle_in({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles() -> None:
    cycle = cycle_in(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_stages_import_only_the_stages_below() -> None:
    # the demo's training script may reach up to the inputs (the corpus reader, the model-folder
    # format), and no further
    reach = {"generator.demo.train": layer_of("generator.inputs"),
             "generator.demo.__main__": layer_of("generator.inputs")}
    wrong = [f"{module} imports {dep}" for module, deps in graph().items()
             for dep in sorted(deps) if layer_of(dep) > reach.get(module, layer_of(module))]
    assert not wrong, "\n".join(wrong)


def reachable(edges: dict[str, set[str]], start: set[str]) -> set[str]:
    """`start` and every module they import, directly or not."""
    seen, todo = set(start), list(start)
    while todo:
        for nxt in edges.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


@pytest.mark.parametrize("stage", ["site", "store"])
def test_render_and_store_import_neither_torch_nor_the_compute(stage: str) -> None:
    """Not directly, and not through any module they import (lazily or not)."""
    edges = graph()
    roots = {module_name(p) for p in (PACKAGE / stage).rglob("*.py")}
    wrong = []
    for module in sorted(reachable(edges, roots)):
        for dep in sorted(imports_of(ROOT / (module.replace(".", "/") + ".py"))
                          if (ROOT / (module.replace(".", "/") + ".py")).exists()
                          else imports_of(ROOT / module.replace(".", "/") / "__init__.py")):
            if dep.split(".")[0] in HEAVY or dep.startswith("generator.compute"):
                wrong.append(f"{module} (reached from generator.{stage}) imports {dep}")
    assert not wrong, "\n".join(wrong)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True)


def test_ruff_clean() -> None:
    result = _run("ruff", "check", "generator", "tests", "bench", "scripts")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_mypy_clean() -> None:
    result = _run("mypy", "generator")
    assert result.returncode == 0, result.stdout + result.stderr
