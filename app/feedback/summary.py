"""What the corrections say: fastai's `most_confused`, live. Per class, how often people
confirmed the model's answer of it and how often they corrected it, and the (predicted,
corrected) pairs, most frequent first. A multi-label answer counts for each of its labels,
and its pair is its labels as a whole; a regression model's are counted, not classed."""

from collections import Counter
from typing import Any

from app.feedback.export import numbers
from app.feedback.store import Record

PAIRS = 20  # the most frequent pairs listed


def summarize(records: list[Record]) -> dict[str, Any]:
    confirmed: Counter[str] = Counter()
    corrected: Counter[str] = Counter()
    pairs: Counter[tuple[str, str]] = Counter()
    for record in records:
        if numbers(record):  # a regression's values: no class to count them under
            continue
        tally = confirmed if record.verdict == "confirmed" else corrected
        tally.update(record.predicted)
        if record.verdict == "corrected":
            pairs[" ".join(record.predicted), " ".join(record.label)] += 1
    classes = sorted(set(confirmed) | set(corrected), key=lambda c: (-corrected[c], c))
    verdicts = Counter(record.verdict for record in records)
    return {
        "total": len(records),
        "confirmed": verdicts["confirmed"],
        "corrected": verdicts["corrected"],
        "classes": [
            {"label": c, "confirmed": confirmed[c], "corrected": corrected[c]} for c in classes
        ],
        "confused": [
            {"predicted": predicted, "corrected": said, "count": count}
            for (predicted, said), count in sorted(pairs.items(), key=lambda p: (-p[1], p[0]))[
                :PAIRS
            ]
        ],
    }
