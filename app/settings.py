"""Configuration, read only from environment variables (Heroku sets PORT).

Every setting is validated when it is read: a bad value raises `SettingsError`
with one line naming the variable and what it expects, which the CLI prints
before exiting. The README's configuration table lists the same variables.
"""

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from starlette.config import Config
from starlette.datastructures import CommaSeparatedStrings

T = TypeVar("T")

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "static" / "examples"

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


class SettingsError(ValueError):
    """A setting has a value the app cannot use."""


@dataclass(frozen=True)
class Settings:
    model_path: Path
    model_name: str
    model_cache_dir: Path
    host: str
    port: int
    top_k: int
    max_upload_mb: float
    max_image_megapixels: float
    max_batch_items: int
    cors_origins: tuple[str, ...]
    log_level: str
    web_concurrency: int
    intra_op_threads: int
    memory_arena: bool
    inference_workers: int
    prep_threads: int
    microbatch_max_size: int
    microbatch_max_wait_ms: float
    max_in_flight: int
    max_queue: int
    queue_timeout_s: float
    graceful_timeout_s: float
    allow_private_urls: bool
    url_timeout_s: float
    body_timeout_s: float
    header_timeout_s: float
    upload_buffer_mb: float
    max_connections: int
    keep_alive_s: float
    max_header_kb: float
    title: str
    description: str
    accent_color: str
    examples: tuple[str, ...]

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def upload_buffer_bytes(self) -> int:
        return int(self.upload_buffer_mb * 1024 * 1024)

    @property
    def max_header_bytes(self) -> int:
        return int(self.max_header_kb * 1024)

    @property
    def max_image_pixels(self) -> int:
        return int(self.max_image_megapixels * 1_000_000)


def _number(kind: Callable[[str], T], low: float, high: float | None = None) -> Callable[[str], T]:
    """A cast that also checks a range, so the error can say what is expected."""
    bounds = f">= {low}" if high is None else f"between {low} and {high}"

    def cast(text: str) -> T:
        value = kind(text)
        if value < low or (high is not None and value > high):
            raise ValueError(bounds)
        return value

    cast.expects = f"{'an integer' if kind is int else 'a number'} {bounds}"  # type: ignore[attr-defined]
    return cast


def _choice(*options: str) -> Callable[[str], str]:
    def cast(text: str) -> str:
        if text.lower() not in options:
            raise ValueError(text)
        return text.lower()

    cast.expects = "one of " + ", ".join(options)  # type: ignore[attr-defined]
    return cast


def _flag(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(text)


_flag.expects = "true or false"  # type: ignore[attr-defined]


def _text(text: str) -> str:
    return text


def _model_name(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", text):
        raise ValueError(text)
    return text


_model_name.expects = "letters, digits and ._- (a URL path segment)"  # type: ignore[attr-defined]


def _colour(text: str) -> str:
    if not re.fullmatch(r"#(?:[0-9a-fA-F]{3}){1,2}", text.strip()):
        raise ValueError(text)
    return text.strip()


_colour.expects = "a hex colour such as #b4461b"  # type: ignore[attr-defined]


def _examples(text: str) -> tuple[str, ...]:
    names = tuple(CommaSeparatedStrings(text))
    if any(not (EXAMPLES_DIR / name).is_file() or "/" in name for name in names):
        raise ValueError(text)
    return names


_examples.expects = f"comma-separated image file names in {EXAMPLES_DIR}"  # type: ignore[attr-defined]


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting from `environ` (default: the process's)."""
    config = Config(environ=os.environ if environ is None else environ)

    def get(key: str, cast: Callable[[str], T], default: str) -> T:
        raw = config(key, default=default)
        try:
            return cast(raw)
        except ValueError:
            expects = getattr(cast, "expects", "a valid value")
            raise SettingsError(f"{key}={raw!r} is not valid: expected {expects}") from None

    web_concurrency = get("WEB_CONCURRENCY", _number(int, 1, 64), "1")
    cores = max(1, (os.cpu_count() or 1) // web_concurrency)  # this process's share
    model_path = Path(get("MODEL_PATH", _text, "export.pkl")).expanduser()
    if not model_path.is_file():
        raise SettingsError(
            f"MODEL_PATH={str(model_path)!r} is not valid: expected the path of a compiled "
            ".onnx file or a fastai export.pkl, and no file is there"
        )
    cache_home = Path(config("XDG_CACHE_HOME", default="~/.cache")).expanduser()
    return Settings(
        model_path=model_path,
        # What the Open Inference Protocol calls the model: /v2/models/{MODEL_NAME}.
        model_name=get("MODEL_NAME", _model_name, model_path.stem),
        model_cache_dir=Path(
            get("MODEL_CACHE_DIR", _text, str(cache_home / "pounce"))
        ).expanduser(),
        host=get("HOST", _text, "127.0.0.1"),
        port=get("PORT", _number(int, 1, 65535), "8000"),
        top_k=get("TOP_K", _number(int, 1), "5"),
        max_upload_mb=get("MAX_UPLOAD_MB", _number(float, 0.001), "10"),
        max_image_megapixels=get("MAX_IMAGE_MEGAPIXELS", _number(float, 0.001), "50"),
        max_batch_items=get("MAX_BATCH_ITEMS", _number(int, 1, 256), "16"),
        cors_origins=tuple(get("CORS_ORIGINS", CommaSeparatedStrings, "")),
        log_level=get("LOG_LEVEL", _choice(*LOG_LEVELS), "info"),
        web_concurrency=web_concurrency,
        intra_op_threads=get("INTRA_OP_THREADS", _number(int, 1, 256), "1"),
        memory_arena=get("MEMORY_ARENA", _flag, "true"),
        inference_workers=get("INFERENCE_WORKERS", _number(int, 1, 64), str(cores)),
        prep_threads=cores,
        microbatch_max_size=get("MICROBATCH_MAX_SIZE", _number(int, 1, 256), "2"),
        microbatch_max_wait_ms=get("MICROBATCH_MAX_WAIT_MS", _number(float, 0, 1000), "0"),
        max_in_flight=get("MAX_IN_FLIGHT", _number(int, 1, 10_000), "16"),
        max_queue=get("MAX_QUEUE", _number(int, 0, 100_000), "64"),
        queue_timeout_s=get("QUEUE_TIMEOUT", _number(float, 0.1, 600), "10"),
        graceful_timeout_s=get("GRACEFUL_TIMEOUT", _number(float, 0, 600), "8"),
        allow_private_urls=get("ALLOW_PRIVATE_URLS", _flag, "false"),
        url_timeout_s=get("URL_TIMEOUT", _number(float, 0.1, 120), "10"),
        body_timeout_s=get("BODY_TIMEOUT", _number(float, 0.1, 600), "15"),
        header_timeout_s=get("HEADER_TIMEOUT", _number(float, 0.1, 600), "10"),
        upload_buffer_mb=get("UPLOAD_BUFFER_MB", _number(float, 0.001), "64"),
        max_connections=get("MAX_CONNECTIONS", _number(int, 1, 1_000_000), "2048"),
        keep_alive_s=get("KEEP_ALIVE_TIMEOUT", _number(float, 0.1, 3600), "5"),
        max_header_kb=get("MAX_HEADER_KB", _number(float, 1), "32"),
        title=get("TITLE", _text, "Pounce"),
        description=get(
            "DESCRIPTION",
            _text,
            "What does the model see? Upload a photo or paste a link to one.",
        ),
        accent_color=get("ACCENT_COLOR", _colour, "#b4461b"),
        examples=get("EXAMPLE_IMAGES", _examples, "cat.jpg,coffee.jpg,rocket.jpg"),
    )
