"""The event loop stays free, and admission counts images, over real HTTP.

A huge photo can be a small upload: a 7000x7000 PNG of one colour is about 160 KB
and 49 megapixels, most of a second to decode. The page's answer for a model that
draws on the photo decodes it again for the page's copy, and a segmentation model
draws a mask for every answer; if either ran on the event loop, every other
request, /healthz included, would wait behind it.
"""

import base64
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.main import create_app
from tests.corpus.compiled import Corpus
from tests.helpers import HTML, encode, make_settings
from tests.live import multipart, multipart_files, request, serve, serve_app

SIDE = 7000  # 49 MP: under MAX_IMAGE_MEGAPIXELS' 50


@pytest.fixture(scope="module")
def huge_png() -> bytes:
    """49 MP of one colour: about 160 KB."""
    return encode(Image.new("RGB", (SIDE, SIDE), (90, 140, 200)), "PNG")


def infer_body(photo: bytes) -> bytes:
    """An Open Inference Protocol request for one photo, asking for every output made
    from its mask, in JSON (the mask itself: 4 MP, 12 MB of JSON)."""
    return json.dumps(
        {
            "inputs": [
                {
                    "name": "images",
                    "datatype": "BYTES",
                    "shape": [1],
                    "data": [base64.b64encode(photo).decode()],
                }
            ],
            "outputs": [{"name": "mask"}, {"name": "mask_png"}, {"name": "areas"}],
        }
    ).encode()


@pytest.mark.slow
@pytest.mark.learners("segmentation", lines=("2.8",))
def test_health_stays_fast_while_huge_photos_are_drawn(
    corpus: Corpus, tmp_path: Path, huge_png: bytes
) -> None:
    """Four clients post the 49 MP PNG for the page (Accept: text/html: the page's copy
    of the photo, and the mask) and two ask /v2 for its mask three ways, all at once,
    while a prober asks /healthz every 10 ms: its p99 stays under 50 ms."""
    built = corpus["2.8", "segmentation"]
    body, headers = multipart(huge_png)
    page = ("/api/predict", body, {**headers, **HTML})
    v2 = (
        "/v2/models/segmentation/infer",
        infer_body(huge_png),
        {"Content-Type": "application/json"},
    )
    latencies: list[float] = []
    done = threading.Event()
    with serve(tmp_path, MODEL_PATH=str(built.onnx)) as live:

        def post(path: str, body: bytes, headers: dict) -> tuple[int, bool]:
            status, payload, _ = request(live.port, "POST", path, body, headers)
            return status, b'src="data:image/jpeg;base64,' in payload  # the page's photo

        def probe() -> None:
            deadline = time.monotonic() + 60  # bounded, whatever happens to the clients
            while not done.is_set() and time.monotonic() < deadline:
                started = time.perf_counter()
                request(live.port, "GET", "/healthz")
                latencies.append(time.perf_counter() - started)
                time.sleep(0.01)

        prober = threading.Thread(target=probe)
        prober.start()
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda args: post(*args), [page] * 4 + [v2] * 2))
        done.set()
        prober.join()
    assert answers == [(200, True)] * 4 + [(200, False)] * 2
    p99 = float(np.percentile(latencies, 99))
    print(
        f"/healthz: {len(latencies)} probes, p50 {np.median(latencies) * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms"
    )
    assert p99 < 0.05, (p99, sorted(latencies)[-10:])


def in_flight(port: int) -> float:
    """The in-flight gauge /metrics shows."""
    text = request(port, "GET", "/metrics")[1].decode()
    return float(re.search(r"^pounce_predictions_in_flight (\S+)$", text, re.M).group(1))


def test_a_batch_holds_a_slot_for_each_image(huge_png: bytes) -> None:
    """With MAX_IN_FLIGHT=2 and no queue, a batch of two huge photos holds both slots
    while it is decoded (the gauge says 2), so a single photo sent meanwhile is 503."""
    app = create_app(make_settings(MAX_IN_FLIGHT="2", MAX_QUEUE="0"))
    with serve_app(app) as port:
        batch: list[int] = []
        thread = threading.Thread(
            target=lambda: batch.append(
                request(port, "POST", "/api/predict/batch", *multipart_files([huge_png] * 2))[0]
            )
        )
        thread.start()
        deadline = time.monotonic() + 30
        while in_flight(port) == 0 and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        seen = in_flight(port)
        single = request(port, "POST", "/api/predict", *multipart(huge_png))
        thread.join()
    assert batch == [200]
    assert seen == 2
    assert single[0] == 503 and json.loads(single[1])["error"]["code"] == "overloaded"
