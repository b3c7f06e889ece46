"""Serve the TorchScript baseline through the app's own HTTP stack.

`python -m bench.torchscript_server`: create_app with bench/torchscript_model.py as its
loader, run by uvicorn the way `python -m app serve` runs the app (one process, host
and port from the settings), so only the model differs from Pounce. Benchmark use only.
"""

import uvicorn

from app.main import create_app
from app.ops.logs import logging_config
from app.settings import load_settings
from bench.torchscript_model import TorchScriptModel


def main() -> None:
    settings = load_settings()
    uvicorn.run(
        create_app(settings, load=TorchScriptModel.from_settings),
        host=settings.host,
        port=settings.port,
        workers=1,
        log_level=settings.log_level,
        log_config=logging_config(settings.log_level),
        access_log=False,
        timeout_graceful_shutdown=settings.graceful_timeout_s,
    )


if __name__ == "__main__":
    main()
