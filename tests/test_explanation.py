"""Explanations (issue 26): the split of a network at its global pooling, found by running
it, and Recipro-CAM computed with torch on the learner itself (compiler/explaining/split.py);
where the served map lies on the photo, through the app."""

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from app.main import create_app
from tests.helpers import CAT_CLASSES, COMPILED, MODEL, encode, make_settings, upload


def test_the_default_model_splits_at_its_pooling_not_at_a_module_called_twice() -> None:
    import torch

    from compiler.explaining.split import find_split
    from compiler.learner import read_learner

    network = read_learner(MODEL).model
    split = find_split(network, torch.zeros(1, 3, 224, 224))
    assert (split.name, split.channels, split.height, split.width) == ("_avg_pooling", 1280, 7, 7)


def test_a_vision_learner_splits_at_its_head_and_its_map_is_recipro_cam(fastai_vision) -> None:
    import torch

    from app.inference.explanation import normalised
    from compiler.explaining.split import find_split, masked, recipro_cam_scores

    torch.manual_seed(0)
    body = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=4, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, stride=2, padding=1),
        torch.nn.ReLU(),
    )
    network = torch.nn.Sequential(body, fastai_vision.create_head(16, 3)).eval()
    image = torch.rand(1, 3, 64, 64)
    split = find_split(network, image)
    assert (split.name, split.channels, split.height, split.width) == ("1.0", 16, 8, 8)

    target = 2
    cam = normalised(
        recipro_cam_scores(network, split, image, target, lambda logits: logits.softmax(-1))
    )
    # The same, cell by cell, by hand: the head alone on a map that keeps one cell.
    features = body(image)[0]
    head = network[1]
    with torch.no_grad():
        scores = head(masked(features)).softmax(-1)[:, target].double().numpy()
    expected = (scores - scores.min()) / (scores.max() - scores.min())
    assert cam.shape == (8, 8) and cam.min() == 0 and cam.max() == 1
    np.testing.assert_allclose(cam.ravel(), expected, atol=1e-9)


def test_a_network_without_global_pooling_is_refused_in_one_line() -> None:
    import torch

    from compiler.explaining.split import find_split

    network = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(2)
    )
    reason = find_split(network, torch.zeros(1, 3, 16, 16))
    assert isinstance(reason, str) and "\n" not in reason and "global pooling" in reason


@pytest.mark.parametrize("size", [(7, 7), (3, 5)])
def test_a_cells_map_through_average_pooling_is_the_cell_over_the_cells(size) -> None:
    """The shortcut the server can take for an average-pooling head: pooling a map that
    keeps one cell is that cell divided by the number of cells."""
    import torch

    from compiler.explaining.split import masked

    features = torch.rand(6, *size, dtype=torch.float64)
    pooled = torch.nn.AdaptiveAvgPool2d(1)(masked(features)).flatten(1)
    cells = features.flatten(1).T / (size[0] * size[1])
    torch.testing.assert_close(pooled, cells)


# --- where the served map lies: the default model, through the app -----------------------

# A real photo pasted into a known region of a larger plain canvas: (left, top, right,
# bottom), inside what a centred square crop of the canvas keeps.
CANVAS, REGION = (1200, 800), (640, 420, 960, 720)
# Each Resize, and the size of a cell of the 7 x 7 map on the canvas it gives (the peak
# is a cell's centre: that cell must overlap the region).
PIPELINES = {
    "crop": ({"method": "crop", "pad_mode": "reflection"}, (800 / 7, 800 / 7)),
    "pad": ({"method": "pad", "pad_mode": "zeros"}, (1200 / 7, 1200 / 7)),
    "squish": ({"method": "squish", "pad_mode": "reflection"}, (1200 / 7, 800 / 7)),
}


def pasted(photo: Image.Image) -> Image.Image:
    canvas = Image.new("RGB", CANVAS, (128, 128, 128))
    left, top, right, bottom = REGION
    canvas.paste(photo.resize((right - left, bottom - top), Image.BICUBIC), (left, top))
    return canvas


def resized_as(method: dict, folder: Path) -> Path:
    """The default model's compiled file, its Resize changed to `method` (the graph takes
    224 x 224 whatever the Resize; the server runs the preprocessing from the metadata)."""
    import onnx

    from app.inference.model import METADATA_KEY

    proto = onnx.load(str(COMPILED))
    entry = next(e for e in proto.metadata_props if e.key == METADATA_KEY)
    info = json.loads(entry.value)
    info["preprocessing"]["steps"][0].update(method)
    entry.value = json.dumps(info)
    path = folder / f"export-{method['method']}.onnx"
    onnx.save(proto, str(path))
    return path


def peak(answer: dict, photo_size: tuple[int, int]) -> tuple[float, float]:
    """Where the heatmap is highest, in the upright photo's pixels."""
    data = base64.b64decode(answer["explanation"]["heatmap"].split(",", 1)[1])
    heat = np.asarray(Image.open(io.BytesIO(data)))  # a palette image: values are the map
    row, column = np.unravel_index(int(heat.argmax()), heat.shape)
    return (
        (column + 0.5) * photo_size[0] / heat.shape[1],
        (row + 0.5) * photo_size[1] / heat.shape[0],
    )


@pytest.mark.unit
@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_the_map_peaks_where_the_photo_was_pasted(
    pipeline: str, chelsea: Image.Image, tmp_path: Path
) -> None:
    method, (cell_width, cell_height) = PIPELINES[pipeline]
    settings = make_settings(MODEL_PATH=str(resized_as(method, tmp_path)))
    canvas = pasted(chelsea)
    exif = Image.Exif()
    exif[0x0112] = 6  # the file sideways, its EXIF saying to turn it upright
    sideways = encode(canvas.transpose(Image.Transpose.ROTATE_90), exif=exif, quality=92)
    with TestClient(create_app(settings)) as client:
        for data in (encode(canvas, quality=92), sideways):
            response = client.post("/api/predict?explain=true", files=upload(data))
            assert response.status_code == 200, response.text
            answer = response.json()
            assert answer["label"] in CAT_CLASSES
            assert answer["explanation"]["target"] == answer["label"]
            size = answer["explanation"]["heatmap_size"]
            assert abs(size["width"] / size["height"] - CANVAS[0] / CANVAS[1]) < 0.01
            x, y = peak(answer, CANVAS)
            left, top, right, bottom = REGION
            assert left - cell_width / 2 <= x <= right + cell_width / 2, (pipeline, x, y)
            assert top - cell_height / 2 <= y <= bottom + cell_height / 2, (pipeline, x, y)


@pytest.mark.unit
@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_a_cell_is_drawn_where_the_preprocessing_took_it_from(pipeline: str) -> None:
    """The map through the crop, pad or squish: a map that is 1 in one cell alone peaks at
    that cell's centre in the photo, worked out here from fastai's Resize by hand."""
    from app.inference.explanation import drawn
    from app.inference.preprocess import Preprocessor

    method, _ = PIPELINES[pipeline]
    step = {"op": "resize", "size": [224, 224], "resample": "bilinear", **method}
    frame = Preprocessor({"mode": "RGB", "size": [224, 224], "steps": [step]}).frame(CANVAS)
    row, column = 1, 5
    cell_map = np.zeros((7, 7))
    cell_map[row, column] = 1
    heat = drawn(cell_map, frame, CANVAS)
    side = {"crop": (800, 800), "pad": (1200, 1200), "squish": CANVAS}[pipeline]
    offset = {"crop": (200, 0), "pad": (0, -200), "squish": (0, 0)}[pipeline]
    expected_x = offset[0] + (column + 0.5) * side[0] / 7
    expected_y = offset[1] + (row + 0.5) * side[1] / 7
    y, x = np.unravel_index(int(heat.argmax()), heat.shape)
    assert heat.max() >= 250 and abs(x + 0.5 - expected_x) <= 1 and abs(y + 0.5 - expected_y) <= 1


def test_two_pools_of_one_map_and_a_map_that_grows_with_the_photo_are_refused() -> None:
    """timm's `catavgmax` pools the map in two sibling modules: replacing one pool's output
    would explain half the head (and the reference would agree, from the same split). A
    learner that takes each photo at its own size has a map, and an explanation's rows,
    that grow with the photo."""
    import torch

    from app.kinds import kind_of
    from compiler.explaining.proof import split_of
    from compiler.explaining.split import find_split

    class CatAvgMax(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.avg, self.max = torch.nn.AdaptiveAvgPool2d(1), torch.nn.AdaptiveMaxPool2d(1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([self.avg(x), self.max(x)], 1).flatten(1)

    network = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), CatAvgMax(), torch.nn.Linear(8, 2))
    reason = find_split(network, torch.zeros(1, 3, 16, 16))
    assert reason == "it pools its last feature map in two modules (1.max, 1.avg), not one"
    single = kind_of({"kind": "single-label", "labels": ["a", "b"]})
    network = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1))
    learner = type("Learner", (), {"model": network})()
    reason = split_of(learner, single, torch.zeros(1, 3, 16, 16), sized=False)
    assert reason == "it takes each photo at its own size, so its map grows with the photo"
