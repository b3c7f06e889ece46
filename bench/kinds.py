"""The other kinds of model, for the benchmark: learners of each, exported as a user
would, untrained (a forward pass costs the same whatever the weights), at the sizes
their kinds typically see. `python -m bench.kinds OUT` writes OUT/<kind>.pkl (fastai is
imported there only: bench/run.py reads KINDS without it).
"""

import sys
from pathlib import Path

# kind: the network and its input, as the benchmark page names them
KINDS = {
    "regression": "resnet18, 224x224, two values",
    "keypoints": "resnet18, 320x240 (the book's head-pose size), two points",
    "segmentation": "unet_learner on resnet18, 256x192 (CamVid's 960x720, quartered)",
}


def learner(kind: str, folder: Path) -> object:
    """A learner of `kind` behind a DataBlock of one sample picture (export drops it)."""
    import numpy as np
    from fastai.vision.all import (
        DataBlock,
        ImageBlock,
        MaskBlock,
        PointBlock,
        RegressionBlock,
        Resize,
        resnet18,
        tensor,
        unet_learner,
        vision_learner,
    )
    from PIL import Image

    sample, mask = folder / "sample.png", folder / "mask.png"
    Image.new("RGB", (64, 48), 127).save(sample)
    Image.new("L", (64, 48), 1).save(mask)
    block, target, size = {  # the target block, the sample's target, (height, width)
        "regression": (RegressionBlock(n_out=2), lambda _: np.array([0.5, 0.5], "f4"), 224),
        "keypoints": (PointBlock, lambda _: tensor([[10.0, 10.0], [20.0, 20.0]]), (240, 320)),
        "segmentation": (MaskBlock(codes=["background", "a", "b"]), lambda _: mask, (192, 256)),
    }[kind]
    dls = DataBlock(
        blocks=(ImageBlock, block),
        get_y=target,
        splitter=lambda items: ([0], [1]),
        item_tfms=Resize(size),
    ).dataloaders([sample, sample], bs=1, num_workers=0)
    if kind == "segmentation":
        return unet_learner(dls, resnet18, pretrained=False)
    y_range = (-1, 1) if kind == "keypoints" else (0, 1)
    return vision_learner(dls, resnet18, pretrained=False, y_range=y_range)


def main(out: Path) -> None:
    from compiler.torchvision_compat import ensure_torchvision

    ensure_torchvision()
    out.mkdir(parents=True, exist_ok=True)
    for kind in KINDS:
        learner(kind, out).export(out / f"{kind}.pkl")
        print(f"exported {out / kind}.pkl", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())
