"""Load a fastai exported learner and predict with it.

`Classifier` keeps the learner's own validation transforms (its item pipeline,
e.g. Resize + ToTensor, and its batch pipeline, e.g. IntToFloatTensor +
Normalize) and calls them directly, skipping the DataLoader machinery that
makes `learn.predict` slow. Same transforms, same network, same activation:
the probabilities match `learn.predict` (the tests hold it to 1e-4), for any
single-label fastai vision classifier.
"""

import hashlib
import pickle
import types
import warnings
from pathlib import Path

from app.torchvision_compat import ensure_torchvision

ensure_torchvision()

import fastai  # noqa: E402
import torch  # noqa: E402
from fastai.data.transforms import Normalize  # noqa: E402
from fastai.learner import Learner, load_learner  # noqa: E402
from fastai.vision.augment import Resize  # noqa: E402
from fastai.vision.core import PILBase, PILImage  # noqa: E402
from fasttransform import Pipeline  # noqa: E402
from PIL import Image  # noqa: E402


class ModelLoadError(RuntimeError):
    """The model file cannot be served; the message says why and what to do."""


class _Unpickler(pickle.Unpickler):
    """Turns a missing module into a clear message.

    fastai's `load_learner` swallows ImportError and then fails with an
    unrelated UnboundLocalError, hiding the module the pickle asked for.
    """

    def find_class(self, module: str, name: str) -> type:
        try:
            return super().find_class(module, name)
        except ModuleNotFoundError as exc:
            raise ModelLoadError(
                f"the model needs the Python module {exc.name!r} (for {module}.{name}), "
                "which is not installed: install the package that defines the model's "
                "architecture, at the version it was exported with"
            ) from None


_pickle_module = types.ModuleType("pounce_pickle")
_pickle_module.Unpickler = _Unpickler
_pickle_module.load = pickle.load


def _find(pipeline, kind: type):
    return next((f for f in pipeline.fs if isinstance(f, kind)), None)


class Classifier:
    """A single-label fastai image classifier, ready to serve."""

    def __init__(self, learn: Learner, path: Path, sha256: str) -> None:
        vocab = getattr(learn.dls, "vocab", None)
        if vocab is None or len(vocab) == 0 or isinstance(vocab[0], (list, tuple)):
            raise ModelLoadError(
                "the learner has no flat vocab: it is not a single-label classifier"
            )
        self.path = path
        self.sha256 = sha256
        self.labels: list[str] = [str(v) for v in vocab]
        # channels-last memory layout: about 10% faster convolutions on CPU here.
        self.model = learn.model.eval().to(memory_format=torch.channels_last)
        self.architecture = type(learn.model).__name__
        self.torchscript = False
        self._activation = getattr(learn.loss_func, "activation", lambda x: x.softmax(dim=-1))
        # What the learner's item pipeline makes its inputs into (recorded by
        # fastai at setup): PILImage for RGB models, PILImageBW for greyscale.
        made = learn.dls.valid_ds.tls[0].types[-1]
        self._image_type = (
            made if isinstance(made, type) and issubclass(made, PILBase) else PILImage
        )
        # The validation pipelines, pinned to split_idx=1 as learn.predict's
        # DataLoader does, so random transforms take their validation form
        # (Resize crops the centre).
        valid = learn.dls.valid
        self._item_tfms = Pipeline(valid.after_item.fs, split_idx=1)
        self._batch_tfms = Pipeline(valid.after_batch.fs, split_idx=1)
        resize = _find(self._item_tfms, Resize)
        self.input_size: list[int] | None = list(resize.size) if resize is not None else None
        # Smallest side worth decoding for this model: twice its input size.
        self.draft_size = 2 * max(self.input_size) if self.input_size else None

    @classmethod
    def load(cls, path: Path, threads: int = 1) -> "Classifier":
        """Unpickle `path`. It runs code from the file: only load files you trust."""
        torch.set_num_threads(threads)
        data = path.read_bytes()
        try:
            with warnings.catch_warnings():  # its pickle warning: the README says it plainly
                warnings.simplefilter("ignore", UserWarning)
                learn = load_learner(path, cpu=True, pickle_module=_pickle_module)
        except ModelLoadError:
            raise
        except Exception as exc:  # noqa: BLE001 - unpickling can raise anything
            raise ModelLoadError(f"{path} is not a loadable fastai export: {exc}") from None
        classifier = cls(learn, path, hashlib.sha256(data).hexdigest())
        classifier.compile()
        return classifier

    @property
    def image_mode(self) -> str:
        return self._image_type._open_args.get("mode", "RGB")

    def warm_up(self) -> None:
        """One prediction, so the first request doesn't pay for lazy initialisation."""
        self.predict_batch([self._example()])

    def _example(self, colour: int = 127) -> torch.Tensor:
        return self.preprocess(Image.new("RGB", (256, 192), (colour, 64, 255 - colour)))

    def compile(self) -> bool:
        """Swap the network for a TorchScript trace, frozen: batch norms fold into
        the convolutions and Python's per-layer dispatch goes, about 20% faster on
        CPU here. The trace is checked against the original network on batches of
        other sizes and pixels (a model whose control flow depends on its input
        would differ) and kept only if its probabilities agree to 1e-5; else
        nothing changes.
        """
        batch = self._batch_tfms(torch.stack([self._example(0)]))
        check = self._batch_tfms(torch.stack([self._example(90), self._example(200)]))
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # TracerWarnings about Python-side values
                traced = torch.jit.trace(self.model, batch.as_subclass(torch.Tensor))
                frozen = torch.jit.freeze(traced.eval())
                plain = check.as_subclass(torch.Tensor)
                expected = self._activation(self.model(plain))
                agrees = torch.allclose(self._activation(frozen(plain)), expected, atol=1e-5)
        except Exception:  # noqa: BLE001 - any model that won't trace stays as it is
            return False
        if agrees:
            self.model = frozen
            self.torchscript = True
        return agrees

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """An RGB image to the model's input tensor (thread-safe, runs beside inference)."""
        if image.mode != self.image_mode:
            image = image.convert(self.image_mode)
        return self._item_tfms(self._image_type.create(image))

    @torch.inference_mode()
    def predict_batch(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        """Probabilities, one row per preprocessed input."""
        batch = self._batch_tfms(torch.stack(inputs))
        logits = self.model(batch.as_subclass(torch.Tensor))
        return self._activation(logits).as_subclass(torch.Tensor).float()

    def top_k(self, probs: torch.Tensor, k: int) -> list[dict]:
        values, indices = probs.topk(min(k, len(self.labels)))
        return [
            {"label": self.labels[i], "probability": round(float(v), 6)}
            for v, i in zip(values.tolist(), indices.tolist(), strict=True)
        ]

    def metadata(self) -> dict:
        normalize = _find(self._batch_tfms, Normalize)
        return {
            "file": self.path.name,
            "sha256": self.sha256,
            "architecture": self.architecture,
            "torchscript": self.torchscript,
            "class_count": len(self.labels),
            "classes": self.labels,
            "input_size": self.input_size,
            "image_mode": self.image_mode,
            "normalization": (
                {
                    "mean": normalize.mean.flatten().tolist(),
                    "std": normalize.std.flatten().tolist(),
                }
                if normalize is not None
                else None
            ),
            "fastai_version": fastai.__version__,
            "torch_version": torch.__version__,
        }
