"""The TorchScript baseline: how Pounce served before it compiled to ONNX.

The fastai learner is unpickled in the serving process; its validation item
pipeline (Resize, ToTensor) and batch pipeline (IntToFloatTensor, Normalize),
pinned to split_idx=1 as `learn.predict`'s DataLoader pins them, run directly;
the network runs as a frozen TorchScript trace in channels-last layout. It
implements app.inference.model.Model's interface, so bench/torchscript_server.py serves
it through the app's own HTTP stack and only the model differs. Tensors stay
tensors (the old code's own types): Predictor only queues what `preprocess`
returns (`infer`), and the served kind (app/kinds/) answers from its rows.
Benchmark use only.
"""

import hashlib
import warnings
from pathlib import Path

from compiler.torchvision_compat import ensure_torchvision

ensure_torchvision()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from fastai.learner import Learner, load_learner  # noqa: E402
from fastai.vision.augment import Resize  # noqa: E402
from fastai.vision.core import PILBase, PILImage  # noqa: E402
from fasttransform import Pipeline  # noqa: E402
from PIL import Image  # noqa: E402

from app.inference.images import decode_image  # noqa: E402
from app.inference.model import EXACT  # noqa: E402
from app.settings import Settings  # noqa: E402


class TorchScriptModel:
    """A single-label fastai image classifier, traced and frozen."""

    def __init__(self, learn: Learner, path: Path) -> None:
        self.path = path
        self.labels: list[str] = [str(v) for v in learn.dls.vocab]
        # What the served model's kind (app/kinds/) reads: its answers are made the same way.
        self.info = {"kind": "single-label", "labels": self.labels, "threshold": None}
        self.architecture = type(learn.model).__name__
        # It explains nothing (the comparison is of plain answers): no graph branch, and no
        # preprocessing frame for app/inference/explanation.py to draw through.
        self.explains = False
        self.preprocessor = None
        self._activation = getattr(learn.loss_func, "activation", lambda x: x.softmax(dim=-1))
        made = learn.dls.valid_ds.tls[0].types[-1]  # PILImage, or PILImageBW for greyscale
        self._image_type = (
            made if isinstance(made, type) and issubclass(made, PILBase) else PILImage
        )
        self.image_mode = self._image_type._open_args.get("mode", "RGB")
        valid = learn.dls.valid
        self._item_tfms = Pipeline(valid.after_item.fs, split_idx=1)
        self._batch_tfms = Pipeline(valid.after_batch.fs, split_idx=1)
        resize = next(f for f in self._item_tfms.fs if isinstance(f, Resize))
        self.input_size = list(resize.size)
        self._network = self._trace(learn.model.eval().to(memory_format=torch.channels_last))

    @classmethod
    def from_settings(cls, settings: Settings) -> "TorchScriptModel":
        """The loader create_app calls: INTRA_OP_THREADS torch threads per inference worker."""
        torch.set_num_threads(settings.intra_op_threads)
        with warnings.catch_warnings():  # fastai's warning about unpickling
            warnings.simplefilter("ignore", UserWarning)
            learn = load_learner(settings.model_path, cpu=True)
        return cls(learn, settings.model_path)

    @property
    def name(self) -> str:
        return self.path.name

    def _example(self, colour: int = 127) -> torch.Tensor:
        return self.preprocess(Image.new("RGB", (256, 192), (colour, 64, 255 - colour)))

    def _trace(self, network: torch.nn.Module) -> torch.jit.ScriptModule:
        """Trace and freeze: batch norms fold into the convolutions and Python's
        per-layer dispatch goes, about 20% faster on CPU than the eager network."""
        batch = self._batch_tfms(torch.stack([self._example()])).as_subclass(torch.Tensor)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings about Python-side values
            return torch.jit.freeze(torch.jit.trace(network, batch).eval())

    def decode(self, data: bytes, max_pixels: int) -> Image.Image:
        """Decoded at full size, as the served default and `learn.predict` decode."""
        return decode_image(data, max_pixels, self.image_mode)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """An RGB image to the network's uint8 CHW input (thread-safe)."""
        if image.mode != self.image_mode:
            image = image.convert(self.image_mode)
        return self._item_tfms(self._image_type.create(image))

    @torch.inference_mode()
    def infer(self, inputs: list[torch.Tensor]) -> np.ndarray:
        """Probabilities, one row per preprocessed input."""
        batch = self._batch_tfms(torch.stack(inputs)).as_subclass(torch.Tensor)
        return self._activation(self._network(batch)).as_subclass(torch.Tensor).float().numpy()

    def warm_up(self) -> None:
        """One prediction, so the first request doesn't pay for lazy initialisation."""
        self.infer([self._example()])

    def metadata(self) -> dict:
        """The keys app/main.py, app/ops/metrics.py and /api/model read."""
        sha256 = hashlib.sha256(self.path.read_bytes()).hexdigest()
        return {
            "file": self.path.name,
            "sha256": sha256,
            "runtime": {"name": "torchscript", "version": torch.__version__},
            "architecture": self.architecture,
            "input_size": self.input_size,
            "image_mode": self.image_mode,
            "decoding": EXACT,
            "source": {"file": self.path.name, "sha256": sha256},
        }
