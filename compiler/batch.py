"""fastai's validation batch transforms as torch modules, which the exporter traces into
the graph (compiler/export.py): IntToFloatTensor, Normalize, and the affine transforms'
and RandomResizedCropGPU's resampling, with fastai's own arithmetic."""

import torch
import torch.nn.functional as F

from compiler.learner import CompileError


class Divide(torch.nn.Module):
    """fastai's IntToFloatTensor: uint8 to float, divided."""

    def __init__(self, op: dict) -> None:
        super().__init__()
        self.by = op["by"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float().div(self.by)


class Normalize(torch.nn.Module):
    """fastai's Normalize, with its own mean and std tensors."""

    def __init__(self, op: dict) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(op["mean"]))
        self.register_buffer("std", torch.tensor(op["std"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _area_matrix(size_in: int, size_out: int) -> torch.Tensor:
    """Adaptive average pooling along one axis as a matrix (torch's bins: floor/ceil)."""
    matrix = torch.zeros(size_out, size_in)
    for i in range(size_out):
        start, end = (i * size_in) // size_out, -((-(i + 1) * size_in) // size_out)
        matrix[i, start:end] = 1 / (end - start)
    return matrix


def fastai_shrink(size_in: tuple[int, int], size_out: tuple[int, int]) -> float:
    """fastai's _grid_sample: `min(x.shape[-2]/coords.shape[-2], x.shape[-1]/coords.shape[-1])/2`,
    whose coords are (batch, height, width, 2): the image's height over the output's width,
    and its width over 2."""
    return min(size_in[0] / size_out[1], size_in[1] / 2) / 2


class Resample(torch.nn.Module):
    """An affine batch transform (Flip, Rotate, Zoom, Warp) at validation: fastai's
    affine_coord with the identity matrix, i.e. grid_sample onto the output size,
    after fastai's area shrink when shrinking more than 2x. The area shrink is
    adaptive average pooling, written as two matrix products so that it exports. With
    `size_in` None (each photo at its own size), the shrink is ResampleOwnSize's."""

    def __init__(self, op: dict, channels: int, size_in: tuple[int, int] | None) -> None:
        super().__init__()
        size_out = tuple(op["size_hw"] or size_in)
        self.mode, self.pad_mode = op["mode"], op["pad_mode"]
        self.align_corners = op["align_corners"]
        identity = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
        grid = F.affine_grid(identity, [1, channels, *size_out], align_corners=self.align_corners)
        self.register_buffer("grid", grid)
        self.register_buffer("rows", None)
        self.register_buffer("cols", None)
        self.zoom = 1 / (grid.max() - grid.min()).item() * 2  # fastai's _grid_sample's
        if self.mode == "bilinear" and size_in is not None:
            shrink = fastai_shrink(size_in, size_out)
            if shrink > 1 and shrink > self.zoom:
                probe = torch.zeros(1, channels, *size_in)
                shrunk = F.interpolate(
                    probe, scale_factor=1 / shrink, mode="area", recompute_scale_factor=True
                ).shape[-2:]
                self.register_buffer("rows", _area_matrix(size_in[0], shrunk[0]))
                self.register_buffer("cols", _area_matrix(size_in[1], shrunk[1]).T)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rows is not None:
            x = self.rows @ x @ self.cols
        grid = self.grid.expand(x.shape[0], -1, -1, -1)
        return F.grid_sample(
            x, grid, mode=self.mode, padding_mode=self.pad_mode, align_corners=self.align_corners
        )


def _area_pool(x: torch.Tensor, dim: int, size_out: torch.Tensor) -> torch.Tensor:
    """Adaptive average pooling along `dim` to `size_out` (a traced integer), for an axis
    whose length is only known when the graph runs: differences of a float64 running
    sum over torch's bins. A bin of one pixel gives that pixel exactly (the sums of
    uint8/255 values are exact in float64), so no shrink is the identity."""
    size_in = torch._shape_as_tensor(x)[dim]
    index = torch.arange(size_out)
    start = index * size_in // size_out
    end = ((index + 1) * size_in + size_out - 1) // size_out
    sums = torch.cumsum(x.double(), dim)
    sums = torch.cat([torch.zeros_like(sums.narrow(dim, 0, 1)), sums], dim)
    counts = (end - start).double().reshape([-1] + [1] * (x.dim() - 1 - dim))
    pooled = (sums.index_select(dim, end) - sums.index_select(dim, start)) / counts
    return pooled.float()


class ResampleOwnSize(torch.nn.Module):
    """Resample for images that reach the batch transforms at their own size (no item
    Resize: the book's head-pose learner): fastai's area shrink, decided and sized from
    each image's own height and width as the graph runs, then the same grid_sample onto
    the output size, whose grid depends on that size alone."""

    def __init__(self, op: dict, channels: int) -> None:
        super().__init__()
        if op["op"] != "resample":
            raise CompileError(
                "RandomResizedCropGPU's crop at validation is sized from the batch, which "
                "needs the item transforms to give every image one size: add Resize"
            )
        if not op["size_hw"]:
            raise CompileError(
                "aug_transforms without a size resample each image onto its own size, which "
                "needs the item transforms to give every image one size: add Resize, or "
                "give aug_transforms a size"
            )
        self.size_out = tuple(op["size_hw"])
        self.resample = Resample(op, channels, None)  # its grid and zoom; no fixed shrink

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample.mode == "bilinear":
            # In float64 throughout, as fastai's Python does it: 1-element tensors, since the
            # exporter would turn 0-dim ones into float32 scalars (427 * (1 / 3.3359375) is
            # 128 in float64 and 127.99999 in float32).
            size_in = torch._shape_as_tensor(x)[2:4].double()
            by = torch.tensor([self.size_out[1], 2], dtype=torch.float64)
            one = torch.ones(1, dtype=torch.float64)
            shrink = (size_in / by).min(0, keepdim=True).values / 2  # fastai_shrink's formula
            shrinking = (shrink > one) & (shrink > self.resample.zoom * one)
            scale = one / shrink  # as F.interpolate(scale_factor=1/d, recompute_scale_factor)
            rows, cols = torch.where(shrinking, torch.floor(size_in * scale), size_in).long()
            x = _area_pool(_area_pool(x, 2, rows), 3, cols)
        return self.resample(x)


def centre_crop(size: tuple[int, int], op: dict) -> tuple[tuple[int, int], tuple[int, int]]:
    """RandomResizedCropGPU's crop at validation, for a batch of `size` (height, width):
    (top, left) and (height, width), with fastai's arithmetic (before_call, split_idx 1)."""
    height, width = size
    low, high = op["ratio"]
    if width / height < low:
        crop = (int(width / low), width)
    elif width / height > high:
        crop = (height, int(height * high))
    else:
        crop = (height, width)
    crop = (int(crop[0] * op["valid_scale"]), int(crop[1] * op["valid_scale"]))
    return ((height - crop[0]) // 2, (width - crop[1]) // 2), crop


class CropResample(torch.nn.Module):
    """RandomResizedCropGPU at validation: the centred crop, then fastai's affine_coord
    onto `size` (the identity grid, reflection padding, corners aligned), as Resample."""

    def __init__(self, op: dict, channels: int, size_in: tuple[int, int]) -> None:
        super().__init__()
        (self.top, self.left), self.crop = centre_crop(size_in, op)
        resample = {"size_hw": op["size_hw"], "mode": op["mode"]}
        resample |= {"pad_mode": "reflection", "align_corners": True}
        self.resample = Resample(resample, channels, self.crop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[..., self.top : self.top + self.crop[0], self.left : self.left + self.crop[1]]
        return self.resample(x)


RESIZING = {"resample": Resample, "crop_resample": CropResample}
