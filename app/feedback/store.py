"""The feedback store: FEEDBACK_DIR on local disk, safe to share between server processes.

- `held/<sha256>.<ext>`: photos answered in the last FEEDBACK_HOLD_MINUTES (at most
  FEEDBACK_HOLD_MB of them, the oldest dropped first), so a correction can name one by
  its `prediction_id` without sending it again, whichever process it reaches.
- `images/<sha256>.<ext>`: the photos someone confirmed or corrected, kept (FEEDBACK_MAX_MB).
- `index.db`: SQLite in WAL mode (stdlib sqlite3): what each held and kept photo was
  answered and told. Every write is one `BEGIN IMMEDIATE` transaction, so processes
  take turns (`busy_timeout`), and a file is renamed into place inside the transaction
  that records it; a feedback's photo is on disk (synced) before its row commits, and
  the commit is synced (`synchronous=FULL`) before the client hears it was recorded.
- `tmp/`: exports being written.

Every name on disk is a content hash or our own; nothing a request says reaches a path.
Its methods block (disk, locks): the server calls them in a thread, off the event loop.
"""

import asyncio
import contextlib
import errno
import json
import logging
import os
import secrets
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.errors import ApiError
from app.feedback.files import TEMPORARY, content_name, link_into, write_temporary
from app.feedback.index import add, connection, create, keep_open, transaction, value
from app.settings import Settings

logger = logging.getLogger("app")
ROW_BYTES = 512  # what a feedback row adds to the index, about, for FEEDBACK_MAX_MB
STALE_S = 3600  # a temporary file this old was left by a process that died writing it
FULL = (errno.ENOSPC, errno.EDQUOT)


@dataclass(frozen=True)
class Answered:
    """What a held photo's answer said, as kept with it."""

    kind: str  # the model's kind
    predicted: list[str]  # its labels, or values, as text (Kind.predicted)
    probability: float | None
    model_sha256: str


@dataclass(frozen=True)
class Record:
    """One kept confirmation or correction."""

    prediction_id: str
    sha256: str
    ext: str
    kind: str
    verdict: str  # "confirmed" or "corrected"
    label: list[str]  # what the photo is, as people said (a confirmation: `predicted`)
    predicted: list[str]
    probability: float | None
    model_sha256: str
    created: float

    @property
    def fname(self) -> str:
        """Its photo's path in the store and in an export."""
        return f"images/{self.sha256}.{self.ext}"


class FeedbackStore:
    def __init__(
        self,
        folder: Path,
        hold_s: float,
        hold_bytes: int,
        max_bytes: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.folder = folder
        self.hold_s = hold_s
        self.hold_bytes = hold_bytes
        self.max_bytes = max_bytes
        self.clock = clock
        self.index = folder / "index.db"
        self.held, self.images, self.tmp = (folder / name for name in ("held", "images", "tmp"))
        self._kept_open: sqlite3.Connection | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> "FeedbackStore":
        assert settings.feedback_dir is not None
        megabyte = 1024 * 1024
        return cls(
            settings.feedback_dir,
            settings.feedback_hold_minutes * 60,
            int(settings.feedback_hold_mb * megabyte),
            int(settings.feedback_max_mb * megabyte),
        )

    def open(self) -> "FeedbackStore":
        """Make the folders and the index (any process may, at once), and clear what a
        process killed mid-write left."""
        for folder in (self.held, self.images, self.tmp):
            folder.mkdir(parents=True, exist_ok=True)
        create(self.index)
        self._kept_open = keep_open(self.index)
        self._sweep()
        self.prune()
        return self

    def close(self) -> None:
        if self._kept_open is not None:
            self._kept_open.close()
            self._kept_open = None

    # --- holding an answered photo -------------------------------------------------

    def hold(self, data: bytes, answered: Answered) -> str | None:
        """Keep `data` for FEEDBACK_HOLD_MINUTES under a new prediction id (128 random
        bits), dropping the oldest held past FEEDBACK_HOLD_MB; None if it alone is over."""
        if len(data) > self.hold_bytes:
            return None
        sha, ext = content_name(data)
        temporary = write_temporary(self.held, data)
        prediction_id = secrets.token_hex(16)
        try:
            with transaction(self.index, durable=False) as db:
                os.replace(temporary, self._held_path(sha, ext))
                db.execute(
                    "INSERT INTO held VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        *(prediction_id, sha, ext, len(data), answered.kind),
                        json.dumps(answered.predicted),
                        *(answered.probability, answered.model_sha256, self.clock()),
                    ),
                )
                add(db, "held_bytes", len(data))
                self._prune(db)
        finally:
            temporary.unlink(missing_ok=True)
        return prediction_id

    def prune(self) -> None:
        """Drop what is held past its time or over its bytes (holding does too)."""
        with transaction(self.index, durable=False) as db:
            self._prune(db)

    def _prune(self, db: sqlite3.Connection) -> None:
        oldest = self.clock() - self.hold_s
        dropped = db.execute(
            "SELECT prediction_id, sha256, ext, bytes FROM held WHERE created < ?", (oldest,)
        ).fetchall()
        held = value(db, "held_bytes") - sum(row[3] for row in dropped)
        if held > self.hold_bytes:
            for row in db.execute(
                "SELECT prediction_id, sha256, ext, bytes FROM held WHERE created >= ? "
                "ORDER BY created",
                (oldest,),
            ):
                if held <= self.hold_bytes:
                    break
                dropped.append(row)
                held -= row[3]
        for prediction_id, sha, ext, size in dropped:
            self._release(db, prediction_id, sha, ext, size)

    def _release(
        self, db: sqlite3.Connection, prediction_id: str, sha: str, ext: str, size: int
    ) -> None:
        """Forget one held photo; its file goes once no other hold names it (in the
        transaction, so a process holding the same photo at once keeps its file)."""
        db.execute("DELETE FROM held WHERE prediction_id = ?", (prediction_id,))
        add(db, "held_bytes", -size)
        if not db.execute("SELECT 1 FROM held WHERE sha256 = ? LIMIT 1", (sha,)).fetchone():
            self._held_path(sha, ext).unlink(missing_ok=True)

    # --- recording a confirmation or a correction -------------------------------------

    def record(
        self, prediction_id: str, label: list[str] | None, model_sha256: str | None = None
    ) -> Record:
        """Keep what someone said of a held answer (`label`: None confirms it): its photo
        into images/, its row into the index, or nothing at all (an ApiError). With
        `model_sha256`, only an answer of that model (the one `label` was checked against)."""
        added: Path | None = None
        try:
            with transaction(self.index) as db:
                record, size = self._answer(db, prediction_id, label)
                if model_sha256 is not None and record.model_sha256 != model_sha256:
                    raise _unknown()  # a model served here before: its labels may differ
                known = db.execute("SELECT 1 FROM images WHERE sha256 = ?", (record.sha256,))
                new_image = known.fetchone() is None
                kept = value(db, "kept_bytes") + self.index.stat().st_size + ROW_BYTES
                if kept + (size if new_image else 0) > self.max_bytes:
                    raise self._full()
                if new_image:
                    held = self._held_path(record.sha256, record.ext)
                    if not held.is_file():  # only if a process died between two steps
                        raise _unknown()
                    added = self.folder / record.fname
                    link_into(held, added)
                    db.execute(
                        "INSERT INTO images VALUES (?, ?, ?)", (record.sha256, record.ext, size)
                    )
                    add(db, "kept_bytes", size)
                db.execute(
                    "INSERT INTO feedback (prediction_id, sha256, ext, kind, verdict, label, "
                    "predicted, probability, model_sha256, created) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        *(record.prediction_id, record.sha256, record.ext, record.kind),
                        *(record.verdict, json.dumps(record.label), json.dumps(record.predicted)),
                        *(record.probability, record.model_sha256, record.created),
                    ),
                )
                self._release(db, prediction_id, record.sha256, record.ext, size)
            added = None  # committed: it stays
            return record
        except OSError as exc:
            if exc.errno in FULL:
                raise self._full() from None
            raise
        except sqlite3.OperationalError as exc:
            if "full" in str(exc):
                raise self._full() from None
            raise
        finally:
            if added is not None:
                added.unlink(missing_ok=True)

    def _answer(
        self, db: sqlite3.Connection, prediction_id: str, label: list[str] | None
    ) -> tuple[Record, int]:
        """The record `label` makes of a held answer, and its photo's size."""
        answered = db.execute("SELECT 1 FROM feedback WHERE prediction_id = ?", (prediction_id,))
        if answered.fetchone():
            raise ApiError("already_answered", "That answer was already confirmed or corrected.")
        row = db.execute(
            "SELECT sha256, ext, bytes, kind, predicted, probability, model_sha256, created "
            "FROM held WHERE prediction_id = ?",
            (prediction_id,),
        ).fetchone()
        now = self.clock()
        if row is None or row[7] < now - self.hold_s:
            raise _unknown()
        sha, ext, size, kind, predicted_json, probability, model, _ = row
        predicted = json.loads(predicted_json)
        said = predicted if label is None else label
        verdict = "confirmed" if said == predicted else "corrected"
        record = Record(
            prediction_id, sha, ext, kind, verdict, said, predicted, probability, model, now
        )
        return record, size

    def _full(self) -> ApiError:
        return ApiError(
            "feedback_store_full",
            f"The feedback kept here is at its cap ({self.max_bytes / 2**20:g} MB): "
            "nothing was written. Export it, then make room (docs/deploy.md).",
        )

    # --- reading ---------------------------------------------------------------------

    def records(self) -> list[Record]:
        """Every kept confirmation and correction, oldest first (one consistent read)."""
        with connection(self.index) as db:
            rows = db.execute(
                "SELECT prediction_id, sha256, ext, kind, verdict, label, predicted, "
                "probability, model_sha256, created FROM feedback ORDER BY id"
            ).fetchall()
        return [_record(row) for row in rows]

    # --- the files and the index -----------------------------------------------------

    def _held_path(self, sha: str, ext: str) -> Path:
        return self.held / f"{sha}.{ext}"

    def _sweep(self) -> None:
        """Remove what a killed process left: temporary files, and held photos no hold
        names (older than STALE_S, so never one another process is writing now)."""
        stale = time.time() - STALE_S
        with connection(self.index) as db:
            named = {row[0] for row in db.execute("SELECT DISTINCT sha256 FROM held")}
        for folder in (self.held, self.images, self.tmp):
            for path in folder.iterdir():
                left = path.name.endswith(TEMPORARY) or folder == self.tmp
                if left or (folder == self.held and path.name.split(".")[0] not in named):
                    with contextlib.suppress(FileNotFoundError):
                        if path.stat().st_mtime < stale:
                            path.unlink()


def _record(row: tuple[Any, ...]) -> Record:
    """A feedback row (as `records` selects it)."""
    prediction_id, sha, ext, kind, verdict, label, predicted, probability, model, created = row
    return Record(
        prediction_id, sha, ext, kind, verdict, json.loads(label), json.loads(predicted),
        probability, model, created,
    )  # fmt: skip


def _unknown() -> ApiError:
    return ApiError(
        "unknown_prediction",
        "No held prediction has that id: it was never given, or its time "
        "(FEEDBACK_HOLD_MINUTES) has passed. Predict the photo again.",
    )


async def prune_periodically(store: FeedbackStore, every_s: float = 60.0) -> None:
    """Drop expired holds even while no photo is answered (each hold prunes too)."""
    while True:
        await asyncio.sleep(every_s)
        try:
            await asyncio.to_thread(store.prune)
        except (OSError, sqlite3.Error):
            logger.warning("pruning the held feedback photos failed", exc_info=True)
