"""An Open Inference Protocol inference request, read and checked: its one input's
images and the outputs it asks for.

The JSON header is decoded straight into the types below with msgspec, so a request of
the wrong shape (a `parameters` that is not an object, a shape that is not a list of
integers, JSON nested a hundred thousand deep) is a 400 naming where it went wrong, by
construction. msgspec was chosen over pydantic for the hot path: one small C extension
(0.7 MB installed; pydantic-core alone is 5.3 MB), and it decodes a request carrying a
2 MP photo in base64 (433 KB) into these types in 0.11 ms, where `json.loads` alone took
0.28 ms; with the base64 decoding, the whole read went from 1.15 to 1.00 ms (Zen 4 EPYC).
"""

import base64
import binascii
import struct
from dataclasses import dataclass
from typing import Any

import msgspec

from app.errors import ApiError
from app.intake.integers import natural

HEADER_LENGTH = "Inference-Header-Content-Length"
INPUT = "images"


class InputParameters(msgspec.Struct, frozen=True):
    binary_data_size: int | None = None  # with the binary tensor data extension
    content_type: str | None = None


class RequestInput(msgspec.Struct):
    name: str
    datatype: str
    shape: list[int]
    data: list[Any] | None = None  # the protocol's; this input's are base64 strings
    parameters: InputParameters | None = None  # null: the defaults, as for no parameters


class OutputFlags(msgspec.Struct):
    """The protocol's own parameter of an output; the rest are the model's kind's."""

    binary_data: bool | None = None


class RequestOutput(msgspec.Struct):
    name: str
    parameters: dict[str, Any] | None = None


class RequestParameters(msgspec.Struct, frozen=True):
    binary_data_output: bool = False


class InferenceRequest(msgspec.Struct):
    inputs: list[RequestInput]
    id: str | None = None
    parameters: RequestParameters | None = None
    outputs: list[RequestOutput] | None = None


@dataclass
class Asked:
    """What a request carries and asks for."""

    images: list[bytes]
    outputs: dict[str, tuple[bool, dict[str, Any]]]  # name -> (binary?, the kind's parameters)
    id: str | None


def invalid(message: str) -> ApiError:
    return ApiError("invalid_inference_request", message)


def _split(body: bytes, header_length: str | None) -> tuple[InferenceRequest, bytes]:
    """The JSON header and the binary data after it (none without the extension)."""
    length = len(body) if header_length is None else natural(header_length)
    if length is None or length > len(body):
        raise invalid(f"{HEADER_LENGTH} must be the JSON header's length in bytes.")
    try:
        header = msgspec.json.decode(body[:length], type=InferenceRequest)
    except msgspec.ValidationError as exc:
        raise invalid(f"The inference request is not what the protocol says: {exc}.") from None
    except msgspec.DecodeError:
        raise invalid("The inference request is not valid JSON.") from None
    except RecursionError:
        raise invalid("The inference request is nested too deeply.") from None
    return header, body[length:]


def _elements(raw: bytes) -> list[bytes]:
    """A BYTES tensor's binary form: each element as a 4-byte little-endian length and its bytes."""
    items, pos = [], 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise invalid(f"The binary data of {INPUT!r} is truncated.")
        (size,) = struct.unpack_from("<I", raw, pos)
        if pos + 4 + size > len(raw):
            raise invalid(f"The binary data of {INPUT!r} is truncated.")
        items.append(raw[pos + 4 : pos + 4 + size])
        pos += 4 + size
    return items


def _images(header: InferenceRequest, binary: bytes, max_items: int) -> list[bytes]:
    """The encoded images the request's one input carries."""
    if len(header.inputs) != 1 or header.inputs[0].name != INPUT:
        raise invalid(f"Send exactly one input, named {INPUT!r}: a BYTES tensor of image files.")
    tensor = header.inputs[0]
    if tensor.datatype != "BYTES" or len(tensor.shape) != 1:
        raise invalid(f"{INPUT!r} must be BYTES with shape [N].")
    size = (tensor.parameters or InputParameters()).binary_data_size
    if size is not None:
        if size != len(binary):
            raise invalid(f"{INPUT!r}'s binary_data_size does not match the data sent.")
        images = _elements(binary)
    elif tensor.data is None or not all(isinstance(item, str) for item in tensor.data):
        raise invalid(f"{INPUT!r}'s data must be a list of base64 strings, or binary data.")
    else:
        try:
            images = [base64.b64decode(item, validate=True) for item in tensor.data]
        except (binascii.Error, ValueError):
            raise invalid(f"{INPUT!r}'s data must be base64 (content_type base64).") from None
    if len(images) != tensor.shape[0]:
        count = len(images)
        raise invalid(f"{INPUT!r} has shape [{tensor.shape[0]}] but carries {count} elements.")
    if not 1 <= len(images) <= max_items:
        raise invalid(f"Send from 1 to {max_items} images (MAX_BATCH_ITEMS).")
    return images


def _outputs(
    header: InferenceRequest, names: list[str], optional: list[str]
) -> dict[str, tuple[bool, dict[str, Any]]]:
    """The outputs to send: all the kind's (`names`) unless the request names some, of
    those or of the `optional` ones (sent only when asked for)."""
    every_binary = (header.parameters or RequestParameters()).binary_data_output
    if header.outputs is None:
        return {name: (every_binary, {}) for name in names}
    chosen = {}
    known = [*names, *optional]
    for output in header.outputs:
        parameters = output.parameters or {}
        if output.name not in known:
            raise invalid(
                f"Unknown output {output.name[:80]!r}: there are {', '.join(map(repr, known))}."
            )
        try:
            flags = msgspec.convert(parameters, OutputFlags)
        except msgspec.ValidationError as exc:
            raise invalid(f"Output {output.name!r}'s parameters: {exc}.") from None
        binary = every_binary if flags.binary_data is None else flags.binary_data
        chosen[output.name] = (binary, parameters)
    return chosen


def read(
    body: bytes,
    header_length: str | None,
    outputs: list[str],
    max_items: int,
    optional: list[str] | None = None,
) -> Asked:
    """The request's images and the outputs it wants, of the kind's `outputs` (or the
    `optional` ones, asked for by name); a 400 `invalid_inference_request` saying what is
    wrong otherwise."""
    header, binary = _split(body, header_length)
    chosen = _outputs(header, outputs, optional or [])
    return Asked(_images(header, binary, max_items), chosen, header.id)
