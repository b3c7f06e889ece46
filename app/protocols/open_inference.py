"""The Open Inference Protocol (KServe V2 REST), beside the app's own API, so that
standard clients (tritonclient, KServe, MLServer's) can call Pounce.

One input, `images`: a BYTES tensor of shape [N] holding encoded image files,
sent as JSON `data` in base64 (`"parameters": {"content_type": "base64"}`, as
MLServer sends it) or with the binary tensor data extension (a JSON header of
Inference-Header-Content-Length bytes, then each element as a 4-byte
little-endian length and its bytes). The outputs are the model's kind's
(app/kinds/: a classifier's `probabilities`, FP32 [N, classes], and `labels`,
BYTES [N, k], the top k, k from the output's `classification` parameter), each
in JSON or binary as the request asks; a model that explains its answers also has an
optional `heatmap` (BYTES [N], each image's map of where the network looked as a PNG,
app/inference/explanation.py), made only when asked for by name, with the API's
`explain_class` or `explain_value` as its parameters. The images go through the same path as
the API's (app/pipeline.py), holding a slot an image as the API's batch does,
cancelled if the client hangs up; body limits and metrics are the middleware's, as
for every route. This module owns its routes and its errors' shape, `{"error": "..."}`:
`routes` are the route table's (app/main.py).
"""

import base64
import functools
import json
import struct
import time
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from app.errors import ApiError
from app.http.api import elapsed_ms
from app.http.handlers import Unexpected, exception_handlers
from app.inference.explanation import png
from app.kinds import Prediction, Tensor
from app.limits.disconnect import until_disconnect
from app.pipeline import Pipeline
from app.protocols.inference_request import HEADER_LENGTH, INPUT, invalid, read
from app.services import Services

VERSION = "1"
# The output that is not the kind's but the explanation's: sent only when asked for.
HEATMAP = "heatmap"
TARGETS = ("explain_class", "explain_value")  # its parameters: the API's query options


def _services(request: Request) -> Services:
    """What the request may use, once the path names the served model (404 otherwise)."""
    services: Services = request.state.services
    name, served = request.path_params["name"], services.settings.model_name
    if name != served:
        raise ApiError(
            "model_not_found", f"No model {name[:80]!r} here; this server serves {served!r}."
        )
    return services


async def server_metadata(request: Request) -> JSONResponse:
    """GET /v2: who is answering."""
    return JSONResponse(
        {"name": "pounce", "version": "1.0.0", "extensions": ["binary_tensor_data"]}
    )


async def server_live(request: Request) -> JSONResponse:
    return JSONResponse({"live": True})


async def server_ready(request: Request) -> JSONResponse:
    if not request.state.services.ready:
        raise ApiError("not_ready", "The model is not loaded, or the server is stopping.")
    return JSONResponse({"ready": True})


def _outputs(pipeline: Pipeline) -> list[dict[str, Any]]:
    """The model's outputs: its kind's, and `heatmap` for a model that explains."""
    heatmap = [{"name": HEATMAP, "datatype": "BYTES", "shape": [-1]}] if pipeline.explains else []
    return [*pipeline.kind.outputs(), *heatmap]


async def model_metadata(request: Request) -> JSONResponse:
    services = _services(request)
    pipeline = services.pipeline
    return JSONResponse(
        {
            "name": services.settings.model_name,
            "versions": [VERSION],
            "platform": "onnxruntime_onnx",
            "inputs": [{"name": INPUT, "datatype": "BYTES", "shape": [-1]}],
            "outputs": _outputs(pipeline),
            "parameters": pipeline.kind.describe(),
        }
    )


async def model_ready(request: Request) -> JSONResponse:
    services = _services(request)
    if not services.ready:
        raise ApiError("not_ready", "The model is not loaded, or the server is stopping.")
    return JSONResponse({"name": services.settings.model_name, "ready": True})


# Each byte's value as JSON text and a comma, padded with NULs to 4 bytes: a UINT8
# tensor (a mask) is written as JSON by numpy, which lets go of the GIL.
DIGITS = np.frombuffer(
    b"".join(f"{i},".encode().ljust(4, b"\0") for i in range(256)), np.uint8
).reshape(256, 4)


def _json_data(tensor: Tensor) -> bytes:
    """A tensor's elements, flattened, as JSON text. A 4 MP mask is 12 MB of it: 65 ms
    in numpy, where a list through json.dumps holds the GIL (and so the event loop) 300."""
    if tensor.datatype == "BYTES":  # str elements as they are, bytes ones as base64
        items = [b if isinstance(b, str) else base64.b64encode(b).decode() for b in tensor.data]
        return json.dumps(items).encode()
    array = np.asarray(tensor.data)
    if array.dtype == np.uint8:
        chars = DIGITS[array.ravel()].ravel()
        return b"[" + bytes(chars[chars != 0].tobytes())[:-1] + b"]"
    return json.dumps(array.ravel().tolist(), allow_nan=False).encode()  # NaN: not JSON


def _encode(tensor: Tensor, binary: bool) -> tuple[bytes, bytes]:
    """An output's entry in the response's JSON, as JSON text, with its data in it, or
    with its binary data apart."""
    entry: dict[str, Any] = {
        "name": tensor.name,
        "datatype": tensor.datatype,
        "shape": tensor.shape,
    }
    if not binary:
        return json.dumps(entry).encode()[:-1] + b', "data": ' + _json_data(tensor) + b"}", b""
    if tensor.datatype == "BYTES":  # each element as a 4-byte length and its bytes (str: UTF-8)
        items = [b if isinstance(b, bytes) else b.encode() for b in tensor.data]
        raw = b"".join(struct.pack("<I", len(b)) + b for b in items)
    else:
        raw = np.asarray(tensor.data).tobytes()
    entry["parameters"] = {"binary_data_size": len(raw)}
    return json.dumps(entry).encode(), raw


def _explain_options(pipeline: Pipeline, parameters: dict[str, Any]) -> dict[str, Any]:
    """The options of an explained prediction, from the `heatmap` output's parameters,
    checked as the API checks its query's; a 400 when they are wrong or the model can't
    explain its answers."""
    query = {"explain": "true"}
    for name in TARGETS:
        value = parameters.get(name)
        if value is not None and not isinstance(value, str):
            raise invalid(f"The {HEATMAP} output's {name} must be a string: a label or a name.")
        if value is not None:
            query[name] = value
    try:
        return pipeline.options(query)
    except ApiError as exc:
        raise invalid(f"Output {HEATMAP!r}: {exc.message}") from None


def _heatmaps(pipeline: Pipeline, rows: list[Prediction], options: dict[str, Any]) -> Tensor:
    """Each image's map of the output it explains, as the API's `explanation` draws it."""
    pngs = []
    for index, row in enumerate(rows):
        try:
            target, _ = pipeline.kind.explain_target(row.output, options)
        except ApiError as exc:  # a multi-label explain_class that this image didn't pass
            raise invalid(f"{INPUT!r} element {index}: {exc.message}") from None
        pngs.append(png(pipeline.explainer.heatmap(row, target)))
    return Tensor(HEATMAP, "BYTES", [len(rows)], pngs)


def _render(
    pipeline: Pipeline,
    rows: list[Prediction],
    outputs: dict[str, tuple[bool, dict[str, Any]]],
    options: dict[str, Any],
) -> tuple[list[bytes], list[bytes]]:
    """The outputs asked for, encoded: drawn together, so a mask is drawn once however
    many outputs are made from it (the pipeline runs this in the prep pool for a kind
    that draws, or with a heatmap)."""
    kinds = {name: params for name, (_, params) in outputs.items() if name != HEATMAP}
    try:
        made = dict(zip(kinds, pipeline.kind.tensors(kinds, rows), strict=True))
    except ValueError as exc:
        raise invalid(str(exc)) from None
    if HEATMAP in outputs:
        made[HEATMAP] = _heatmaps(pipeline, rows, options)
    tensors = [made[name] for name in outputs]
    binary = [binary for binary, _ in outputs.values()]
    encoded = [_encode(tensor, out) for tensor, out in zip(tensors, binary, strict=True)]
    return [entry for entry, _ in encoded], [raw for _, raw in encoded]


async def infer(request: Request) -> Response:
    """POST /v2/models/{name}/infer."""
    started = time.perf_counter()
    services = _services(request)
    pipeline = services.pipeline
    asked = read(
        await request.body(),
        request.headers.get(HEADER_LENGTH),
        [output["name"] for output in pipeline.kind.outputs()],
        services.settings.max_batch_items,
        optional=[HEATMAP],  # refused below, saying why, by a model that can't explain
    )
    images, outputs = asked.images, asked.outputs
    explain = HEATMAP in outputs
    options = _explain_options(pipeline, outputs[HEATMAP][1]) if explain else {}

    async def predict() -> tuple[list[bytes], list[bytes]]:
        async with services.admission.admit(len(images)) as slots:  # a slot an image
            one = functools.partial(pipeline.predict, explain=explain)
            rows = await slots.map(one, images, return_exceptions=True)
            for index, row in enumerate(rows):
                if isinstance(row, ApiError):
                    raise invalid(f"{INPUT!r} element {index}: {row.message}")
                if isinstance(row, BaseException):
                    raise row
            return await pipeline.draw(_render, pipeline, rows, outputs, options, drawing=explain)

    entries, blobs = await until_disconnect(request, predict())
    body = {
        "model_name": services.settings.model_name,
        "model_version": VERSION,
        "parameters": {"elapsed_ms": elapsed_ms(started)},
    }
    if asked.id is not None:
        body["id"] = asked.id
    head = json.dumps(body).encode()[:-1] + b', "outputs": [' + b", ".join(entries) + b"]}"
    if not any(blobs):
        return Response(head, media_type="application/json")
    return Response(
        head + b"".join(blobs),
        media_type="application/octet-stream",
        headers={HEADER_LENGTH: str(len(head))},
    )


def render(request: Request, error: ApiError, headers: dict[str, str]) -> Response:
    """The protocol's error shape."""
    return JSONResponse({"error": error.message}, status_code=error.status, headers=headers)


ROUTES = [
    Route("/health/live", server_live, methods=["GET"]),
    Route("/health/ready", server_ready, methods=["GET"]),
    Route("/models/{name}", model_metadata, methods=["GET"]),
    Route("/models/{name}/ready", model_ready, methods=["GET"]),
    Route("/models/{name}/infer", infer, methods=["POST"]),
]
app = Starlette(
    routes=ROUTES,
    middleware=[Middleware(Unexpected, render=render)],
    exception_handlers=exception_handlers(render),
)
# What the route table mounts: the protocol's own app at /v2, and /v2 itself (a Mount
# answers only below its path; GET /v2 can't fail, so needs no error shape of its own).
routes = [
    Route("/v2", server_metadata, methods=["GET"], include_in_schema=False),
    Mount("/v2", app=app),
]
