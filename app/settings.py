"""Configuration, read only from environment variables (Heroku sets PORT), as one table.

Each row of SETTINGS is one setting: its field on `Settings`, its variable, how its
text is parsed and checked, its default and what it does. The loader, the table in
docs/configuration.md (a test holds it to this one) and bench/'s environment cleaning
are all made from it. A bad value raises `SettingsError` with one line naming the
variable and what it expects, which the CLI prints before exiting.
"""

import ipaddress
import math
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_DIR = ROOT / "static" / "examples"


class SettingsError(ValueError):
    """A setting has a value the app cannot use."""


@dataclass(frozen=True)
class Number:
    """An int or a float within bounds (so never NaN or infinite)."""

    kind: type
    low: float
    high: float | None = None

    @property
    def expects(self) -> str:
        bounds = f">= {self.low}" if self.high is None else f"between {self.low} and {self.high}"
        return f"{'an integer' if self.kind is int else 'a number'} {bounds}"

    def __call__(self, text: str) -> int | float:
        value: int | float = self.kind(text)
        if (isinstance(value, float) and not math.isfinite(value)) or value < self.low:
            raise ValueError(text)
        if self.high is not None and value > self.high:
            raise ValueError(text)
        return value


@dataclass(frozen=True)
class Choice:
    options: tuple[str, ...]

    @property
    def expects(self) -> str:
        return "one of " + ", ".join(self.options)

    def __call__(self, text: str) -> str:
        if text.lower() not in self.options:
            raise ValueError(text)
        return text.lower()


@dataclass(frozen=True)
class Matching:
    """Text matching a pattern (stripped), or a comma-separated list of such."""

    pattern: str
    expects: str
    many: bool = False

    def __call__(self, text: str) -> str | tuple[str, ...]:
        items = [item.strip() for item in text.split(",") if item.strip()] if self.many else [text]
        if not all(re.fullmatch(self.pattern, item.strip()) for item in items):
            raise ValueError(text)
        return tuple(items) if self.many else text.strip()


class Flag:
    expects = "true or false"

    def __call__(self, text: str) -> bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(text)


class Text:
    expects = "text"

    def __call__(self, text: str) -> str:
        return text


class File:
    expects = "the path of a compiled .onnx file or a fastai export.pkl, and no file is there"

    def __call__(self, text: str) -> Path:
        path = Path(text).expanduser()
        if not path.is_file():
            raise ValueError(text)
        return path


class Folder:
    expects = "a folder's path"

    def __call__(self, text: str) -> Path:
        return Path(text).expanduser()


class OptionalFolder:
    """A folder's path, or nothing (empty): what turns a feature off."""

    expects = "a folder's path, or nothing"

    def __call__(self, text: str) -> Path | None:
        return Path(text.strip()).expanduser() if text.strip() else None


class Addresses:
    """`*`, or comma-separated IP addresses and networks, checked as uvicorn reads them
    (it would take a typo for a name that matches no peer, and trust nobody)."""

    expects = "* or comma-separated IP addresses and networks, such as 10.0.0.0/8"

    def __call__(self, text: str) -> tuple[str, ...]:
        items = tuple(item.strip() for item in text.split(",") if item.strip())
        if items != ("*",):
            for item in items:  # each raises ValueError unless it is one
                parse = ipaddress.ip_network if "/" in item else ipaddress.ip_address
                parse(item)
        return items


class Examples:
    expects = f"comma-separated image file names in {EXAMPLES_DIR}"

    def __call__(self, text: str) -> tuple[str, ...]:
        names = tuple(name.strip() for name in text.split(",") if name.strip())
        if any("/" in name or not (EXAMPLES_DIR / name).is_file() for name in names):
            raise ValueError(text)
        return names


Values = dict[str, Any]  # the settings read so far, by field
Default = str | Callable[[Values, Mapping[str, str]], str]  # or made from those read before


@dataclass(frozen=True)
class Setting:
    field: str
    variable: str
    parse: Callable[[str], object]
    default: Default
    help: str
    default_doc: str | None = None  # how the docs write a default that isn't a literal
    secret: bool = False  # a bad value is not repeated in the error


def _cores(values: Values, environ: Mapping[str, str]) -> str:
    return str(max(1, (os.cpu_count() or 1) // values["web_concurrency"]))


def _cache(values: Values, environ: Mapping[str, str]) -> str:
    return str(Path(environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "pounce")


def _stem(values: Values, environ: Mapping[str, str]) -> str:
    return str(values["model_path"].stem)


LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
LOG_FORMATS = ("auto", "json", "text")
PATH_SEGMENT = "letters, digits and ._- (a URL path segment)"
# fmt: off
SETTINGS = (
    Setting("model_path", "MODEL_PATH", File(), "export.pkl",
            "a compiled `.onnx`, or a fastai export, served by the `.onnx` compiled from it "
            "([models.md](models.md))"),
    Setting("model_name", "MODEL_NAME",
            Matching(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", PATH_SEGMENT),
            _stem,
            "the model's name in the Open Inference Protocol's paths, `/v2/models/{MODEL_NAME}` "
            "([api.md](api.md#the-open-inference-protocol))",
            "*the model file's name less its suffix* (`export`)"),
    Setting("model_cache_dir", "MODEL_CACHE_DIR", Folder(), _cache,
            "where the server keeps exports it compiled, by sha256",
            "`$XDG_CACHE_HOME/pounce` (`~/.cache/pounce`)"),
    Setting("host", "HOST", Text(), "127.0.0.1",
            "address to listen on (`0.0.0.0` in a container)"),
    Setting("port", "PORT", Number(int, 1, 65535), "8000",
            "port to listen on (Heroku sets it)"),
    Setting("forwarded_allow_ips", "FORWARDED_ALLOW_IPS", Addresses(), "127.0.0.1,::1",
            "peers whose `X-Forwarded-Proto` and `X-Forwarded-For` are believed: the proxy in "
            "front (`*`: any peer, where only the proxy can reach the server; "
            "[deploy.md](deploy.md#behind-a-proxy-that-ends-tls))"),
    Setting("top_k", "TOP_K", Number(int, 1), "5",
            "classes returned when a request doesn't say"),
    Setting("max_upload_mb", "MAX_UPLOAD_MB", Number(float, 0.001), "10",
            "largest request body, and largest image fetched from a URL"),
    Setting("max_image_megapixels", "MAX_IMAGE_MEGAPIXELS", Number(float, 0.001), "50",
            "largest image (width x height), checked before decoding"),
    Setting("max_mask_megapixels", "MAX_MASK_MEGAPIXELS", Number(float, 0.001), "4",
            "largest mask a segmentation model answers with: a bigger photo's mask is scaled "
            "down to it, which bounds each answer's memory "
            "([models.md](models.md#what-each-kind-answers))"),
    Setting("max_heatmap_megapixels", "MAX_HEATMAP_MEGAPIXELS", Number(float, 0.001), "0.25",
            "largest explanation heatmap (explain=true): the photo's size scaled down to it; "
            "a map of 7 x 7 cells has no finer detail, and the page stretches it over the "
            "photo ([models.md](models.md#where-did-it-look))"),
    Setting("max_batch_items", "MAX_BATCH_ITEMS", Number(int, 1, 256), "16",
            "images in one `/api/predict/batch` request"),
    Setting("cors_origins", "CORS_ORIGINS",
            Matching(r"\S+", "comma-separated origins", many=True),
            "",
            "comma-separated origins allowed to call the API from a browser",
            "*(none)*"),
    Setting("log_level", "LOG_LEVEL", Choice(LOG_LEVELS), "info",
            "`critical`, `error`, `warning`, `info` or `debug`"),
    Setting("log_format", "LOG_FORMAT", Choice(LOG_FORMATS), "auto",
            "`json` (one object a line), `text` (readable lines), or `auto`: text when stderr is "
            "a terminal, JSON otherwise"),
    Setting("web_concurrency", "WEB_CONCURRENCY", Number(int, 1, 64), "1",
            "server processes; each holds its own copy of the model"),
    Setting("inference_workers", "INFERENCE_WORKERS", Number(int, 1, 64), _cores,
            "threads running forward passes side by side",
            "cores ÷ `WEB_CONCURRENCY`"),
    Setting("intra_op_threads", "INTRA_OP_THREADS", Number(int, 1, 256), "1",
            "ONNX Runtime threads inside each run"),
    Setting("memory_arena", "MEMORY_ARENA", Flag(), "true",
            "ONNX Runtime's CPU memory arena (reuses buffers between runs; off trades speed for "
            "memory)"),
    Setting("microbatch_max_size", "MICROBATCH_MAX_SIZE", Number(int, 1, 256), "2",
            "most queued requests one worker runs as one forward pass"),
    Setting("microbatch_max_wait_ms", "MICROBATCH_MAX_WAIT_MS", Number(float, 0, 1000), "0",
            "how long a batch may wait for more requests (a lone request never waits)"),
    Setting("max_in_flight", "MAX_IN_FLIGHT", Number(int, 1, 10_000), "16",
            "images decoded and predicted at once, a slot each (a request with more takes them "
            "all and runs that many at a time); bodies and URLs are received before"),
    Setting("max_queue", "MAX_QUEUE", Number(int, 0, 100_000), "64",
            "prediction requests waiting for their slots; past that, 503 at once"),
    Setting("queue_timeout_s", "QUEUE_TIMEOUT", Number(float, 0.1, 600), "10",
            "seconds a request may wait for a slot before a 503 (under Heroku's 30 s)"),
    Setting("graceful_timeout_s", "GRACEFUL_TIMEOUT", Number(float, 0, 600), "8",
            "seconds in-flight requests get to finish after SIGTERM (under `docker stop`'s 10)"),
    Setting("allow_private_urls", "ALLOW_PRIVATE_URLS", Flag(), "false",
            "let URL input reach loopback/private addresses"),
    Setting("url_timeout_s", "URL_TIMEOUT", Number(float, 0.1, 120), "10",
            "seconds allowed for fetching a URL"),
    Setting("body_timeout_s", "BODY_TIMEOUT", Number(float, 0.1, 600), "15",
            "seconds a request's body may take to arrive, from its headers (408 after)"),
    Setting("header_timeout_s", "HEADER_TIMEOUT", Number(float, 0.1, 600), "10",
            "seconds a request's headers may take to arrive, or a new connection may stay silent "
            "(408 after)"),
    Setting("upload_buffer_mb", "UPLOAD_BUFFER_MB", Number(float, 0.001), "64",
            "request bodies and fetched images held at once, across all requests; past it, 503"),
    Setting("max_header_kb", "MAX_HEADER_KB", Number(float, 1), "32",
            "largest request headers (431 past it)"),
    Setting("max_connections", "MAX_CONNECTIONS", Number(int, 1, 1_000_000), "2048",
            "open connections; past it, new ones get 503 at once"),
    Setting("keep_alive_s", "KEEP_ALIVE_TIMEOUT", Number(float, 0.1, 3600), "5",
            "seconds an idle kept-alive connection stays open"),
    Setting("feedback_dir", "FEEDBACK_DIR", OptionalFolder(), "",
            "where corrections and confirmations are kept (the photos and their index); unset, "
            "feedback is off ([api.md](api.md#was-it-right-feedback))",
            "*(none: off)*"),
    Setting("feedback_hold_minutes", "FEEDBACK_HOLD_MINUTES", Number(float, 0.001, 10_080),
            "30",
            "how long an answered photo is held for a correction to name it by `prediction_id`"),
    Setting("feedback_hold_mb", "FEEDBACK_HOLD_MB", Number(float, 0.001), "256",
            "photos held for corrections, in all; past it, the oldest held are dropped first"),
    Setting("feedback_max_mb", "FEEDBACK_MAX_MB", Number(float, 0.001), "1024",
            "the kept feedback's disk (photos and index); past it, 507 and nothing written"),
    Setting("feedback_new_labels", "FEEDBACK_NEW_LABELS", Flag(), "false",
            "let a correction name a label the model doesn't have (short: letters, digits, "
            "spaces, `-` and `_`)"),
    Setting("admin_token", "ADMIN_TOKEN",
            Matching(r"(\S{16,})?", "at least 16 characters with no spaces, or nothing"),
            "",
            "the bearer token of the feedback's export and summary; unset, they are off (403)",
            "*(none: off)*", secret=True),
    Setting("title", "TITLE", Text(), "Pounce",
            "the page's title"),
    Setting("description", "DESCRIPTION",
            Text(),
            "What does the model see? Upload a photo or paste a link to one.",
            "the line under the title",
            "*What does the model see?…*"),
    Setting("accent_color", "ACCENT_COLOR",
            Matching(r"#(?:[0-9a-fA-F]{3}){1,2}", "a hex colour such as #b4461b"),
            "#b4461b",
            "the page's accent colour (keep it dark enough for white text: AA contrast)"),
    Setting("examples", "EXAMPLE_IMAGES", Examples(), "cat.jpg,coffee.jpg,rocket.jpg",
            'the "Try an example" photos, file names in `static/examples/` (empty for none)'),
)
# fmt: on
VARIABLES = frozenset(row.variable for row in SETTINGS) | {"XDG_CACHE_HOME"}


@dataclass(frozen=True)
class Settings:
    """Every setting's value, typed; SETTINGS says where each comes from."""

    model_path: Path
    model_name: str
    model_cache_dir: Path
    host: str
    port: int
    forwarded_allow_ips: tuple[str, ...]
    top_k: int
    max_upload_mb: float
    max_image_megapixels: float
    max_mask_megapixels: float
    max_heatmap_megapixels: float
    max_batch_items: int
    cors_origins: tuple[str, ...]
    log_level: str
    log_format: str
    web_concurrency: int
    inference_workers: int
    intra_op_threads: int
    memory_arena: bool
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
    max_header_kb: float
    max_connections: int
    keep_alive_s: float
    feedback_dir: Path | None
    feedback_hold_minutes: float
    feedback_hold_mb: float
    feedback_max_mb: float
    feedback_new_labels: bool
    admin_token: str = field(repr=False)
    title: str
    description: str
    accent_color: str
    examples: tuple[str, ...]

    @property
    def prep_threads(self) -> int:
        """Decoding threads: this process's share of the cores, as inference workers'."""
        return max(1, (os.cpu_count() or 1) // self.web_concurrency)

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

    @property
    def kind_defaults(self) -> dict[str, float]:
        """What the kinds of model read (app/kinds/): TOP_K and MAX_MASK_MEGAPIXELS."""
        return {"top_k": self.top_k, "max_mask_pixels": self.max_mask_megapixels * 1_000_000}

    @property
    def json_logs(self) -> bool:
        """LOG_FORMAT, with `auto` decided by whether stderr is a terminal."""
        return self.log_format == "json" or (self.log_format == "auto" and not sys.stderr.isatty())


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and check every setting from `environ` (default: the process's)."""
    environ = os.environ if environ is None else environ
    values: Values = {}
    for row in SETTINGS:
        raw = environ.get(row.variable)
        if raw is None:
            raw = row.default(values, environ) if callable(row.default) else row.default
        try:
            values[row.field] = row.parse(raw)
        except ValueError:
            expects = getattr(row.parse, "expects", "a valid value")
            shown = "(hidden)" if row.secret else repr(raw)
            message = f"{row.variable}={shown} is not valid: expected {expects}"
            raise SettingsError(message) from None
    return Settings(**values)


def default_of(variable: str) -> str:
    """A setting's literal default, as the table gives it."""
    default = next(row.default for row in SETTINGS if row.variable == variable)
    assert isinstance(default, str), f"{variable}'s default is made, not written"
    return default


def docs_table() -> str:
    """docs/configuration.md's table of settings."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for row in SETTINGS:
        default = row.default_doc or f"`{row.default}`"
        rows.append(f"| `{row.variable}` | {default} | {row.help} |")
    return "\n".join(rows) + "\n"
