"""The feedback as a dataset fastai reads as it is: a zip of `images/<sha256>.<ext>` and
`labels.csv`, for `ImageDataLoaders.from_df(df, path, fn_col="fname", label_col="label",
valid_col="is_valid")` (docs/models.md, "Improve your model with what people tell you").

`label` is what the photo is, as people said: a single-label model's class; a
multi-label model's labels, space-separated (`label_delim=" "`; where a label has a space
in it, the first of DELIMITERS that none has, and the zip's README.txt says which); a
regression model's
values, space-separated. fastai's RegressionBlock reads one number from a column, not
several from one (it fails on the text "0.3 0.7"), so for a model of several values the
rows carry one more column a value, `value_0`, `value_1`...: `label_col` names them.
`is_valid` is a stable 20%, by the photo's content: the same photo always falls on the
same side, so no photo is both trained on and validated with.
"""

import csv
import io
import os
import zipfile
from datetime import UTC, datetime
from pathlib import Path

from app.feedback.files import TEMPORARY
from app.feedback.store import FeedbackStore, Record
from app.kinds import KINDS

COLUMNS = ["fname", "label", "is_valid", "predicted", "probability", "model_sha256", "created"]
DELIMITERS = (" ", ";", "|", "\t")
README = """labels.csv: what people said of the photos in images/, for fastai:

    df = pd.read_csv("labels.csv", dtype={{"label": str}}, keep_default_na=False)
    dls = ImageDataLoaders.from_df(df, path, fn_col="fname", label_col="label",
                                   valid_col="is_valid"{delimiter})

(docs/models.md, "Improve your model with what people tell you").
"""


def is_valid(sha256: str) -> bool:
    """In the validation set: one photo in five, chosen by its content."""
    return int(sha256[:8], 16) % 5 == 0


def numbers(record: Record) -> bool:
    """Whether the record's label is numbers (a regression's values), not classes."""
    kind = KINDS.get(record.kind)
    return kind is not None and kind.corrected_by_numbers


def several(record: Record) -> bool:
    """Whether the record's label is several labels (a multi-label model's)."""
    kind = KINDS.get(record.kind)
    return kind is not None and kind.corrected_by == "labels"


def delimiter(records: list[Record]) -> str:
    """What separates a multi-label record's labels: a space, unless a label has one."""
    labels = {label for r in records if several(r) for label in (*r.label, *r.predicted)}
    return next(d for d in DELIMITERS if not any(d in label for label in labels))


def labels_csv(records: list[Record], between: str = " ") -> str:
    """labels.csv: a row a record, in the order they were kept; `between` a record's labels."""
    values = max((len(r.label) for r in records if numbers(r)), default=0)
    values = values if values > 1 else 0
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS + [f"value_{i}" for i in range(values)])
    for record in records:
        created = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="seconds")
        row = [
            record.fname,
            (between if several(record) else " ").join(record.label),
            is_valid(record.sha256),
            (between if several(record) else " ").join(record.predicted),
            "" if record.probability is None else record.probability,
            record.model_sha256,
            created.replace("+00:00", "Z"),
        ]
        extra = record.label if numbers(record) else []
        writer.writerow(row + [*extra, *[""] * (values - len(extra))][:values])
    return out.getvalue()


def write_export(store: FeedbackStore, out: Path) -> int:
    """The store's dataset, written to `out` whole (through a temporary file beside it);
    how many records it holds."""
    records = store.records()
    temporary = out.with_name(out.name + TEMPORARY)
    try:
        with zipfile.ZipFile(temporary, "w") as archive:
            between = delimiter(records)
            archive.writestr("labels.csv", labels_csv(records, between), zipfile.ZIP_DEFLATED)
            option = f", label_delim={between!r}" if any(map(several, records)) else ""
            archive.writestr("README.txt", README.format(delimiter=option), zipfile.ZIP_DEFLATED)
            for fname in dict.fromkeys(record.fname for record in records):
                # Photos are compressed already: stored as they are, as fast as a copy.
                archive.write(store.folder / fname, fname, zipfile.ZIP_STORED)
        os.replace(temporary, out)
    finally:
        temporary.unlink(missing_ok=True)
    return len(records)
