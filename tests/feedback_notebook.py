"""docs/models.md's "Improve your model with what people tell you", run as a notebook would:
an export of the feedback (a zip from GET /api/feedback/export) read by
`ImageDataLoaders.from_df` as it is, the served learner fine-tuned on it for an epoch, and
exported again. tests/test_feedback_loop.py runs it in a process of its own (it loads
fastai and torch, which the test process need not):

    python -m tests.feedback_notebook EXPORT.zip LEARNER.pkl OUT.pkl

With `--kinds FOLDER`, it reads the exports extracted in FOLDER/single-label and
FOLDER/regression the way the docs say, and prints what fastai made of each.
"""

import argparse
import json
import zipfile
from pathlib import Path

from tests.helpers import fastai_vision


def retrain(export: Path, learner: Path, out: Path) -> None:
    fastai_vision()  # torchvision made importable beside CPU torch: the tests' own step
    import pandas as pd
    from fastai.vision.all import ImageDataLoaders, Resize, load_learner

    # The notebook's lines (docs/models.md):
    path = export.with_suffix("")
    zipfile.ZipFile(export).extractall(path)
    df = pd.read_csv(path / "labels.csv", dtype={"label": str}, keep_default_na=False)
    dls = ImageDataLoaders.from_df(
        df, path, fn_col="fname", label_col="label", valid_col="is_valid",
        label_delim=" ", item_tfms=Resize(48), bs=16, num_workers=0,
    )  # fmt: skip
    learn = load_learner(learner)
    assert list(dls.vocab) == list(learn.dls.vocab), (dls.vocab, learn.dls.vocab)
    learn.dls = dls
    learn.fit_one_cycle(1, 1e-3)
    learn.export(out.resolve())
    print(json.dumps({"train": len(dls.train_ds), "valid": len(dls.valid_ds)}))


def read_kinds(folder: Path) -> None:
    """The single-label and regression shapes of labels.csv, read as the docs say."""
    fastai_vision()
    import pandas as pd
    from fastai.vision.all import ImageDataLoaders, RegressionBlock, Resize

    single = pd.read_csv(
        folder / "single-label" / "labels.csv", dtype={"label": str}, keep_default_na=False
    )
    classes = ImageDataLoaders.from_df(
        single, folder / "single-label", fn_col="fname", label_col="label", valid_col="is_valid",
        item_tfms=Resize(32), bs=4, num_workers=0,
    )  # fmt: skip
    regression = pd.read_csv(folder / "regression" / "labels.csv")
    values = [column for column in regression if column.startswith("value_")]
    numbers = ImageDataLoaders.from_df(
        regression, folder / "regression", fn_col="fname", label_col=values, valid_col="is_valid",
        y_block=RegressionBlock(n_out=len(values)), item_tfms=Resize(32), bs=4, num_workers=0,
    )  # fmt: skip
    _, targets = numbers.one_batch()
    seen = {
        "vocab": list(classes.vocab),
        "class_batch": list(classes.one_batch()[1].shape),
        "value_batch": list(targets.shape),
        "values": sorted(round(float(v), 3) for v in targets.flatten()),
    }
    print(json.dumps(seen))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kinds", type=Path)
    parser.add_argument("paths", nargs="*", type=Path)
    args = parser.parse_args()
    if args.kinds:
        read_kinds(args.kinds)
    else:
        retrain(*args.paths)


if __name__ == "__main__":
    main()
