"""The peer: LitServe serving the same network with the same preprocessing.

Decoding and the learner's transforms run in LitServe's decode_request, the
forward pass in its batched predict, with its documented batching settings
(max_batch_size, batch_timeout). Benchmark use only.
"""

import os
from pathlib import Path

import litserve as ls
import torch

from app.images import open_image
from app.model import Classifier

MAX_PIXELS = 50_000_000


class ClassifierAPI(ls.LitAPI):
    def setup(self, device: str) -> None:
        self.classifier = Classifier.load(Path(os.environ.get("MODEL_PATH", "export.pkl")), 2)

    def decode_request(self, request) -> torch.Tensor:  # no annotation: LitServe reads them
        """LitServe hands a multipart request over as its parsed form."""
        data = request["file"].file.read()
        return self.classifier.preprocess(open_image(data, MAX_PIXELS))

    def batch(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        return inputs

    def predict(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return self.classifier.predict_batch(inputs)

    def unbatch(self, output: torch.Tensor) -> list[torch.Tensor]:
        return list(output)

    def encode_response(self, probs: torch.Tensor) -> dict:
        top = self.classifier.top_k(probs, 5)
        return {"label": top[0]["label"], "probability": top[0]["probability"]}


if __name__ == "__main__":
    server = ls.LitServer(
        ClassifierAPI(max_batch_size=8, batch_timeout=0.01),
        accelerator="cpu",
        workers_per_device=1,
        timeout=60,
    )
    server.run(port=int(os.environ["PORT"]), host="127.0.0.1", generate_client_file=False)
