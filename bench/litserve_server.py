"""The peer: LitServe serving the same compiled ONNX model with the same preprocessing.

Each request is decoded (Model.decode, as the server decodes it) and
preprocessed (Model.preprocess) in LitServe's decode_request, and run in its batched
predict (Model.infer), in LitServe's inference worker processes. Its settings
come from the environment, so bench/run.py can tune it as LitServe's docs advise:
LITSERVE_WORKERS (workers_per_device), INTRA_OP_THREADS (ONNX Runtime threads per
worker), LITSERVE_MAX_BATCH_SIZE, LITSERVE_BATCH_TIMEOUT (seconds) and
LITSERVE_FAST_QUEUE (true: ZMQ between its processes). It never imports torch.
Benchmark use only.
"""

import os
from pathlib import Path

import litserve as ls
import numpy as np

from app.inference.model import Model
from app.kinds import kind_of
from app.settings import default_of

MAX_PIXELS = int(float(default_of("MAX_IMAGE_MEGAPIXELS")) * 1_000_000)  # the app's


class OnnxAPI(ls.LitAPI):
    def setup(self, device: str) -> None:
        threads = int(os.environ.get("INTRA_OP_THREADS", "1"))
        self.model = Model.load(Path(os.environ["MODEL_PATH"]), threads=threads)
        self.model.warm_up()
        self.kind = kind_of(self.model.info)

    def decode_request(self, request) -> np.ndarray:  # no annotation: LitServe reads them
        """LitServe hands a multipart request over as its parsed form."""
        data = request["file"].file.read()
        return self.model.preprocess(self.model.decode(data, MAX_PIXELS))

    def predict(self, x: list[np.ndarray] | np.ndarray) -> np.ndarray:
        """A list when batching (max_batch_size > 1), one input otherwise."""
        if self.max_batch_size > 1:
            return self.model.infer(x)
        return self.model.infer([x])[0]

    def batch(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return inputs

    def unbatch(self, output: np.ndarray) -> list[np.ndarray]:
        return list(output)

    def encode_response(self, probs: np.ndarray) -> dict:
        top = self.kind.ranked(probs, 1)
        return {"label": top[0]["label"], "probability": top[0]["probability"]}


def main() -> None:
    api = OnnxAPI(
        max_batch_size=int(os.environ.get("LITSERVE_MAX_BATCH_SIZE", "1")),
        batch_timeout=float(os.environ.get("LITSERVE_BATCH_TIMEOUT", "0")),
    )
    server = ls.LitServer(
        api,
        accelerator="cpu",
        workers_per_device=int(os.environ.get("LITSERVE_WORKERS", "1")),
        timeout=60,
        fast_queue=os.environ.get("LITSERVE_FAST_QUEUE") == "true",
    )
    server.run(
        host="127.0.0.1",
        port=int(os.environ["PORT"]),
        log_level="warning",
        generate_client_file=False,
    )


if __name__ == "__main__":
    main()
