"""The package's floors: no module imports one above it, nor the package face.

The floors, from the bottom (the README's layout section draws the same picture):

0. ``components/``, ``config``, ``frames``, ``scene``, ``request``, ``errors``, ``utils``, ``egl_device``,
   ``_version``: the vocabulary.
1. ``renderer`` (the contract and the response layout), ``engine/``.
2. ``local``, ``dataset``, ``contact_sheet``, ``pool/``: renderers and what reads their output.
3. ``wrappers/``: Gymnasium and stable-baselines3 wrappers around any env, and the vector-env
   factories ``make_vec`` / ``make_sb3_vec``.
4. ``envs/``: orrb's own envs (they use ``wrappers/``).
5. ``cli``: the command line.

A module may import from its own floor and the floors below. ``orrb/__init__.py`` (the
package face) may import anything and nothing imports it: modules import the module that
defines a name. The pool's client never imports its server.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "orrb"

FLOORS = {
    "orrb.components": 0, "orrb.config": 0, "orrb.frames": 0, "orrb.scene": 0, "orrb.request": 0, "orrb.errors": 0,
    "orrb.utils": 0, "orrb.egl_device": 0, "orrb._version": 0, "orrb.extras": 0,
    "orrb.renderer": 1, "orrb.engine": 1,
    "orrb.local": 2, "orrb.dataset": 2, "orrb.contact_sheet": 2, "orrb.pool": 2,
    "orrb.wrappers": 3,
    "orrb.envs": 4,
    "orrb.cli": 5, "orrb.__main__": 5, "orrb.tune": 5, "orrb.ray": 5,
}
FORBIDDEN = {("orrb.pool.client", "orrb.pool.server")}


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def floor_of(module: str) -> int | None:
    while module:
        if module in FLOORS:
            return FLOORS[module]
        module = module.rpartition(".")[0]
    return None


def submodules() -> set[str]:
    return {module_name(p) for p in PACKAGE.rglob("*.py")}


def imports_of(path: pathlib.Path, known: set[str]) -> list[tuple[int, str]]:
    """``(line, module)`` of every orrb module ``path`` imports, also inside functions."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "orrb"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] != "orrb":
                continue
            for alias in node.names:  # `from orrb import utils` imports the submodule orrb.utils
                full = f"{base}.{alias.name}"
                found.append((node.lineno, full if full in known else base))
    return found


def violations() -> list[str]:
    known = submodules()
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        if name == "orrb":
            continue
        own = floor_of(name)
        if own is None:
            problems.append(f"{name}: not on any floor (add it to FLOORS and to the README's layout)")
            continue
        for line, target in imports_of(path, known):
            if target == "orrb":
                problems.append(f"{name}:{line} imports the package face 'orrb'; import the defining module")
            elif (floor := floor_of(target)) is not None and floor > own:
                problems.append(f"{name}:{line} (floor {own}) imports {target} (floor {floor})")
            elif any(name.startswith(a) and target.startswith(b) for a, b in FORBIDDEN):
                problems.append(f"{name}:{line} imports {target}, which it must not")
    return problems


def test_no_module_imports_a_floor_above_it_or_the_package_face():
    problems = violations()
    assert not problems, "layering broken:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("source, expected", [
    ("import orrb", ["orrb"]),
    ("from orrb import utils", ["orrb.utils"]),
    ("from orrb import LocalRenderer", ["orrb"]),
    ("def f():\n    from orrb.envs import make_vec", ["orrb.envs"]),
])
def test_the_import_scanner_sees_face_submodule_and_lazy_imports(tmp_path, source, expected):
    path = PACKAGE / "wrappers" / "_probe_for_layering_test.py"
    try:
        path.write_text(source)
        got = [m for _, m in imports_of(path, submodules())]
    finally:
        path.unlink()
    assert got == expected
