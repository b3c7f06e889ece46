"""compiler/explanation.py (issue 26's groundwork): the split of a network at its global
pooling, found by running it, and Recipro-CAM computed with torch on the learner itself."""

import numpy as np
import pytest
import torch

from tests.helpers import MODEL


def test_the_default_model_splits_at_its_pooling_not_at_a_module_called_twice() -> None:
    from compiler.explanation import find_split
    from compiler.learner import read_learner

    network = read_learner(MODEL).model
    split = find_split(network, torch.zeros(1, 3, 224, 224))
    assert (split.name, split.channels, split.height, split.width) == ("_avg_pooling", 1280, 7, 7)


def test_a_vision_learner_splits_at_its_head_and_its_map_is_recipro_cam(fastai_vision) -> None:
    from app.inference.explanation import normalised
    from compiler.explanation import find_split, masked, recipro_cam_scores

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
    from compiler.explanation import find_split

    network = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(2)
    )
    reason = find_split(network, torch.zeros(1, 3, 16, 16))
    assert isinstance(reason, str) and "\n" not in reason and "global pooling" in reason


@pytest.mark.parametrize("size", [(7, 7), (3, 5)])
def test_a_cells_map_through_average_pooling_is_the_cell_over_the_cells(size) -> None:
    """The shortcut the server can take for an average-pooling head: pooling a map that
    keeps one cell is that cell divided by the number of cells."""
    from compiler.explanation import masked

    features = torch.rand(6, *size, dtype=torch.float64)
    pooled = torch.nn.AdaptiveAvgPool2d(1)(masked(features)).flatten(1)
    cells = features.flatten(1).T / (size[0] * size[1])
    torch.testing.assert_close(pooled, cells)
