"""Logs: JSON lines for machines (python-json-logger), readable lines in a terminal.

Used for the server's own records, uvicorn's, and the access log that
RequestContext writes (one line per request). LOG_FORMAT chooses: `json`, `text`,
or `auto` (the default), which is text when stderr is a terminal (`make run`) and
JSON otherwise (a container, a platform's log collector), as uvicorn and
structlog-style apps do. Configured by `python -m app serve`; under a test client,
records still flow through the logging module.
"""

import logging
from typing import Any

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# What every LogRecord has; anything else on a record came in `extra` and is shown.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class Readable(logging.Formatter):
    """One line a record: time, level, logger, message, then its extras as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [f"{k}={v}" for k, v in vars(record).items() if k not in _STANDARD]
        return " ".join([line, *extras])


def logging_config(level: str, json: bool = True) -> dict[str, Any]:
    """A dictConfig for the app and uvicorn: JSON lines, or readable ones, on stderr."""
    formatter = "json" if json else "text"
    handler = {
        "class": "logging.StreamHandler",
        "formatter": formatter,
        "stream": "ext://sys.stderr",
    }
    logger = {"handlers": ["main"], "level": level.upper(), "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "fmt": LOG_FORMAT,
                "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            },
            "text": {"()": Readable},
        },
        "handlers": {"main": handler},
        "loggers": {"app": logger, "uvicorn": logger, "uvicorn.error": {"level": level.upper()}},
    }
