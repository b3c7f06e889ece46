"""Batch transforms that resample each photo from its own size (no item Resize: the book's
head-pose learner): compiler/batch.py's graph against fastai's own _grid_sample, and
such a learner compiled with parity."""

from pathlib import Path

import numpy as np
import onnx
import pytest

from tests.test_compile import proven, quiet_compile, tiny

pytestmark = pytest.mark.slow

# (height, width): fastai's area shrink decided both ways, sized on a float64 boundary
# (427 * (1 / 3.3359375) is 128 in float64, 127.99999 in float32), a phone photo, 1x1.
SIZES = [(427, 640), (640, 427), (700, 60), (90, 1200), (1224, 1632), (3000, 4000), (1, 1)]


@pytest.fixture(scope="module", params=[(48, 64), (96, 32)], ids=["wide", "tall"])
def served(fastai_vision, request):
    import onnxruntime as ort
    import torch

    from compiler.batch import ResampleOwnSize
    from compiler.export import INPUT, OUTPUT, _export

    # A tall output is one fastai's formula would shrink to from its own size: only the
    # photo's size may decide it.
    op = {"op": "resample", "size_hw": list(request.param), "mode": "bilinear"}
    resample = ResampleOwnSize(op | {"pad_mode": "reflection", "align_corners": True}, 3)

    class Graph(torch.nn.Module):
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return resample(images.permute(0, 3, 1, 2).float() / 255)

    example = torch.zeros(1, 48, 64, 3, dtype=torch.uint8)
    axes = {INPUT: {0: "batch", 1: "height", 2: "width"}}
    session = ort.InferenceSession(_export(Graph(), (example,), axes, {OUTPUT: {0: "batch"}}))
    return session, resample.resample.grid


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
def test_own_size_resampling_is_fastais(served, size: tuple[int, int]) -> None:
    import torch
    from fastai.vision.augment import _grid_sample

    session, grid = served
    images = torch.randint(0, 256, (1, *size, 3), dtype=torch.uint8, generator=torch.Generator())
    got = session.run(None, {session.get_inputs()[0].name: images.numpy()})[0]
    x = images.permute(0, 3, 1, 2).float() / 255
    expected = _grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=True)
    assert got.shape == (1, 3, *grid.shape[1:3])
    assert np.abs(got - expected.numpy()).max() < 1e-5


def test_batch_transforms_resample_each_photo_from_its_own_size(
    fastai_vision, tmp_path: Path
) -> None:
    """The book's head-pose pipeline: no item Resize, aug_transforms(size=...) resamples
    each photo from its own size, the 12 MP parity photos (shrunk by area first) and the
    1x1 one alike; the graph takes any height and width."""
    v = fastai_vision
    source = tiny(tmp_path, [], batch_tfms=v.aug_transforms(size=(48, 64)))
    info = quiet_compile(source, tmp_path / "m.onnx")
    proven(info)
    assert info["preprocessing"] == {"mode": "RGB", "size": None, "steps": []}
    graph = onnx.load(tmp_path / "m.onnx").graph
    batch_ops = {node.op_type for node in graph.node if node.name.startswith("/batch/")}
    assert {"CumSum", "GridSample"} <= batch_ops
    height, width = graph.input[0].type.tensor_type.shape.dim[1:3]
    assert height.dim_param and width.dim_param  # any size


def test_a_batch_crop_from_each_photos_own_size_is_refused(fastai_vision, tmp_path: Path) -> None:
    from compiler.learner import CompileError

    v = fastai_vision
    source = tiny(tmp_path, [], batch_tfms=[v.RandomResizedCropGPU(64, min_scale=0.75)])
    with pytest.raises(CompileError, match=r"RandomResizedCropGPU's crop .* add Resize"):
        quiet_compile(source, tmp_path / "m.onnx")
