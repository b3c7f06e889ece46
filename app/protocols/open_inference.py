"""The Open Inference Protocol (KServe V2 REST), beside the app's own API, so that
standard clients (tritonclient, KServe, MLServer's) can call Pounce.

One input, `images`: a BYTES tensor of shape [N] holding encoded image files,
sent as JSON `data` in base64 (`"parameters": {"content_type": "base64"}`, as
MLServer sends it) or with the binary tensor data extension (a JSON header of
Inference-Header-Content-Length bytes, then each element as a 4-byte
little-endian length and its bytes). The outputs are the model's kind's
(app/kinds/: a classifier's `probabilities`, FP32 [N, classes], and `labels`,
BYTES [N, k], the top k, k from the output's `classification` parameter), each
in JSON or binary as the request asks. The images go through the same path as
the API's (app/pipeline.py), holding a slot an image as the API's batch does,
cancelled if the client hangs up; body limits and metrics are the middleware's, as
for every route. This module owns its routes and its errors' shape, `{"error": "..."}`:
`routes` are the route table's (app/main.py).
"""

import base64
import binascii
import json
import struct
import time

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from app.errors import ApiError
from app.http.api import elapsed_ms
from app.http.handlers import exception_handlers
from app.kinds import Kind, Prediction, Tensor
from app.limits.disconnect import until_disconnect
from app.services import Services

HEADER_LENGTH = "Inference-Header-Content-Length"
INPUT = "images"
VERSION = "1"


def _invalid(message: str) -> ApiError:
    return ApiError("invalid_inference_request", message)


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


async def model_metadata(request: Request) -> JSONResponse:
    services = _services(request)
    kind = services.pipeline.kind
    return JSONResponse(
        {
            "name": services.settings.model_name,
            "versions": [VERSION],
            "platform": "onnxruntime_onnx",
            "inputs": [{"name": INPUT, "datatype": "BYTES", "shape": [-1]}],
            "outputs": kind.outputs(),
            "parameters": kind.describe(),
        }
    )


async def model_ready(request: Request) -> JSONResponse:
    services = _services(request)
    if not services.ready:
        raise ApiError("not_ready", "The model is not loaded, or the server is stopping.")
    return JSONResponse({"name": services.settings.model_name, "ready": True})


def _split(body: bytes, header_length: str | None) -> tuple[dict, bytes]:
    """The JSON header and the binary data after it (none without the extension)."""
    if header_length is None:
        head, rest = body, b""
    elif header_length.isdigit() and int(header_length) <= len(body):
        head, rest = body[: int(header_length)], body[int(header_length) :]
    else:
        raise _invalid(f"{HEADER_LENGTH} must be the JSON header's length in bytes.")
    try:
        header = json.loads(head)
    except (ValueError, UnicodeDecodeError):
        raise _invalid("The inference request is not valid JSON.") from None
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise _invalid('The inference request needs "inputs", a list.')
    return header, rest


def _elements(raw: bytes) -> list[bytes]:
    """A BYTES tensor's binary form: each element as a 4-byte little-endian length and its bytes."""
    items, pos = [], 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise _invalid(f"The binary data of {INPUT!r} is truncated.")
        (size,) = struct.unpack_from("<I", raw, pos)
        if pos + 4 + size > len(raw):
            raise _invalid(f"The binary data of {INPUT!r} is truncated.")
        items.append(raw[pos + 4 : pos + 4 + size])
        pos += 4 + size
    return items


def _images(header: dict, binary: bytes, max_items: int) -> list[bytes]:
    """The encoded images the request's one input carries."""
    inputs = header["inputs"]
    if len(inputs) != 1 or not isinstance(inputs[0], dict) or inputs[0].get("name") != INPUT:
        raise _invalid(f"Send exactly one input, named {INPUT!r}: a BYTES tensor of image files.")
    tensor = inputs[0]
    shape, parameters = tensor.get("shape"), tensor.get("parameters") or {}
    if tensor.get("datatype") != "BYTES" or not (
        isinstance(shape, list) and len(shape) == 1 and isinstance(shape[0], int)
    ):
        raise _invalid(f"{INPUT!r} must be BYTES with shape [N].")
    if "binary_data_size" in parameters:
        size = parameters["binary_data_size"]
        if not isinstance(size, int) or size != len(binary):
            raise _invalid(f"{INPUT!r}'s binary_data_size does not match the data sent.")
        images = _elements(binary)
    else:
        data = tensor.get("data")
        if not isinstance(data, list) or not all(isinstance(item, str) for item in data):
            raise _invalid(f"{INPUT!r}'s data must be a list of base64 strings.")
        try:
            images = [base64.b64decode(item, validate=True) for item in data]
        except (binascii.Error, ValueError):
            raise _invalid(f"{INPUT!r}'s data must be base64 (content_type base64).") from None
    if len(images) != shape[0]:
        raise _invalid(f"{INPUT!r} has shape [{shape[0]}] but carries {len(images)} elements.")
    if not 1 <= len(images) <= max_items:
        raise _invalid(f"Send from 1 to {max_items} images (MAX_BATCH_ITEMS).")
    return images


def _outputs(header: dict, names: list[str]) -> dict[str, tuple[bool, dict]]:
    """The outputs to send: name -> (binary?, parameters). All the kind's unless the
    request names some."""
    every_binary = bool((header.get("parameters") or {}).get("binary_data_output", False))
    asked = header.get("outputs")
    if asked is None:
        return {name: (every_binary, {}) for name in names}
    if not isinstance(asked, list):
        raise _invalid('"outputs" must be a list.')
    chosen = {}
    for output in asked:
        name = output.get("name") if isinstance(output, dict) else None
        if name not in names:
            raise _invalid(f"Unknown output {name!r}: there are {', '.join(map(repr, names))}.")
        parameters = output.get("parameters") or {}
        chosen[name] = (bool(parameters.get("binary_data", every_binary)), parameters)
    return chosen


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
        return b"[" + chars[chars != 0].tobytes()[:-1] + b"]"
    return json.dumps(array.ravel().tolist()).encode()


def _encode(tensor: Tensor, binary: bool) -> tuple[bytes, bytes]:
    """An output's entry in the response's JSON, as JSON text, with its data in it, or
    with its binary data apart."""
    entry = {"name": tensor.name, "datatype": tensor.datatype, "shape": tensor.shape}
    if not binary:
        return json.dumps(entry).encode()[:-1] + b', "data": ' + _json_data(tensor) + b"}", b""
    if tensor.datatype == "BYTES":  # each element as a 4-byte length and its bytes (str: UTF-8)
        items = [b if isinstance(b, bytes) else b.encode() for b in tensor.data]
        raw = b"".join(struct.pack("<I", len(b)) + b for b in items)
    else:
        raw = np.asarray(tensor.data).tobytes()
    entry["parameters"] = {"binary_data_size": len(raw)}
    return json.dumps(entry).encode(), raw


def _render(
    kind: Kind, rows: list[Prediction], outputs: dict[str, tuple[bool, dict]]
) -> tuple[list[bytes], list[bytes]]:
    """The outputs asked for, encoded: drawn together, so a mask is drawn once however
    many outputs are made from it (the pipeline runs this in the prep pool for a kind
    that draws)."""
    try:
        tensors = kind.tensors({name: params for name, (_, params) in outputs.items()}, rows)
    except ValueError as exc:
        raise _invalid(str(exc)) from None
    binary = [binary for binary, _ in outputs.values()]
    encoded = [_encode(tensor, out) for tensor, out in zip(tensors, binary, strict=True)]
    return [entry for entry, _ in encoded], [raw for _, raw in encoded]


async def infer(request: Request) -> Response:
    """POST /v2/models/{name}/infer."""
    started = time.perf_counter()
    services = _services(request)
    pipeline = services.pipeline
    header, binary = _split(await request.body(), request.headers.get(HEADER_LENGTH))
    images = _images(header, binary, services.settings.max_batch_items)
    outputs = _outputs(header, [output["name"] for output in pipeline.kind.outputs()])

    async def predict() -> tuple[list[bytes], list[bytes]]:
        async with services.admission.admit(len(images)) as slots:  # a slot an image
            rows = await slots.map(pipeline.predict, images, return_exceptions=True)
            for index, row in enumerate(rows):
                if isinstance(row, ApiError):
                    raise _invalid(f"{INPUT!r} element {index}: {row.message}")
                if isinstance(row, BaseException):
                    raise row
            return await pipeline.draw(_render, pipeline.kind, rows, outputs)

    entries, blobs = await until_disconnect(request, predict())
    body = {
        "model_name": services.settings.model_name,
        "model_version": VERSION,
        "parameters": {"elapsed_ms": elapsed_ms(started)},
    }
    if "id" in header:
        body["id"] = header["id"]
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
app = Starlette(routes=ROUTES, exception_handlers=exception_handlers(render))
# What the route table mounts: the protocol's own app at /v2, and /v2 itself (a Mount
# answers only below its path; GET /v2 can't fail, so needs no error shape of its own).
routes = [
    Route("/v2", server_metadata, methods=["GET"], include_in_schema=False),
    Mount("/v2", app=app),
]
