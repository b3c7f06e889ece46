"""Command line: `python -m app serve`, `predict PATH_OR_URL...`, `compile` and
`feedback export OUT.zip`.

`predict` runs the server's own path to an answer (app/pipeline.py: fetch, predict,
answer), so checking a model here checks what the server will do. It prints one
JSON line per image, the API's answer, and exits 1 if any image failed; with
`--explain DIR`, the answer's `explanation` too, and each photo with its map drawn
over it in DIR (app/overlay.py). `compile`
turns a fastai export into the .onnx file the server runs, in a child process
(app/inference/loading.py). `feedback export` writes FEEDBACK_DIR's dataset (what
GET /api/feedback/export sends) with no server running, or beside one.
"""

import argparse
import asyncio
import functools
import json
import logging
import logging.config
import resource
import signal
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from app import overlay
from app.errors import ApiError
from app.inference.images import SUFFIXES
from app.inference.loading import (
    can_compile,
    compile_in_child,
    compiled_model_path,
    find_compiled,
    load_model,
)
from app.inference.metadata import sha256_of
from app.inference.model import ModelLoadError
from app.ops.logs import logging_config
from app.ops.memory import tune_malloc
from app.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:  # imported where it runs: it brings aiohttp, which compiling never needs
    from app.pipeline import Pipeline

CHUNK = 32  # images in flight at once in `predict`
NOT_COMPILED = 3  # `compile --check`'s exit status when no compiled file serves the export


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        sys.exit(f"error: {exc}")


def _allow_open_files(needed: int) -> None:
    """Raise this process's open-file limit to `needed` (up to the hard limit), so
    MAX_CONNECTIONS connections can be accepted before uvicorn answers 503."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def serve(args: argparse.Namespace) -> None:
    import uvicorn

    from app.limits.headers import BoundedHttpToolsProtocol

    settings = _settings()
    tune_malloc()  # before any thread or worker process starts (app/ops/memory.py)
    logs = logging_config(settings.log_level, settings.json_logs)
    logging.config.dictConfig(logs)
    try:  # compile once here, before uvicorn starts WEB_CONCURRENCY processes that need it
        compiled_model_path(settings)
    except ModelLoadError as exc:
        sys.exit(f"error: {exc}")
    # uvicorn drains in-flight requests on SIGTERM, then re-raises the signal so
    # the process dies "by SIGTERM". A drained shutdown is a clean one: exit 0.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    _allow_open_files(settings.max_connections + 256)  # and files, the model, the loop...
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        # The pages need no proxy headers (their URLs are paths): trusted, they give the
        # request the browser's scheme (for redirects and the code samples' text).
        proxy_headers=True,
        forwarded_allow_ips=list(settings.forwarded_allow_ips),
        workers=settings.web_concurrency,
        log_level=settings.log_level,
        log_config=logs,
        access_log=False,  # RequestContext writes the access log, as JSON
        reload=args.reload,
        timeout_graceful_shutdown=settings.graceful_timeout_s,  # type: ignore[arg-type]
        # Connection-level limits (docs/architecture.md, "Slow and vanishing clients"): past
        # MAX_CONNECTIONS, new connections get uvicorn's 503 at once.
        limit_concurrency=settings.max_connections,
        timeout_keep_alive=settings.keep_alive_s,  # type: ignore[arg-type]
        http=functools.partial(  # type: ignore[arg-type]
            BoundedHttpToolsProtocol,
            max_header_bytes=settings.max_header_bytes,
            header_timeout_s=settings.header_timeout_s,
        ),
    )


def expand(inputs: list[str]) -> Iterator[str]:
    """URLs as they are; directories walked (sorted) for image files."""
    for item in inputs:
        path = Path(item)
        if item.startswith(("http://", "https://")) or not path.is_dir():
            yield item
        else:
            yield from (
                str(p)
                for p in sorted(path.rglob("*"))
                if p.is_file() and p.suffix.lower() in SUFFIXES
            )


async def _predict_all(
    pipeline: "Pipeline",
    sources: list[str],
    options: dict[str, Any],
    drawn: dict[str, Path] | None = None,
    max_pixels: int = 0,
) -> int:
    """Answer every source through the server's own path, printing one JSON line each
    (and with `drawn`, writing each explained photo to its file there); the number that
    failed."""
    await pipeline.start()

    async def one(source: str) -> dict[str, Any]:
        try:
            if source.startswith(("http://", "https://")):
                data = await pipeline.fetch(source)
            else:
                data = Path(source).read_bytes()
            answer = {"source": source, **await pipeline.answer(data, options)}
        except ApiError as exc:
            return {"source": source, **exc.body()}
        except OSError as exc:
            return {"source": source, "error": {"code": "unreadable", "message": str(exc)}}
        if drawn is None:
            return answer
        heatmap, path = answer["explanation"]["heatmap"], drawn[source]
        try:
            await pipeline.offload(overlay.write, data, heatmap, max_pixels, path)
        except OSError as exc:
            return {"source": source, "error": {"code": "unwritable", "message": str(exc)}}
        return {"source": source, "written": str(path), **answer}

    failures = 0
    try:
        with tqdm(total=len(sources), file=sys.stderr, disable=len(sources) < 10) as bar:
            for start in range(0, len(sources), CHUNK):
                for line in await asyncio.gather(*map(one, sources[start : start + CHUNK])):
                    failures += "error" in line
                    print(json.dumps(line), flush=True)
                    bar.update()
    finally:
        await pipeline.close()
    return failures


def predict(args: argparse.Namespace) -> None:
    from app.pipeline import Pipeline

    settings = _settings()
    sources = list(expand(args.inputs))
    if not sources:
        sys.exit("error: no images found")
    target = {"explain_class": args.explain_class, "explain_value": args.explain_value}
    if args.explain is None and any(value is not None for value in target.values()):
        sys.exit("error: --explain-class and --explain-value go with --explain DIR")
    flags = {"top_k": args.top_k, "explain": "true" if args.explain else None, **target}
    query = {name: value for name, value in flags.items() if value is not None}  # as the API's
    try:  # a bad model, or bad options, in one line as serve and compile say it
        pipeline = Pipeline.from_settings(load_model(settings), settings)
        options = pipeline.options(query)
        if args.explain:
            args.explain.mkdir(parents=True, exist_ok=True)
    except ModelLoadError as exc:
        sys.exit(f"error: {exc}")
    except ApiError as exc:
        sys.exit(f"error: {exc.message}")
    except OSError as exc:
        sys.exit(f"error: --explain: {exc}")
    drawn = overlay.destinations(sources, args.explain) if args.explain else None
    failures = asyncio.run(
        _predict_all(pipeline, sources, options, drawn, settings.max_image_pixels)
    )
    sys.exit(1 if failures else 0)


def compile_model(args: argparse.Namespace) -> None:
    settings = _settings()
    source = args.source or settings.model_path
    if not source.is_file():
        sys.exit(f"error: {source}: no such file")
    if args.check:
        found = find_compiled(source, settings.model_cache_dir, sha256_of(source))
        if found is None:
            print(f"{source} has no compiled model made from it", file=sys.stderr)
            sys.exit(NOT_COMPILED)
        print(found)
        return
    if not can_compile():
        sys.exit(
            "error: compiling needs fastai and torch, which aren't installed here: "
            "`make compile` installs them (requirements-compile.txt)"
        )
    out = args.out or source.with_suffix(".onnx")
    options = [
        flag for flag, on in (("--int8", args.int8), ("--fast-decode", args.fast_decode)) if on
    ]
    for flag, folder in (("--calibration", args.calibration), ("--holdout", args.holdout)):
        if folder is not None:
            options += [flag, str(folder.resolve())]  # the child runs in the repo root
    try:
        compile_in_child(
            source, out, say=lambda line: print(line, file=sys.stderr), options=options
        )
    except ModelLoadError as exc:
        sys.exit(f"error: {exc}")


def feedback_export(args: argparse.Namespace) -> None:
    from app.feedback.export import write_export
    from app.feedback.store import FeedbackStore

    settings = _settings()
    if settings.feedback_dir is None:
        sys.exit("error: FEEDBACK_DIR is not set: it names the feedback to export")
    if not (settings.feedback_dir / "index.db").is_file():
        sys.exit(f"error: {settings.feedback_dir} holds no feedback (no index.db)")
    # Read only: not opened, which would sweep holds by this process's FEEDBACK_HOLD_*
    # settings, perhaps not the running server's.
    store = FeedbackStore.from_settings(settings)
    try:
        count = write_export(store, args.out)
    except (OSError, sqlite3.Error) as exc:
        sys.exit(f"error: {exc}")
    print(f"{args.out}: {count} answers confirmed or corrected", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m app", description="Pounce: a fastai vision model on the web."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="serve the web app and API (configured by env)")
    serve_cmd.add_argument("--reload", action="store_true", help="restart on code changes (dev)")
    serve_cmd.set_defaults(func=serve)
    predict_cmd = commands.add_parser("predict", help="predict files, folders or URLs (JSON lines)")
    predict_cmd.add_argument("inputs", nargs="+", metavar="PATH_OR_URL")
    predict_cmd.add_argument(
        "--top-k", default=None, help="classes per image, 1 to the model's (as the API's top_k)"
    )
    predict_cmd.add_argument(
        "--explain",
        type=Path,
        metavar="DIR",
        help="add where the network looked (the API's explain=true), and write each photo "
        "with that map drawn over it into DIR as <name>.explained.jpg",
    )
    predict_cmd.add_argument(
        "--explain-class",
        metavar="LABEL",
        help="with --explain: a classifier's class to explain, instead of the top one",
    )
    predict_cmd.add_argument(
        "--explain-value",
        metavar="NAME",
        help="with --explain: a regression model's value to explain, instead of the first",
    )
    predict_cmd.set_defaults(func=predict)
    compile_cmd = commands.add_parser(
        "compile", help="compile a fastai export into the .onnx file the server runs"
    )
    compile_cmd.add_argument(
        "source", nargs="?", type=Path, help="the fastai export (default: MODEL_PATH)"
    )
    compile_cmd.add_argument(
        "-o", "--out", type=Path, help="the .onnx file to write (default: beside the source)"
    )
    compile_cmd.add_argument(
        "--int8",
        action="store_true",
        help="quantize to INT8: about twice as fast a forward pass, checked against fp32",
    )
    compile_cmd.add_argument(
        "--calibration",
        type=Path,
        metavar="DIR",
        help="with --int8: your photos to calibrate on (default: the repo's example photos)",
    )
    compile_cmd.add_argument(
        "--holdout",
        type=Path,
        metavar="DIR",
        help="with --int8 or --fast-decode: other photos of yours to check it on (default: 20 "
        "ImageNet photos for --int8, phone-size photos of the examples for --fast-decode)",
    )
    compile_cmd.add_argument(
        "--fast-decode",
        action="store_true",
        help="decode large JPEGs at reduced scale: faster on phone photos, but not exactly "
        "learn.predict's input; its agreement with exact decoding is measured and shown",
    )
    compile_cmd.add_argument(
        "--check",
        action="store_true",
        help="only say which compiled file serves the source (exit 3 if none)",
    )
    compile_cmd.set_defaults(func=compile_model)
    feedback_cmd = commands.add_parser("feedback", help="what people said of the answers")
    feedback_commands = feedback_cmd.add_subparsers(dest="action", required=True)
    export_cmd = feedback_commands.add_parser(
        "export", help="write FEEDBACK_DIR's photos and labels.csv as a zip fastai reads"
    )
    export_cmd.add_argument("out", type=Path, metavar="OUT.zip")
    export_cmd.set_defaults(func=feedback_export)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args.func(args)
