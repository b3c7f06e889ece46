"""The test cache (tests/cache.py): its key changes with everything that changes what is
built, a changed key is a miss that rebuilds, and a stale entry is never used."""

from pathlib import Path

import pytest

from tests import cache
from tests.cache import COMPILING, CORPUS, Cache, key
from tests.helpers import ROOT

pytestmark = pytest.mark.unit

# One file in each place whose change must change the key, as a tree of the repo's shape.
PLACES = [
    "compiler/main.py",
    "app/inference/model.py",
    "app/kinds/base.py",
    "app/settings.py",
    "app/errors.py",
    "app/error_codes.py",
    "static/examples/cat.jpg",
    "tests/corpus/classifiers.py",
    "requirements.txt",
    "requirements-compile.txt",
    "requirements-fastai27.txt",
    "requirements-dev.txt",
]
INPUTS = (*COMPILING, *CORPUS)


def tree(root: Path) -> Path:
    for place in PLACES:
        (root / place).parent.mkdir(parents=True, exist_ok=True)
        (root / place).write_text(f"{place}\n")
    return root


def test_the_inputs_name_what_the_issue_names() -> None:
    """On the real tree: compiling's and the corpus's inputs cover these places."""
    files = {str(path.relative_to(ROOT)) for path in cache._files(ROOT, INPUTS)}
    for folder in ("compiler/", "app/inference/", "app/kinds/", "tests/corpus/"):
        assert any(name.startswith(folder) for name in files), folder
    assert {"requirements.txt", "requirements-compile.txt", "requirements-fastai27.txt"} <= files
    assert not any("__pycache__" in name for name in files)


@pytest.mark.parametrize("place", PLACES)
def test_the_key_changes_when_any_input_changes(tmp_path: Path, place: str) -> None:
    root = tree(tmp_path)
    before = key(INPUTS, root=root)
    assert key(INPUTS, root=root) == before  # the same inputs, the same key
    (root / place).write_text("changed\n")
    assert key(INPUTS, root=root) != before


def test_a_new_file_changes_the_key_and_bytecode_does_not(tmp_path: Path) -> None:
    root = tree(tmp_path)
    before = key(INPUTS, root=root)
    (root / "compiler" / "__pycache__").mkdir()
    (root / "compiler" / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"\0")
    assert key(INPUTS, root=root) == before
    (root / "compiler" / "quantize.py").write_text("")
    assert key(INPUTS, root=root) != before


@pytest.mark.parametrize("package", ["fastai", "fastai 2.7", "torch", "python", "cpu"])
def test_the_key_changes_with_the_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, package: str
) -> None:
    root = tree(tmp_path)
    before = key(INPUTS, root=root)
    versions = cache.versions()
    assert package in versions
    monkeypatch.setattr(cache, "versions", lambda: {**versions, package: "0.0-other"})
    assert key(INPUTS, root=root) != before


def test_the_facts_are_part_of_the_key(tmp_path: Path) -> None:
    root = tree(tmp_path)
    assert key(INPUTS, {"line": "2.7"}, root) != key(INPUTS, {"line": "2.8"}, root)


def test_a_miss_rebuilds_and_a_stale_entry_is_never_used(tmp_path: Path) -> None:
    store, built = Cache(tmp_path / "cache"), []

    def build(folder: Path) -> None:
        built.append(folder.name)
        (folder / "made").write_text(str(len(built)))

    first = store.make("thing", "key1", build)
    assert store.make("thing", "key1", build) == first and len(built) == 1  # a hit
    second = store.make("thing", "key2", build)  # what it is made from changed
    assert len(built) == 2 and (second / "made").read_text() == "2"
    assert not first.exists() and store.lookup("thing", "key1") is None  # gone, not reused
    assert store.make("thing-other", "key1", build).exists() and second.exists()


def test_a_failed_build_leaves_no_entry(tmp_path: Path) -> None:
    store = Cache(tmp_path / "cache")

    def fail(folder: Path) -> None:
        (folder / "half").write_text("half of it")
        raise RuntimeError("the build failed")

    with pytest.raises(RuntimeError):
        store.make("thing", "key1", fail)
    assert store.lookup("thing", "key1") is None
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")] == []
