"""Where the network looked: Recipro-CAM's map of one output, drawn over the photo.

Recipro-CAM (Byun and Lee, 2022; the authors' code, sybyun/ReciproCAM) scores each
cell of the network's last feature map by the output's score when the head runs on a
map that keeps that cell alone (the compiled graph gives those scores, CELLS:
compiler/explaining/), and normalises the scores to 0..1 (min-max, as the authors'
code does): the map says where, relative to the rest of the photo, not how much.

The map is drawn through the preprocessing's crop, pad or squish (the same Frame the
keypoints and masks use), so it lies on the upright photo the person sent: each pixel
of the heatmap takes the map's value where its centre falls, interpolated bilinearly
between the cells' centres (and held at the edge cells' values beyond them, over what
a crop cut away). It is drawn small: MAX_HEATMAP_MEGAPIXELS, keeping the photo's
aspect ratio, since a map of 7 x 7 cells has no detail a bigger image would show (the
page stretches it over the photo). The PNG's pixel values are the map in 0..255, and
its palette colours them (turbo, more transparent where the value is low): one image
for programs and people, as segmentation's masks are.
"""

import base64
import struct
import zlib
from typing import Any

import numpy as np

from app.inference.preprocess import Frame, Preprocessor, scaled_down
from app.kinds.base import Prediction

METHOD = "recipro-cam"
# A map whose scores span less than this part of their size is flat, all zeros: the
# network looked nowhere in particular, and what variation there is lies within float32's
# rounding (normalising it would draw that noise as a map).
FLAT = 1e-4


def normalised(scores: np.ndarray) -> np.ndarray:
    """Scores to 0..1 by their own minimum and maximum; a flat map is all zeros."""
    scores = np.asarray(scores, dtype=np.float64)
    low, high = float(scores.min()), float(scores.max())
    if high - low <= FLAT * max(abs(low), abs(high)) or high - low <= 1e-12:
        return np.zeros_like(scores)
    normal: np.ndarray = (scores - low) / (high - low)
    return normal


def _weights(positions: np.ndarray, cells: int) -> np.ndarray:
    """Bilinear weights [len(positions), cells] of cells centred at 0.5, 1.5, ... for
    positions in cell units, held at the first and last centre beyond them."""
    u = np.clip(positions - 0.5, 0, cells - 1)
    low = np.minimum(np.floor(u).astype(int), max(cells - 2, 0))
    frac = u - low
    weights = np.zeros((len(positions), cells))
    rows = np.arange(len(positions))
    weights[rows, low] = 1 - frac
    if cells > 1:
        weights[rows, low + 1] += frac
    return weights


def drawn(cell_map: np.ndarray, frame: Frame, size: tuple[int, int]) -> np.ndarray:
    """The map [rows, columns] in 0..1 drawn at `size` (width, height) over the photo
    whose frame is `frame`: uint8 [height, width]."""
    rows, columns = cell_map.shape
    x, y = frame.pixel_centres(size)
    across = _weights(x * columns / frame.size[0], columns)
    down = _weights(y * rows / frame.size[1], rows)
    values = down @ cell_map @ across.T
    np.clip(values, 0, 1, out=values)  # in place: a 0.25 MP map's floats are 2 MB a copy
    values *= 255
    heat: np.ndarray = np.rint(values, out=values).astype(np.uint8)
    return heat


def _turbo(x: np.ndarray) -> np.ndarray:
    """Google's Turbo colour map, by its published polynomial approximation (Apache 2.0)."""
    r = 0.13572138 + x * (
        4.6153926 + x * (-42.66032258 + x * (132.13108234 + x * (-152.94239396 + x * 59.28637943)))
    )
    g = 0.09140261 + x * (
        2.19418839 + x * (4.84296658 + x * (-14.18503333 + x * (4.27729857 + x * 2.82956604)))
    )
    b = 0.1066733 + x * (
        12.64194608 + x * (-60.58204836 + x * (110.36276771 + x * (-89.90310912 + x * 27.34824973)))
    )
    return np.rint(np.clip(np.stack([r, g, b], 1), 0, 1) * 255).astype(np.uint8)


LEVELS = np.linspace(0, 1, 256)
PALETTE = _turbo(LEVELS).ravel().tolist()
SIGNATURE = b"\x89PNG\r\n\x1a\n"
ALPHA = bytes(np.rint((0.2 + 0.8 * LEVELS) * 255).astype(np.uint8))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(heat: np.ndarray) -> bytes:
    """The heatmap as a palette PNG: values 0..255, coloured, low values more transparent.

    Written here rather than by Pillow, which never filters a palette image's rows: a map
    is smooth, so each row as differences from its left neighbour (PNG's Sub filter) is
    mostly 0s and 1s, which zlib at level 2 packs smaller (19 against 23 KB for a 0.25 MP
    map) in a quarter of the time Pillow's unfiltered level 6 takes (0.8 against 2.9 ms)."""
    height, width = heat.shape
    rows = np.empty((height, width + 1), np.uint8)
    rows[:, 0] = 1  # each row's filter: Sub
    rows[:, 1] = heat[:, 0]
    np.subtract(heat[:, 1:], heat[:, :-1], out=rows[:, 2:])  # modulo 256, as PNG's is
    header = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)  # 8-bit palette
    return b"".join(
        [
            SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"PLTE", bytes(PALETTE)),
            _chunk(b"tRNS", ALPHA),
            _chunk(b"IDAT", zlib.compress(rows.tobytes(), 2)),
            _chunk(b"IEND", b""),
        ]
    )


class Explainer:
    """A model's explanations: its preprocessing's frame and the heatmaps' size limit."""

    def __init__(self, preprocessor: Preprocessor, max_pixels: float) -> None:
        self.preprocessor = preprocessor
        self.max_pixels = max_pixels

    def heatmap(self, prediction: Prediction, index: int) -> np.ndarray:
        """The map of output `index` over the photo, uint8 [height, width]."""
        assert prediction.cells is not None, "predicted without explain"
        cell_map = normalised(prediction.cells[..., index])
        # The frame of the decoded photo; the heatmap's pixels are the upright photo's.
        frame = self.preprocessor.frame(prediction.decoded)
        return drawn(cell_map, frame, scaled_down(prediction.size, self.max_pixels))

    def explain(self, prediction: Prediction, index: int, target: str) -> dict[str, Any]:
        """The answer's `explanation`."""
        heat = self.heatmap(prediction, index)
        return {
            "method": METHOD,
            "target": target,
            "heatmap": "data:image/png;base64," + base64.b64encode(png(heat)).decode(),
            "heatmap_size": {"width": heat.shape[1], "height": heat.shape[0]},
        }
