"""The feedback store (app/feedback/store.py) and what is made from it: holding answered
photos within their time and bytes, keeping what people said once, nothing half-written
past FEEDBACK_MAX_MB, the export's labels.csv for each kind, the summary, the admin
token's comparison, and what each kind takes as a correction. In this process, on a folder
of the test's own."""

import csv
import hashlib
import io
import os
import zipfile
from pathlib import Path

import pytest

from app.errors import ApiError
from app.feedback import admin
from app.feedback.export import COLUMNS, is_valid, write_export
from app.feedback.store import Answered, FeedbackStore
from app.feedback.summary import summarize
from app.kinds import KINDS, kind_of

pytestmark = pytest.mark.unit

CAT = Answered("single-label", ["tabby"], 0.61, "a" * 64)


class Clock:
    """The store's clock, moved by the test: expiry without waiting."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def photo(index: int, size: int = 1000) -> bytes:
    """Distinct bytes that name themselves a JPEG (the store never decodes them)."""
    return b"\xff\xd8\xff" + index.to_bytes(4, "big") + b"\0" * (size - 7)


def store(folder: Path, clock: Clock | None = None, **limits: int) -> FeedbackStore:
    made = FeedbackStore(
        folder,
        hold_s=limits.get("hold_s", 60),
        hold_bytes=limits.get("hold_bytes", 10_000),
        max_bytes=limits.get("max_bytes", 10_000_000),
        clock=clock or Clock(),
    )
    return made.open()


def error_code(call: object, *args: object) -> str:
    with pytest.raises(ApiError) as caught:
        call(*args)  # type: ignore[operator]
    return caught.value.code


def files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def test_a_held_answer_is_kept_once_and_only_while_held(tmp_path: Path) -> None:
    clock = Clock()
    feedback = store(tmp_path, clock)
    first, second, third = (feedback.hold(photo(i), CAT) for i in range(3))
    assert first and second and third and len({first, second, third}) == 3
    assert len(first) == 32 and int(first, 16) >= 0  # 128 bits, in hex

    corrected = feedback.record(first, ["tiger cat"])
    assert (corrected.verdict, corrected.label, corrected.predicted) == (
        "corrected",
        ["tiger cat"],
        ["tabby"],
    )
    assert feedback.record(second, None).verdict == "confirmed"
    assert feedback.record(third, ["tabby"]).verdict == "confirmed"  # said what it said
    assert error_code(feedback.record, first, ["tabby"]) == "already_answered"  # a replay
    assert error_code(feedback.record, "0" * 32, None) == "unknown_prediction"
    other_model = feedback.hold(photo(4), CAT)  # answered by the model served before
    assert error_code(feedback.record, other_model, None, "b" * 64) == "unknown_prediction"

    late = feedback.hold(photo(3), CAT)
    clock.now += 61
    assert error_code(feedback.record, late, None) == "unknown_prediction"
    feedback.prune()
    assert not list(feedback.held.iterdir())  # the expired photo is gone from disk
    kept = feedback.records()
    assert [r.prediction_id for r in kept] == [first, second, third]
    names = {f"images/{hashlib.sha256(photo(i)).hexdigest()}.jpg" for i in range(3)}
    assert {r.fname for r in kept} == names and files(tmp_path) >= names


def test_holding_past_its_bytes_drops_the_oldest_first(tmp_path: Path) -> None:
    clock = Clock()
    feedback = store(tmp_path, clock, hold_bytes=3500)
    held = []
    for index in range(5):
        clock.now += 1
        held.append(feedback.hold(photo(index), CAT))
    assert feedback.hold(photo(9, size=4000), CAT) is None  # alone over: not held at all
    answers = [error_code(feedback.record, p, None) for p in held[:2]]
    assert answers == ["unknown_prediction"] * 2
    assert [feedback.record(p, None).verdict for p in held[2:]] == ["confirmed"] * 3
    assert len(list(feedback.held.iterdir())) == 0  # kept ones moved; dropped ones deleted


def test_the_same_photo_held_twice_keeps_its_file_for_the_other(tmp_path: Path) -> None:
    clock = Clock()
    feedback = store(tmp_path, clock, hold_s=10)
    early = feedback.hold(photo(1), CAT)
    clock.now += 8
    later = feedback.hold(photo(1), CAT)
    clock.now += 5  # the first has expired and is dropped; the second still names the file
    feedback.prune()
    assert error_code(feedback.record, early, None) == "unknown_prediction"
    assert feedback.record(later, ["tiger cat"]).verdict == "corrected"


def test_past_its_cap_the_store_refuses_and_writes_nothing(tmp_path: Path) -> None:
    feedback = store(tmp_path, max_bytes=150_000, hold_bytes=1_000_000)
    index_bytes = feedback.index.stat().st_size
    first = feedback.hold(photo(1, 40_000), CAT)
    second = feedback.hold(photo(2, 150_000 - index_bytes), CAT)
    assert feedback.record(first, None).verdict == "confirmed"
    before = files(tmp_path / "images")
    assert error_code(feedback.record, second, ["tiger cat"]) == "feedback_store_full"
    assert files(tmp_path / "images") == before and len(feedback.records()) == 1
    assert not [p for p in tmp_path.rglob("*.part")]  # no temporary left either
    assert feedback.record(feedback.hold(photo(1, 40_000), CAT), None)  # a kept photo fits


def test_opening_clears_what_a_killed_process_left(tmp_path: Path) -> None:
    """Temporary files, and held photos no hold names (a process killed between writing a
    photo and its row), once they are an hour old; a fresh one may be another process's."""

    feedback = store(tmp_path)
    held = feedback.hold(photo(1), CAT)
    left = [
        feedback.images / "a1b2.part",
        feedback.held / "c3d4.part",
        feedback.held / f"{'e' * 64}.jpg",
        feedback.tmp / "f5.zip",
    ]
    fresh = feedback.images / "fresh.part"
    for path in [*left, fresh]:
        path.write_bytes(b"partial")
    for path in left:
        os.utime(path, (1, 1))
    named = next(feedback.held.glob("*.jpg"))
    os.utime(named, (1, 1))  # old, but a hold names it: it stays
    store(tmp_path)
    assert not [path for path in left if path.exists()] and fresh.exists() and named.exists()
    assert feedback.record(held, None).verdict == "confirmed"


def test_labels_csv_is_what_from_df_reads_for_each_kind(tmp_path: Path) -> None:
    """The seven columns; multi-label labels space-separated; a regression model's values
    in `label` and, for several, a column each (docs/models.md)."""
    feedback = store(tmp_path)
    kinds = [
        (Answered("single-label", ["tabby"], 0.61, "a" * 64), ["tiger cat"]),
        (Answered("multi-label", ["blue", "red"], None, "b" * 64), ["blue", "green"]),
        (Answered("regression", ["0.25", "0.5"], None, "c" * 64), ["0.3", "0.7"]),
    ]
    for index, (answered, label) in enumerate(kinds):
        feedback.record(feedback.hold(photo(index), answered), label)
    out = tmp_path / "out.zip"
    assert write_export(feedback, out) == 3
    with zipfile.ZipFile(out) as archive:
        rows = list(csv.DictReader(io.StringIO(archive.read("labels.csv").decode())))
        assert list(rows[0]) == [*COLUMNS, "value_0", "value_1"]
        for row in rows:
            assert archive.read(row["fname"]) == (tmp_path / row["fname"]).read_bytes()
    assert [row["label"] for row in rows] == ["tiger cat", "blue green", "0.3 0.7"]
    assert [row["predicted"] for row in rows] == ["tabby", "blue red", "0.25 0.5"]
    values = [(row["value_0"], row["value_1"]) for row in rows]
    assert values == [("", ""), ("", ""), ("0.3", "0.7")]
    assert rows[0]["probability"] == "0.61" and rows[1]["probability"] == ""
    assert rows[0]["created"].endswith("Z") and rows[2]["model_sha256"] == "c" * 64
    assert {row["is_valid"] for row in rows} <= {"True", "False"}


def test_multi_label_labels_with_spaces_get_a_delimiter_none_has(tmp_path: Path) -> None:
    """A space separates a multi-label record's labels, unless a label has one ("traffic
    light"): then the first of ; | and a tab that none has, which README.txt names."""
    feedback = store(tmp_path)
    answered = Answered("multi-label", ["traffic light", "car"], None, "b" * 64)
    feedback.record(feedback.hold(photo(0), answered), ["traffic light"])
    feedback.record(feedback.hold(photo(1), answered), [])
    out = tmp_path / "out.zip"
    write_export(feedback, out)
    with zipfile.ZipFile(out) as archive:
        rows = list(csv.DictReader(io.StringIO(archive.read("labels.csv").decode())))
        readme = archive.read("README.txt").decode()
    assert [row["label"] for row in rows] == ["traffic light", ""]
    assert rows[0]["predicted"] == "traffic light;car" and "label_delim=';'" in readme


def test_the_validation_split_is_a_stable_fifth_by_content() -> None:
    hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(5000)]
    share = sum(map(is_valid, hashes)) / len(hashes)
    assert 0.18 < share < 0.22
    assert [is_valid(h) for h in hashes[:50]] == [is_valid(h) for h in hashes[:50]]


def test_the_summary_counts_per_class_and_the_most_frequent_mix_ups(tmp_path: Path) -> None:
    feedback = store(tmp_path)
    said = [("tabby", None), ("tabby", "tiger cat"), ("tabby", "tiger cat"), ("lynx", "tabby")]
    for index, (predicted, label) in enumerate(said):
        answered = Answered("single-label", [predicted], 0.5, "a" * 64)
        feedback.record(feedback.hold(photo(index), answered), label and [label])
    values = Answered("regression", ["0.5"], None, "a" * 64)  # counted, under no class
    feedback.record(feedback.hold(photo(9), values), ["0.7"])
    summary = summarize(feedback.records())
    assert (summary["total"], summary["confirmed"], summary["corrected"]) == (5, 1, 4)
    assert summary["classes"] == [
        {"label": "tabby", "confirmed": 1, "corrected": 2},
        {"label": "lynx", "confirmed": 0, "corrected": 1},
    ]
    assert summary["confused"][0] == {"predicted": "tabby", "corrected": "tiger cat", "count": 2}


def test_the_token_is_compared_as_fixed_length_digests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the token given (short, long, a prefix of the right one), the comparison
    is of two 32-byte digests, in hmac.compare_digest: its time says nothing of the token
    (a timing measurement would be flaky; this is what makes one unnecessary)."""
    compared: list[tuple[int, int]] = []
    real = admin.hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        compared.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(admin.hmac, "compare_digest", recording)
    token = "s3cret-token-of-the-admin"
    tries = ["", "s", token[:10], token[:-1], token + "x", "x" * 10_000, token]
    assert [admin.token_matches(t, token) for t in tries] == [False] * 6 + [True]
    assert compared == [(32, 32)] * len(tries)
    assert admin.bearer(f"Bearer {token}") == token and admin.bearer(f"bearer  {token} ") == token
    assert admin.bearer(token) is None and admin.bearer("Basic abc") is None
    assert not admin.token_matches(None, token) and not admin.token_matches(token, "")


def test_each_kind_checks_its_own_correction() -> None:
    """What a kind keeps of a correction, and what it refuses (`invalid_label`)."""
    single = kind_of({"kind": "single-label", "labels": ["cat", "dog"]})
    multi = kind_of({"kind": "multi-label", "labels": ["blue", "red"], "threshold": 0.5})
    values = kind_of({"kind": "regression", "output": {"shape": [1, 2]}, "names": None})
    assert single.correction("dog", False) == ["dog"]
    assert single.correction(" fox cub ", True) == ["fox cub"]  # a new one, trimmed
    assert multi.correction(["red", "blue", "red"], False) == ["blue", "red"]
    assert multi.correction([], False) == []  # none of them: an answer too
    assert multi.correction(["green"], True) == ["green"]
    assert values.correction([1, "0.5"], False) == ["1.0", "0.5"]  # a form's text too
    assert values.predicted({"values": [0.25, 1]}) == (["0.25", "1.0"], None)
    for kind, value, new in [
        (single, "fox", False),
        (single, "a/b", True),
        (single, None, True),
        (multi, ["snow leopard"], True),  # a space: the export's separator
        (multi, "red", False),
        (multi, ["red"] * 30, False),
        (values, [1], False),
        (values, [1, float("nan")], False),
        (values, ["inf", 1], False),
        (values, [True, 1], False),
        (values, [10**400, 1], False),
    ]:
        assert error_code(kind.correction, value, new) == "invalid_label", (kind.name, value)
    assert KINDS["keypoints"].corrected_by is None and KINDS["segmentation"].corrected_by is None
