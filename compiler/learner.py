"""Reading a fastai export: load_learner, with stand-ins for what predicting never uses.

An export pickles references to whatever built its training data: the notebook's
label function (`is_cat`), `get_y`, a splitter, by name in `__main__` or in a
module of the training machine's. Loading it elsewhere fails on them (fastai issues
#2436, #3732) although predicting never calls them. So a name the pickle wants and
this process lacks is given a stand-in that raises if it is ever called, and the
compile says which names it stood in for. A stand-in inside the model itself is not
allowed: the network needs the real code, so the error names the package to install.
An export made on Windows holds `pathlib.WindowsPath`, which can't be made on Linux;
it is read as `PureWindowsPath` (the learner's path is never used to predict).
"""

import pathlib
import pickle
import types
import warnings
from pathlib import Path

from compiler.fastai_lines import export_line, installed_line
from compiler.torchvision_compat import ensure_torchvision

ensure_torchvision()

from fastai.learner import Learner, load_learner  # noqa: E402


class CompileError(RuntimeError):
    """The export can't be compiled; the message names the cause and the way forward."""


class _StandIn(type):
    """The class of stand-ins: calling one says what it stands for."""

    def __call__(cls, *args: object, **kwargs: object) -> None:
        raise RuntimeError(
            f"{cls.__module__}.{cls.__qualname__} is a stand-in: the export pickled it, "
            "this process doesn't have it, and compiling assumed predicting wouldn't call it"
        )


def _stand_in(module: str, name: str, missing_module: str | None) -> type:
    cls = _StandIn(name.rsplit(".", 1)[-1], (), {"__module__": module, "__qualname__": name})
    cls.missing_module = missing_module  # None when the module is there but lacks the name
    return cls


# Python 3.13 pickles paths as pathlib._local's; a Windows path can only be pure here.
_RENAMED = {("pathlib", "WindowsPath"): pathlib.PureWindowsPath}


class _Unpickler(pickle.Unpickler):
    """Stands in for missing names (into `stood_in`), and refuses an export whose model
    needs one."""

    stood_in: list[str]

    def find_class(self, module: str, name: str) -> type:
        module = "pathlib" if module == "pathlib._local" else module
        if (module, name) in _RENAMED:
            return _RENAMED[module, name]
        try:
            return super().find_class(module, name)
        except ModuleNotFoundError as exc:
            missing: str | None = exc.name or module
        except AttributeError:
            missing = None
        self.stood_in.append(f"{module}.{name}")
        return _stand_in(module, name, missing)

    def load(self) -> object:
        loaded = super().load()
        _refuse_stand_ins_in_the_model(getattr(loaded, "model", loaded))
        return loaded


def _pickle_module(stood_in: list[str]) -> types.ModuleType:
    """A pickle module for torch.load whose unpickler records its stand-ins in `stood_in`."""
    module = types.ModuleType("pounce_pickle")
    module.Unpickler = type("Unpickler", (_Unpickler,), {"stood_in": stood_in})
    module.load = pickle.load
    return module


def _refuse_stand_ins_in_the_model(model: object) -> None:
    """Every layer of the network, and what each holds, must be real code."""
    seen, todo = set(), [model]
    while todo:
        item = todo.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        kind = item if isinstance(item, _StandIn) else type(item)
        if isinstance(kind, _StandIn):
            raise CompileError(_needs(kind))
        if isinstance(item, dict):
            todo += list(item.values())
        elif isinstance(item, list | tuple):
            todo += list(item)
        elif isinstance(getattr(item, "__dict__", None), dict):
            todo += list(vars(item).values())


def _needs(stand_in: _StandIn) -> str:
    where = f"{stand_in.__module__}.{stand_in.__qualname__}"
    if stand_in.missing_module:
        return (
            f"the model needs the Python module {stand_in.missing_module!r} (for {where}), "
            "which is not installed: install the package that defines the model's "
            "architecture, at the version it was exported with"
        )
    if stand_in.__module__ == "__main__":
        return (
            f"the model uses {stand_in.__qualname__}, defined in the notebook or script that "
            "trained it (__main__): move it into a module of its own, import it from there, "
            "train or load the learner again, export, and install that module where you compile"
        )
    return (
        f"the model needs {where}, which its module here does not define: install the "
        "version of its package the model was exported with"
    )


def read_learner(path: Path, stood_in: list[str] | None = None) -> Learner:
    """Unpickle `path`, adding the names it stood in for to `stood_in`. It runs code
    from the file: only compile files you trust."""
    line = export_line(path)
    if line is not None and line != installed_line():
        raise CompileError(
            f"{path.name} was made with fastai {line} and this process runs fastai "
            f"{installed_line()}: compile it with `python -m compiler` (or `python -m app "
            "compile`), which reads it with its own line"
        )
    module = _pickle_module([] if stood_in is None else stood_in)
    try:
        with warnings.catch_warnings():  # its pickle warning: the docs say it plainly
            warnings.simplefilter("ignore", UserWarning)
            learn = load_learner(path, cpu=True, pickle_module=module)
    except CompileError:
        raise
    except Exception as exc:  # noqa: BLE001 - unpickling can raise anything
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[-1].strip()
        raise CompileError(f"{path} is not a loadable fastai export: {first}") from None
    if not isinstance(learn, Learner):
        raise CompileError(f"{path} holds a {type(learn).__name__}, not a fastai Learner")
    learn.model.eval()
    return learn
