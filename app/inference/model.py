"""A compiled model, served by ONNX Runtime: no torch, no fastai.

A compiled file (`python -m app compile`, compiler/) is one ONNX graph that
takes a batch of uint8 HWC images and returns what `learn.predict` computes
before decoding (its network in fp32, or in INT8 with `compile --int8`): uint8
to float, fastai's IntToFloatTensor and Normalize, the network and the loss
function's activation are all inside it. Its metadata, under the key "pounce",
carries everything else: the kind of model and what it needs (labels, a
threshold: app/kinds/), the preprocessing (run by app/inference/preprocess.py),
where it came from and how closely it matched `learn.predict`.
"""

import json
import os
from pathlib import Path
from typing import Any

# Since 1.29, ONNX Runtime collects usage telemetry on Linux too, keeps an offline store
# under ~/.cache/Microsoft and uploads it to Microsoft. A server that classifies other
# people's photos sends nothing anywhere: this opts out fully, and must be set before
# onnxruntime starts (it is read once, at initialisation).
os.environ["ORT_DISABLE_TELEMETRY"] = "1"

import numpy as np
import onnxruntime as ort
from PIL import Image

from app.inference.images import decode_image
from app.inference.metadata import metadata_props, sha256_of
from app.inference.preprocess import DescriptionError, Preprocessor

METADATA_KEY = "pounce"
FORMAT = 3  # the layout of that metadata; a file of another format is compiled again
# A file that can explain its answers (compiler/explaining/) takes EXPLAIN too, a bool:
# when true, the graph also gives CELLS, each output's score with one cell of the last
# feature map (FEATURES) kept [batch, rows, columns, outputs]; when false, that branch
# doesn't run.
EXPLAIN, FEATURES, CELLS = "explain", "features", "cell_scores"
EXACT: dict[str, Any] = {
    "jpeg": "exact"
}  # the decoding a file records unless compiled with --fast-decode


class ModelLoadError(RuntimeError):
    """The model file cannot be served; the message says why and what to do."""


def session_options(threads: int, arena: bool) -> ort.SessionOptions:
    """One intra-op thread per session by default: on a small CPU, parallel
    single-threaded runs beat one multi-threaded run (docs/benchmarks.md)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.enable_cpu_mem_arena = arena
    # Idle intra-op threads sleep instead of spinning on cores the decoders need.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def read_info(path: Path) -> dict[str, Any]:
    """The compiled file's own description, checked for the parts serving needs,
    without loading the graph."""
    try:
        raw = metadata_props(path).get(METADATA_KEY)
    except OSError as exc:  # ONNX Runtime would only say "system error number 13"
        raise ModelLoadError(f"cannot read {path}: {exc.strerror}") from None
    except (ValueError, UnicodeDecodeError):
        raise ModelLoadError(f"{path} is not an ONNX model") from None
    if raw is None:
        raise ModelLoadError(
            f"{path} has no Pounce metadata: it is an ONNX file, but not one compiled "
            "from a fastai export. Compile the export.pkl: python -m app compile export.pkl"
        )
    try:
        info = json.loads(raw)
    except ValueError:
        info = None
    if not isinstance(info, dict):
        raise ModelLoadError(
            f"{path}'s Pounce metadata is damaged (not a JSON object): compile the export.pkl again"
        )
    if info.get("format") != FORMAT:
        raise ModelLoadError(
            f"{path} was compiled in format {info.get('format')}, this server reads "
            f"format {FORMAT}: compile the export.pkl again"
        )
    return info


class Model:
    """The network and its preprocessing, ready to serve; its kind is app/kinds/'s."""

    def __init__(self, session: ort.InferenceSession, path: Path, info: dict[str, Any]) -> None:
        self.session = session
        self.path = path
        self.info = info
        try:
            self.preprocessor = Preprocessor(info["preprocessing"])
        except DescriptionError as exc:
            raise ModelLoadError(f"{path}: its preprocessing can't be run here: {exc}") from None
        inputs = [node.name for node in session.get_inputs()]
        self._input = inputs[0]
        self._output = session.get_outputs()[0].name
        # Whether the graph carries the explaining head; the metadata says why when not.
        self.explains = EXPLAIN in inputs
        # JPEG decoding at reduced scale only where compile --fast-decode measured it; a
        # file compiled before it existed is decoded exactly, like any other.
        self.decoding: dict[str, Any] = info.get("decoding") or EXACT
        self.draft_size: int | None = self.decoding.get("draft_size")
        # (width, height), or None: each image reaches the network at its own size.
        self.input_size = self.preprocessor.size

    @classmethod
    def load(cls, path: Path, threads: int = 1, arena: bool = True) -> "Model":
        info = read_info(path)
        try:
            session = ort.InferenceSession(
                str(path), session_options(threads, arena), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime's errors have no common base
            raise ModelLoadError(f"{path} is not a loadable ONNX model: {exc}") from None
        return cls(session, path, info)

    @property
    def name(self) -> str:
        """The fastai export it was compiled from, which is what people call the model."""
        return str(self.info["source"]["file"])

    def decode(self, data: bytes, max_pixels: int) -> Image.Image:
        """An encoded image as this model sees it (app/inference/images.py): at full size,
        unless the file was compiled to decode large JPEGs at reduced scale."""
        return decode_image(data, max_pixels, self.preprocessor.mode, self.draft_size)

    def preprocess(self, image: Image.Image) -> np.ndarray:
        """A decoded RGB image to the graph's input (thread-safe, runs beside inference)."""
        return self.preprocessor(image)

    def infer(self, inputs: list[np.ndarray]) -> np.ndarray:
        """The graph's output, one row per preprocessed input. Sessions are thread-safe:
        several workers run this at once."""
        feed = {self._input: np.stack(inputs)}
        if self.explains:
            feed[EXPLAIN] = np.array(False)
        output: np.ndarray = self.session.run([self._output], feed)[0]
        return output

    def explain(self, inputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """`infer`'s output, and each output's score with only one cell of the feature map
        kept [images, rows, columns, outputs] (Recipro-CAM's, app/inference/explanation.py)."""
        feed = {self._input: np.stack(inputs), EXPLAIN: np.array(True)}
        output, cells = self.session.run([self._output, CELLS], feed)
        return output, cells

    def warm_up(self) -> None:
        """One run, so the first request doesn't pay for lazy initialisation."""
        self.infer([self.preprocess(Image.new("RGB", (256, 192), (127, 64, 200)))])

    def metadata(self) -> dict[str, Any]:
        """What /api/model says of the file: the runtime, the compiled file, its source and
        parity (the kind adds its own: app/kinds/)."""
        return {
            "file": self.path.name,
            "sha256": sha256_of(self.path),
            "runtime": {"name": "onnxruntime", "version": ort.__version__},
            "precision": self.info["precision"],
            "architecture": self.info["source"]["architecture"],
            "input_size": list(self.input_size) if self.input_size else None,
            "image_mode": self.preprocessor.mode,
            "preprocessing": self.info["preprocessing"],
            "graph": self.info["graph"],
            "source": self.info["source"],
            "parity": self.info["parity"],
            "quantization": self.info["quantization"],
            "decoding": self.decoding,
            "explanation": self.info["explanation"],
        }
