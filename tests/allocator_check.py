"""Decode and preprocess JPEG variants as the server does, in a pool of two threads, and
print a digest of each array (or the error's code): run by tests/test_allocator.py in
processes whose allocator glibc set differently at start, to prove the setting changes
the speed and not the bytes."""

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import skimage.data
from PIL import Image

from app.errors import ApiError
from app.inference.images import ANY_SIZE
from app.inference.model import Model
from tests.helpers import COMPILED, encode


def variants() -> dict[str, bytes]:
    photo = Image.fromarray(skimage.data.astronaut()).resize((1632, 1224), Image.BICUBIC)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: the server turns it upright
    found = {}
    for name, image, options in [
        ("baseline 4:2:0", photo, {}),
        ("progressive 4:4:4", photo, {"progressive": True, "subsampling": 0}),
        ("restart markers", photo, {"restart_marker_rows": 1}),
        ("greyscale", photo.convert("L"), {}),
        ("CMYK", photo.convert("CMYK"), {}),
        ("EXIF-rotated", photo, {"exif": exif}),
    ]:
        found[name] = encode(image, "JPEG", quality=90, **options)
    found["truncated"] = found["baseline 4:2:0"][: len(found["baseline 4:2:0"]) // 2]
    return found


def digest(model: Model, data: bytes) -> str:
    try:
        array = np.ascontiguousarray(model.preprocess(model.decode(data, ANY_SIZE)))
    except ApiError as exc:
        return exc.code
    return hashlib.sha256(array.tobytes()).hexdigest()


def main() -> None:
    model = Model.load(COMPILED)
    photos = variants()
    with ThreadPoolExecutor(2) as pool:  # as the server's decoding threads
        found = pool.map(lambda data: digest(model, data), photos.values())
        digests = dict(zip(photos, found, strict=True))
    print(json.dumps(digests))


if __name__ == "__main__":
    main()
