"""Reading a fastai export: load_learner, with errors that say what to do."""

import pickle
import types
import warnings
from pathlib import Path

from compiler.torchvision_compat import ensure_torchvision

ensure_torchvision()

from fastai.data.transforms import MultiCategorize  # noqa: E402
from fastai.learner import Learner, load_learner  # noqa: E402
from fastai.losses import BCEWithLogitsLossFlat  # noqa: E402


class CompileError(RuntimeError):
    """The export can't be compiled; the message names the cause and the way forward."""


class _Unpickler(pickle.Unpickler):
    """Turns a missing module into a clear message.

    fastai's `load_learner` swallows ImportError and then fails with an
    unrelated UnboundLocalError, hiding the module the pickle asked for.
    """

    def find_class(self, module: str, name: str) -> type:
        try:
            return super().find_class(module, name)
        except ModuleNotFoundError as exc:
            raise CompileError(
                f"the model needs the Python module {exc.name!r} (for {module}.{name}), "
                "which is not installed: install the package that defines the model's "
                "architecture, at the version it was exported with"
            ) from None


_pickle_module = types.ModuleType("pounce_pickle")
_pickle_module.Unpickler = _Unpickler
_pickle_module.load = pickle.load


def read_learner(path: Path) -> Learner:
    """Unpickle `path`. It runs code from the file: only compile files you trust."""
    try:
        with warnings.catch_warnings():  # its pickle warning: the README says it plainly
            warnings.simplefilter("ignore", UserWarning)
            learn = load_learner(path, cpu=True, pickle_module=_pickle_module)
    except CompileError:
        raise
    except Exception as exc:  # noqa: BLE001 - unpickling can raise anything
        raise CompileError(f"{path} is not a loadable fastai export: {exc}") from None
    vocab = getattr(learn.dls, "vocab", None)
    if vocab is None or len(vocab) == 0 or isinstance(vocab[0], list | tuple):
        raise CompileError("the learner has no flat vocab: it is not an image classifier")
    learn.model.eval()
    return learn


def _decodes_multi_label(learn: Learner) -> bool:
    pipelines = getattr(learn.dls, "tfms", None) or []
    return any(isinstance(tfm, MultiCategorize) for p in pipelines for tfm in getattr(p, "fs", []))


def task(learn: Learner) -> dict:
    """What `learn.predict` decodes: the top class (single-label), or every label whose
    probability passes the loss function's threshold (multi-label, as fastai's
    BCEWithLogitsLossFlat decodes: sigmoid, then `> thresh`)."""
    loss = learn.loss_func
    if type(loss) is BCEWithLogitsLossFlat:
        return {"kind": "multi-label", "threshold": float(loss.thresh)}
    if _decodes_multi_label(learn):
        raise CompileError(
            f"a multi-label learner whose loss function is {type(loss).__name__}: Pounce "
            "compiles multi-label learners trained with BCEWithLogitsLossFlat (fastai's "
            "default for MultiCategoryBlock), whose threshold decides the labels"
        )
    return {"kind": "single-label", "threshold": None}
