"""The unit layer: the parts alone, in this process, no server (`pytest -m unit`).

The header protocol is driven as uvicorn's own tests drive theirs, through a
transport that records what it is given; the predictor runs the real compiled
default model; admission, the upload budget and the kinds are plain objects.
"""

import asyncio
import json

import numpy as np
import pytest
from PIL import Image
from uvicorn.config import Config
from uvicorn.server import ServerState

from app.errors import ApiError, Overloaded
from app.inference.model import Model
from app.inference.predictor import Predictor
from app.kinds import Prediction, Tensor, kind_of
from app.limits.admission import Admission
from app.limits.budget import UploadBudget
from app.limits.headers import BoundedHttpToolsProtocol
from app.protocols.open_inference import _encode
from tests.helpers import CAT, CAT_CLASSES, COMPILED

pytestmark = pytest.mark.unit


class Transport:
    """What a protocol writes, and whether it closed the connection."""

    def __init__(self) -> None:
        self.written, self.closed = b"", False

    def get_extra_info(self, name: str) -> object:
        return {"peername": ("127.0.0.1", 9), "sockname": ("127.0.0.1", 8)}.get(name)

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def set_protocol(self, protocol: object) -> None:
        pass


async def app(scope: dict, receive: object, send: object) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def connected(**limits: float) -> tuple[BoundedHttpToolsProtocol, Transport]:
    protocol = BoundedHttpToolsProtocol(
        config=Config(app, lifespan="off", log_config=None),
        server_state=ServerState(),
        app_state={},
        _loop=asyncio.get_running_loop(),
        **limits,
    )
    transport = Transport()
    protocol.connection_made(transport)
    return protocol, transport


def test_headers_over_the_limit_are_answered_431() -> None:
    async def run() -> Transport:
        protocol, transport = await connected(max_header_bytes=1024, header_timeout_s=5)
        protocol.data_received(b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"x" * 2000 + b"\r\n\r\n")
        return transport

    transport = asyncio.run(run())
    assert (
        transport.written.startswith(b"HTTP/1.1 431 ") and b"headers_too_large" in transport.written
    )
    assert transport.closed


def test_headers_that_never_finish_are_answered_408() -> None:
    async def run() -> Transport:
        protocol, transport = await connected(max_header_bytes=1024, header_timeout_s=0.05)
        protocol.data_received(b"GET / HTTP/1.1\r\nHost: a\r\n")  # and nothing more
        await asyncio.sleep(0.2)
        return transport

    transport = asyncio.run(run())
    assert (
        transport.written.startswith(b"HTTP/1.1 408 ") and b"request_timeout" in transport.written
    )


def test_admission_sheds_when_full_and_when_draining() -> None:
    waits: list[float] = []

    async def run() -> list[str]:
        admission = Admission(
            max_in_flight=1, max_queue=0, queue_timeout_s=1, observe_wait=waits.append
        )
        codes = []
        async with admission.admit():
            try:
                async with admission.admit():
                    pass
            except Overloaded as exc:
                codes.append(exc.code)
        admission.draining = True
        try:
            async with admission.admit():
                pass
        except Overloaded as exc:
            codes.append(exc.code)
        return codes

    assert asyncio.run(run()) == ["overloaded", "shutting_down"]
    assert len(waits) == 1 and waits[0] >= 0


def test_admission_holds_a_slot_an_image_in_order_of_arrival() -> None:
    """A request takes a slot for each image; one with more images than there are slots
    takes them all and runs that many at a time (no deadlock); waiting requests are
    served in order, so a big one is not starved by a small one behind it; a request
    that gives up waiting leaves the slots as they were."""
    running, peak, order = 0, 0, []

    async def image(_: int) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1

    async def predict(admission: Admission, name: str, images: int) -> None:
        async with admission.admit(images) as slots:
            order.append((name, admission.in_flight))
            await slots.map(image, range(images))

    async def run() -> tuple[int, int, list[str]]:
        admission = Admission(max_in_flight=2, max_queue=2, queue_timeout_s=5)
        codes = []
        async with admission.admit(1):
            big = asyncio.create_task(predict(admission, "big", 5))  # wants both slots
            await asyncio.sleep(0)
            small = asyncio.create_task(predict(admission, "small", 1))  # one is free
            await asyncio.sleep(0)
            waiting = admission.waiting
            try:
                async with admission.admit(1):
                    pass
            except Overloaded as exc:  # the queue is full
                codes.append(exc.code)
        await asyncio.gather(big, small)
        admission.queue_timeout_s = 0.05
        async with admission.admit(2):
            try:
                async with admission.admit(1):
                    pass
            except Overloaded as exc:
                codes.append(exc.code)
        async with admission.admit(2):
            codes.append(admission.in_flight)
        return waiting, admission.in_flight, codes

    assert asyncio.run(run()) == (2, 0, ["overloaded", "queue_timeout", 2])
    assert order == [("big", 2), ("small", 1)] and peak == 2


@pytest.mark.unit
def test_a_failed_image_waits_for_the_others_and_a_cancelled_waiter_gives_its_place() -> None:
    """No work outlives the slots it ran under: when one image fails with an error of
    ours, the others finish before the error comes out. A request cancelled while it
    waits (its client gone) leaves the queue, and the next in line is served."""
    finished = []

    async def image(index: int) -> None:
        if index == 0:
            raise RuntimeError("a fault of ours")
        await asyncio.sleep(0.02)
        finished.append(index)

    async def run() -> tuple[list[int], int, int, int]:
        admission = Admission(max_in_flight=2, max_queue=2, queue_timeout_s=5)
        try:
            async with admission.admit(3) as slots:
                await slots.map(image, range(3))
        except RuntimeError:
            done = sorted(finished)
        async with admission.admit(2):
            gone = asyncio.create_task(admission.admit(1).__aenter__())
            next_in_line = asyncio.create_task(admission.admit(1).__aenter__())
            await asyncio.sleep(0)
            gone.cancel()
            await asyncio.sleep(0)
            waiting = admission.waiting
        await next_in_line
        return done, waiting, admission.in_flight, admission.waiting

    assert asyncio.run(run()) == ([1, 2], 1, 1, 0)


def test_a_mask_is_drawn_once_for_every_output_made_from_it() -> None:
    """/v2's mask, mask_png and areas of two photos: two masks drawn, not six."""
    resize = {"op": "resize", "size": [8, 8], "method": "squish"}
    resize |= {"pad_mode": "zeros", "resample": "bilinear"}
    info = {
        "kind": "segmentation",
        "classes": ["a", "b"],
        "output": {"shape": [2, 8, 8]},
        "preprocessing": {"mode": "RGB", "size": [8, 8], "steps": [resize]},
    }
    kind = kind_of(info, {"max_mask_pixels": 1e6})
    drawn, mask = [], kind.mask
    kind.mask = lambda prediction: drawn.append(prediction) or mask(prediction)
    outputs = np.random.default_rng(0).random((2, 2, 8, 8)).astype(np.float32)
    predictions = [Prediction(output, (40, 30), (40, 30)) for output in outputs]
    tensors = kind.tensors({"mask": {}, "mask_png": {}, "areas": {}}, predictions)
    assert [(t.name, t.shape) for t in tensors] == [
        ("mask", [2, 30, 40]),
        ("mask_png", [2]),
        ("areas", [2, 2]),
    ]
    assert len(drawn) == 2


def test_a_uint8_tensor_is_written_as_the_json_of_its_values() -> None:
    """/v2 writes a mask's JSON with numpy (app/protocols/open_inference.py): every byte
    value as json.dumps would write it, in order."""
    array = np.arange(256, dtype=np.uint8)[::-1].reshape(2, 8, 16)
    entry, raw = _encode(Tensor("mask", "UINT8", [2, 8, 16], array), binary=False)
    assert raw == b"" and json.loads(entry) == {
        "name": "mask",
        "datatype": "UINT8",
        "shape": [2, 8, 16],
        "data": list(range(255, -1, -1)),
    }


def test_the_upload_budget_counts_bytes_and_gives_them_back() -> None:
    budget = UploadBudget(100)
    first, second = budget.reservation(), budget.reservation()
    first.add(80)
    with pytest.raises(Overloaded):
        second.add(30)
    first.release()
    second.add(30)
    assert budget.used == 30


def test_the_predictor_runs_the_real_model() -> None:
    model = Model.load(COMPILED)
    kind = kind_of(model.info, {"top_k": 3})

    async def run() -> tuple[Prediction, ApiError]:
        predictor = Predictor(
            model, max_pixels=10**7, max_batch=2, max_wait_ms=0, workers=1, prep_threads=1
        )
        await predictor.start()
        try:
            output = await predictor.predict(CAT.read_bytes())
            try:
                await predictor.predict(b"not an image")
            except ApiError as exc:
                return output, exc
        finally:
            await predictor.stop()
        raise AssertionError("a bad image was predicted")

    prediction, error = asyncio.run(run())
    output = prediction.output
    assert output.shape == (1000,) and abs(float(output.sum()) - 1) < 1e-4
    assert prediction.size == prediction.decoded == Image.open(CAT).size
    assert kind.answer(prediction, {"top_k": 3})["label"] in CAT_CLASSES
    assert error.code == "unsupported_media_type"


def prediction(output: object) -> Prediction:
    return Prediction(np.asarray(output), (10, 10), (10, 10))


def test_a_classifier_reads_and_checks_its_options() -> None:
    kind = kind_of(
        {"kind": "single-label", "labels": ["a", "b", "c"], "threshold": None}, {"top_k": 5}
    )
    assert kind.options({}) == {"top_k": 3}  # TOP_K, but no more than the classes
    assert kind.options({"top_k": "2"}) == {"top_k": 2}
    for bad in ("0", "4", "two", "-1"):
        with pytest.raises(ApiError) as caught:
            kind.options({"top_k": bad})
        assert caught.value.code == "invalid_top_k"
    answer = kind.answer(prediction([0.2, 0.7, 0.1]), {"top_k": 2})
    assert answer == {
        "label": "b",
        "probability": 0.7,
        "predictions": [{"label": "b", "probability": 0.7}, {"label": "a", "probability": 0.2}],
    }


def test_a_multi_label_answer_is_fastais_decoding() -> None:
    """Strictly past the threshold, most probable first; every label listed by default."""
    info = {"kind": "multi-label", "labels": ["a", "b", "c"], "threshold": 0.5}
    kind = kind_of(info, {"top_k": 1})
    output = np.array([0.5, 0.9, 0.6])
    assert kind.decide(output) == frozenset({1, 2})
    answer = kind.answer(prediction(output), kind.options({}))
    assert answer["labels"] == ["b", "c"] and len(answer["predictions"]) == 3
    with pytest.raises(ValueError, match="classification must be an integer from 1 to 3"):
        kind.tensor("labels", [prediction(output)], {"classification": 4})
    assert kind.tensor("labels", [prediction(output)], {"classification": 2}).data == ["b", "c"]
