"""docs/architecture.md's picture of the layout is what `ls -R app compiler` shows."""

import re

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.unit

ARCHITECTURE = ROOT / "docs" / "architecture.md"


def drawn(top: str) -> set[str]:
    """The files and folders the Layout section draws under `top`/."""
    block = ARCHITECTURE.read_text().split("## Layout", 1)[1].split("```")[1]
    paths, parents = set(), []
    for line in block.splitlines():
        match = re.match(r"^( *)(\S+)", line)
        if not match or not re.fullmatch(r"[\w.]+/?", match.group(2)):
            continue
        depth = len(match.group(1)) // 2
        parents = [*parents[:depth], match.group(2).rstrip("/")]
        if parents[0] == top and depth:
            paths.add("/".join(parents[1:]) + ("/" if match.group(2).endswith("/") else ""))
    return paths


@pytest.mark.parametrize("top", ["app", "compiler"])
def test_the_layout_is_drawn_as_it_is(top: str) -> None:
    folder = ROOT / top
    actual = {
        str(p.relative_to(folder)) + ("/" if p.is_dir() else "")
        for p in folder.rglob("*")
        if (p.is_dir() and p.name != "__pycache__")
        or (p.suffix == ".py" and p.name != "__init__.py")
    }
    assert drawn(top) == actual


def test_every_import_of_app_names_what_is_there() -> None:
    """bench/, scripts/, compiler/ and the tests import app's modules by name; each of
    those modules exists and defines what is imported (bench/ isn't run by the suite)."""
    import ast
    import importlib

    for folder in ("bench", "scripts", "compiler", "tests"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("app"):
                    module = importlib.import_module(node.module)
                    for alias in node.names:
                        assert hasattr(module, alias.name), f"{path}: {node.module}.{alias.name}"
