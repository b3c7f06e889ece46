"""The corpus's learners by name, with what docs/models.md's table says of each, read from
the decorators in classifiers.py and others.py without importing them (they import
fastai, and collecting the tests, the unit tier's included, must not)."""

import ast
from dataclasses import dataclass
from pathlib import Path

from tests.corpus import WINDOWS

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Description:
    """One learner, as the table describes it."""

    source: str
    factory: str
    items: str
    batch: str
    architecture: str


def registered(module: str, decorator: str) -> dict[str, Description]:
    """The functions of tests/corpus/<module>.py decorated with `decorator(...)`, in order."""
    found = {}
    for node in ast.parse((HERE / f"{module}.py").read_text()).body:
        for call in getattr(node, "decorator_list", []):
            if isinstance(call, ast.Call) and getattr(call.func, "id", None) == decorator:
                found[node.name] = Description(*(ast.literal_eval(arg) for arg in call.args))
    return found


SHAPES = registered("classifiers", "shape")  # the classifiers: every one compiles in both lines
OTHERS = registered("others", "other")
NAMES = [*SHAPES, WINDOWS, *OTHERS]  # every export the corpus makes
MADE_BY = {WINDOWS: "ch1_is_cat"}  # exports that another learner's build makes


def table(lines: tuple[str, ...]) -> str:
    """docs/models.md's table of what compiles: one row a shape, a column a fastai line
    (every mark is a test of tests/test_corpus.py)."""
    head = ["from", "built with", "item_tfms", "batch_tfms", "architecture"]
    rows = [
        "| " + " | ".join([*head, *(f"fastai {line}" for line in lines)]) + " |",
        "|" + "---|" * (len(head) + len(lines)),
    ]
    for recipe in SHAPES.values():
        code = [f"`{tfms}`" if tfms else "none" for tfms in (recipe.items, recipe.batch)]
        cells = [recipe.source, recipe.factory, *code, recipe.architecture]
        rows.append("| " + " | ".join([*cells, *("✅" for _ in lines)]) + " |")
    return "\n".join(rows) + "\n"
