"""Compiling fastai exports: parity with learn.predict is proven on every compile,
for the default model and for learners with other pipelines; what can't be
compiled exactly is refused with a message that names it and says what to do.

The pipelines are translated on a tiny network (tests/learners.py), since the
network is beside their point; the default network is compiled once a run
(`fresh_compile`, tests/conftest.py). fastai and the compiler are imported as the
tests run, never when they are collected (`fastai_vision`).
"""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from app.inference.images import ANY_SIZE
from app.inference.model import METADATA_KEY, Model
from compiler.fastai_lines import export_line, pickled_globals
from tests.graphs import graph_differences
from tests.helpers import COMPILED, MODEL, ROOT


def quiet_compile(source: Path, out: Path) -> dict:
    from compiler.main import compile_file

    return compile_file(source, out, say=lambda line: None)


def tiny(folder: Path, item_tfms: list, batch_tfms: list | None = None) -> Path:
    from tests.learners import tiny_learner

    return tiny_learner(folder, item_tfms, batch_tfms)


def proven(info: dict) -> None:
    from compiler.parity import TOLERANCE

    parity = info["parity"]
    assert parity["images"] >= 20 and parity["same_labels"] == parity["images"]
    assert parity["tolerance"] == TOLERANCE and parity["max_abs_diff"] <= TOLERANCE
    phones = {f"{mp} MP {how}" for mp in (2, 12) for how in ("baseline 4:2:0", "progressive 4:4:4")}
    odd = {"tiny 1x1", "panorama 1200x90", "CMYK", "16-bit", "palette", "transparent"}
    assert phones | odd | {"EXIF-rotated phone photo"} <= set(parity["set"])


def description(path: Path) -> dict:
    proto = onnx.load(path)
    return json.loads(next(p.value for p in proto.metadata_props if p.key == METADATA_KEY))


@pytest.mark.slow
def test_shipped_model_matches_a_fresh_compile(fresh_compile: Path) -> None:
    """export.onnx is what compiling export.pkl gives, on whichever x86-64 CPU runs this:
    the same graph and description, float constants equal within their rounding across
    CPUs (tests/graphs.py), and the same answers within 1e-6. The parity figures are
    re-measured, so only they may differ in the description."""
    from compiler.parity import TOLERANCE, parity_files

    fresh = fresh_compile
    proven(description(fresh))
    assert graph_differences(onnx.load(fresh), onnx.load(COMPILED)) == []
    shipped, compiled = description(COMPILED), description(fresh)
    shipped_parity, fresh_parity = shipped.pop("parity"), compiled.pop("parity")
    assert compiled == shipped
    assert shipped_parity["set"] == fresh_parity["set"]
    assert shipped_parity["max_abs_diff"] <= TOLERANCE
    fresh_model, shipped_model = Model.load(fresh), Model.load(COMPILED)
    for probe in parity_files():
        x = shipped_model.preprocess(shipped_model.decode(probe.file.read_bytes(), ANY_SIZE))
        served = fresh_model.infer([x])[0], shipped_model.infer([x])[0]
        assert np.abs(served[0] - served[1]).max() <= 1e-6, probe.name


@pytest.mark.unit
def test_graph_comparison_sees_more_than_rounding() -> None:
    """The comparison above takes the rounding CPUs differ by, and no more: a weight moved
    past it, or a changed node, is a difference."""
    shipped = onnx.load(COMPILED)
    rounded = onnx.load(COMPILED)  # every float constant 2 ULPs off, as another CPU folds
    for tensor in rounded.graph.initializer:
        values = numpy_helper.to_array(tensor)
        if values.dtype == np.float32:
            up = np.nextafter(np.nextafter(values, np.inf), np.inf)
            tensor.CopyFrom(numpy_helper.from_array(up, tensor.name))
    assert graph_differences(rounded, shipped) == []
    moved = onnx.load(COMPILED)
    weight = next(t for t in moved.graph.initializer if len(t.dims) == 4)
    values = numpy_helper.to_array(weight).copy()
    values.flat[0] += 1e-5 * np.abs(values).max()
    weight.CopyFrom(numpy_helper.from_array(values, weight.name))
    assert len(graph_differences(moved, shipped)) == 1
    renamed = onnx.load(COMPILED)
    renamed.graph.node[0].op_type = "Identity"
    assert graph_differences(renamed, shipped) == [
        "the graphs differ in more than their float constants"
    ]


# Each pipeline, made from `fastai.vision.all` (v) when the test runs.
@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "item_tfms", "steps"),
    [
        (
            "squish",
            lambda v: [v.Resize(224, method="squish")],
            [("resize", "squish", "reflection")],
        ),
        (
            "pad reflection",
            lambda v: [v.Resize(224, method="pad")],
            [("resize", "pad", "reflection")],
        ),
        (
            "pad zeros",
            lambda v: [v.Resize(224, method="pad", pad_mode="zeros")],
            [("resize", "pad", "zeros")],
        ),
        (
            "random resized crop",
            lambda v: [v.RandomResizedCrop(224, min_scale=0.35)],
            [("resize", "squish", "zeros"), ("crop_pad", None, "zeros")],
        ),
        (
            "crop pad then random crop",
            lambda v: [v.CropPad(260, pad_mode="reflection"), v.RandomCrop(224)],
            [("crop_pad", None, "reflection"), ("crop_pad", None, "zeros")],
        ),
    ],
)
def test_pipelines_compile_with_parity(
    fastai_vision, tmp_path: Path, name: str, item_tfms, steps: list
) -> None:
    source = tiny(tmp_path, item_tfms(fastai_vision))
    info = quiet_compile(source, tmp_path / "m.onnx")
    proven(info)
    recorded = info["preprocessing"]["steps"]
    assert [(s["op"], s.get("method"), s["pad_mode"]) for s in recorded] == steps
    assert info["preprocessing"]["size"] == [224, 224]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("item_size", "augment", "shrinks"),
    [
        (224, lambda v: v.aug_transforms(), False),  # the fastai course's usual batch_tfms
        # "presizing": fastai shrinks by area first
        (460, lambda v: v.aug_transforms(size=224), True),
        # fastai decides by the image's height over the output's width, and its width over 2
        # (its coords' last two axes): this one shrinks, where height over height would not.
        (460, lambda v: v.aug_transforms(size=(320, 48)), True),
    ],
)
def test_aug_transforms_compile_with_parity(
    fastai_vision, tmp_path: Path, item_size: int, augment, shrinks: bool
) -> None:
    """Lighting is training-only and left out; the affine transforms resample with the
    identity transform at validation, which the graph does too."""
    v = fastai_vision
    source = tiny(tmp_path, [v.Resize(item_size)], batch_tfms=augment(v))
    info = quiet_compile(source, tmp_path / "m.onnx")
    proven(info)
    assert info["source"]["training_only_steps_left_out"] == ["Brightness"]
    ops = [op["op"] for op in info["graph"]["batch_transforms"]]
    assert ops == ["divide", "resample", "normalize"]
    assert info["preprocessing"]["size"] == [item_size, item_size]
    nodes = onnx.load(tmp_path / "m.onnx").graph.node
    batch_ops = {node.op_type for node in nodes if node.name.startswith("/batch/")}
    assert "GridSample" in batch_ops and ("MatMul" in batch_ops) == shrinks


@pytest.mark.slow
@pytest.mark.parametrize(
    ("item_size", "crop", "crop_hw"),
    [
        # The book's presizing: a square batch, its whole area, resampled (and shrunk first).
        (460, lambda v: v.RandomResizedCropGPU(224, min_scale=0.75, ratio=(1, 1)), (460, 460)),
        # A (height, width) batch wider than `ratio` allows: clamped to 4:3, then 0.875 of it.
        ((200, 400), lambda v: v.RandomResizedCropGPU((120, 160), valid_scale=0.875), (175, 232)),
    ],
)
def test_random_resized_crop_gpu_compiles_with_parity(
    fastai_vision, tmp_path: Path, item_size: object, crop, crop_hw: tuple[int, int]
) -> None:
    """At validation RandomResizedCropGPU takes the centred crop (ratio clamped, scaled by
    valid_scale) and resamples it to its size, as the graph does."""
    from compiler.batch import centre_crop

    crop = crop(fastai_vision)
    source = tiny(tmp_path, [fastai_vision.Resize(item_size)], batch_tfms=[crop])
    info = quiet_compile(source, tmp_path / "m.onnx")
    proven(info)
    op = info["graph"]["batch_transforms"][1]
    assert op["op"] == "crop_resample" and op["size_hw"] == list(crop.size)
    height, width = (item_size, item_size) if isinstance(item_size, int) else item_size
    assert centre_crop((height, width), op)[1] == crop_hw


def test_a_fastai_27_export_needs_its_own_line(tmp_path: Path) -> None:
    """Read in this process (fastai 2.8), a 2.7 export is refused with the way to compile
    it; `python -m compiler` reads it with its own line (tests/test_corpus.py)."""
    from compiler.learner import CompileError

    names = pickled_globals(MODEL)
    assert "fasttransform.transform.Pipeline" in names and export_line(MODEL) == "2.8"
    old = tmp_path / "old.pkl"
    with zipfile.ZipFile(MODEL) as shipped, zipfile.ZipFile(old, "w") as made:
        for item in shipped.infolist():
            data = shipped.read(item)
            if item.filename.endswith("data.pkl"):  # the same bytes, naming 2.7's module
                data = data.replace(b"fasttransform.transform\n", b"fastcore.transform\n")
            made.writestr(item, data)
    assert export_line(old) == "2.7"
    with pytest.raises(CompileError, match=r"made with fastai 2.7 .* `python -m compiler`"):
        quiet_compile(old, tmp_path / "m.onnx")


def test_untranslatable_step_is_refused_by_name(fastai_vision, tmp_path: Path) -> None:
    from compiler.learner import CompileError

    v = fastai_vision
    source = tiny(tmp_path, [v.RatioResize(224), v.Resize(224)])
    with pytest.raises(CompileError, match=r"validation step RatioResize: .*Nothing is approx"):
        quiet_compile(source, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.slow
def test_a_learner_that_cannot_answer_a_parity_image_is_refused(tmp_path: Path) -> None:
    """No Resize and a network with no padding: learn.predict itself fails on a 1x1 photo."""
    from compiler.learner import CompileError

    source = tiny(tmp_path, [])
    with pytest.raises(CompileError, match=r"learn.predict itself fails on .*'tiny 1x1'.*Resize"):
        quiet_compile(source, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def compile_cli(source: Path, out: Path, pythonpath: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run(
        [sys.executable, "-m", "app", "compile", str(source), "-o", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_a_layer_that_will_not_export_is_named_then_fixed(tmp_path: Path) -> None:
    """docs/models.md's path: the error names the layer and the operation; an ONNX form
    registered in the module that defines the layer makes it compile, with parity."""
    from tests.learners import ONNX_FORM, custom_layer_learner

    sys.path.insert(0, str(tmp_path))
    try:
        source = custom_layer_learner(tmp_path, "my_layers")
    finally:
        sys.path.remove(str(tmp_path))
    out = tmp_path / "custom.onnx"
    failed = compile_cli(source, out, pythonpath=tmp_path)
    assert failed.returncode == 1
    message = failed.stderr.strip().splitlines()[-1]
    assert "aten::logaddexp" in message and "`1` (LogCosh)" in message
    assert "symbolic()" in message and "A model that won't compile" in message
    assert "Torch IR graph" not in failed.stderr and not out.exists()

    with (tmp_path / "my_layers.py").open("a") as module:
        module.write(ONNX_FORM)
    fixed = compile_cli(source, out, pythonpath=tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    assert "parity with learn.predict: 20 images" in fixed.stderr
    assert Model.load(out).info["labels"] == ["a", "b", "c"]


@pytest.mark.slow
def test_missing_architecture_module_is_named(tmp_path: Path) -> None:
    """A pickle whose class lives in a module that isn't installed gets a clear error."""
    from compiler.learner import CompileError

    module = tmp_path / "vanished_arch.py"
    module.write_text("import torch\nclass Net(torch.nn.Module):\n    pass\n")
    script = (
        "import sys, torch; sys.path.insert(0, sys.argv[1]); import vanished_arch; "
        "torch.save(vanished_arch.Net(), sys.argv[2])"
    )
    target = tmp_path / "export.pkl"
    subprocess.run([sys.executable, "-c", script, str(tmp_path), str(target)], check=True)
    module.unlink()
    with pytest.raises(CompileError, match=r"'vanished_arch'.*not installed"):
        quiet_compile(target, tmp_path / "m.onnx")


def test_not_a_fastai_export(tmp_path: Path) -> None:
    from compiler.learner import CompileError

    bogus = tmp_path / "export.pkl"
    bogus.write_bytes(b"definitely not a pickle")
    with pytest.raises(CompileError, match="not a loadable fastai export"):
        quiet_compile(bogus, tmp_path / "m.onnx")
