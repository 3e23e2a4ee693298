"""The map in docs/architecture.md is the code's: every import goes down its layers,
every top-level part of ``hangar/`` is on it, only the composition root names the
SQL store, and no module outgrows a reader."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "hangar"
MAP = ROOT / "docs" / "architecture.md"
NAME = re.compile(r"^[\w]+(/|\.py)$")
STORE_FACES = {"hangar.store.base", "hangar.store.records", "hangar.store.secrets"}
"""What of ``store/`` the layers above may import: the protocols, their records, and
sealed Secrets (``postgres`` for the DSN of a pgvector index beside it)."""
COMPOSITION_ROOT = "runtime/host.py"


def layers() -> list[set[str]]:
    """The Layers block: a line per layer, top first; each a set of names (``cli``,
    ``errors``)."""
    text = MAP.read_text()
    block = text[text.index("## Layers") :]
    block = block[block.index("```") + 3 :]
    block = block[block.index("\n") + 1 : block.index("```")]
    found = []
    for line in block.splitlines():
        names = []
        for token in re.split(r"\s{2,}", line.strip()):
            if not NAME.match(token):
                break
            names.append(token.removesuffix("/").removesuffix(".py"))
        if names:
            found.append(set(names))
    return found


def units() -> set[str]:
    return {
        path.name.removesuffix(".py")
        for path in PACKAGE.iterdir()
        if (path.is_dir() and any(path.glob("*.py"))) or path.suffix == ".py"
    }


def imports() -> list[tuple[str, str, str]]:
    """(importing file relative to hangar/, imported module, imported unit) for every
    import of hangar in hangar/, those inside functions and TYPE_CHECKING too."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            modules: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module == "hangar":
                    modules = [f"hangar.{alias.name}" for alias in node.names]
                else:
                    modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            for module in modules:
                parts = module.split(".")
                if parts[0] == "hangar":
                    unit = parts[1] if len(parts) > 1 else "__init__"
                    found.append((relative, module, unit))
    return found


def unit_of(relative: str) -> str:
    return relative.split("/")[0].removesuffix(".py")


def test_every_top_level_package_and_module_is_on_the_map() -> None:
    mapped = set().union(*layers())
    assert units() - mapped == set(), "name them in docs/architecture.md's Layers"
    assert mapped - units() == set(), "the map names parts that are gone"


def test_every_import_goes_down_the_layers() -> None:
    level = {name: i for i, layer in enumerate(layers()) for name in layer}
    upward = [
        f"{relative} imports {module}"
        for relative, module, unit in imports()
        if unit in level and level[unit] < level[unit_of(relative)]
    ]
    assert upward == []


def test_only_the_composition_root_names_the_sql_store() -> None:
    concrete = [
        f"{relative} imports {module}"
        for relative, module, unit in imports()
        if unit == "store"
        and unit_of(relative) != "store"
        and relative != COMPOSITION_ROOT
        and module not in STORE_FACES
        and not (relative == "memory/postgres_index.py" and module == "hangar.store.postgres")
    ]
    assert concrete == []


def test_the_map_reads_its_own_layers() -> None:
    """The checks above are only as good as the parse: the map's top and bottom."""
    found = layers()
    assert found[0] == {"cli"}
    assert {"errors", "ids", "usage"} <= found[-1]


MAX_LINES = 600
LONGER: dict[str, str] = {}
"""Modules allowed past ``MAX_LINES``, each with its reason."""


def test_no_module_is_longer_than_a_reader_holds_at_once() -> None:
    long = {
        str(path.relative_to(PACKAGE)): lines
        for path in PACKAGE.rglob("*.py")
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert {name: lines for name, lines in long.items() if name not in LONGER} == {}
    assert set(LONGER) <= set(long), "an exception no longer needed: drop it from LONGER"


def test_the_gateway_uses_services_and_narrow_faces_not_the_whole_store() -> None:
    """Routes go through the run, session and memory services, or the runtime's one
    face per concern (``rt.resources``, ``rt.keys``, ...); only the process's start
    (``server.py``: migrate, the admin key) holds the whole store."""
    whole = re.compile(r"\b(rt|runtime)\.store\b")
    reaching = [
        f"{path.relative_to(PACKAGE)}:{number}"
        for path in (PACKAGE / "gateway").rglob("*.py")
        if path.name != "server.py"
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if whole.search(line)
    ]
    assert reaching == []
