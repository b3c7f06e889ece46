"""Make `import torchvision` work beside the CPU-only torch wheel.

PyPI's torchvision wheel ships compiled ops linked against CUDA. Next to the
CPU build of torch they fail to load, and torchvision then dies at import on
`torch.library.register_fake("torchvision::nms")` because the op's schema was
never defined. fastai only needs torchvision's Python parts, so when (and only
when) the compiled ops are missing we define the two schemas torchvision
registers fakes for and import it again. With a working torchvision build this
module does nothing.
"""

import sys

import torch

# Kept alive for the process: dropping a Library object deregisters its ops.
_schemas: list[torch.library.Library] = []


def ensure_torchvision() -> None:
    """Import torchvision, defining the missing op schemas first if needed."""
    try:
        import torchvision
    except RuntimeError as exc:
        if "torchvision::nms" not in str(exc):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _schemas.append(lib)
        import torchvision  # noqa: F401
