"""Structured logs: one JSON object per line, via python-json-logger.

Used for the server's own records, uvicorn's, and the access log that
RequestContext writes (one line per request). Configured by `python -m app
serve`; under a test client, records still flow through the logging module.
"""

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def logging_config(level: str) -> dict:
    """A dictConfig for the app and uvicorn: JSON lines on stderr."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    logger = {"handlers": ["json"], "level": level.upper(), "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "fmt": LOG_FORMAT,
                "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            }
        },
        "handlers": {"json": handler},
        "loggers": {"app": logger, "uvicorn": logger, "uvicorn.error": {"level": level.upper()}},
    }
