"""compile --fast-decode: large JPEGs decoded at reduced scale, measured against exact.

JPEG's DCT scaling decodes a photo at 1/2, 1/4 or 1/8 of its size (never below twice
the model's input here) for a fraction of the time and memory. The model, which sees a
few hundred pixels, then sees nearly the picture `learn.predict` sees, not the same
one: so it is opt-in, and what it costs is measured here, on held-out phone-size
photos, each decoded both ways through the server's own path. Compiling refuses below
MIN_AGREEMENT of the same decoded answers (as the model's kind compares them), and the
figures go into the compiled file, where /api/model and the page show them.
"""

from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from app.errors import ApiError
from app.inference.images import ANY_SIZE, decode_image
from app.inference.model import Model
from app.kinds import kind_of
from app.settings import EXAMPLES_DIR
from compiler.learner import CompileError
from compiler.parity import PHONE_2MP, PHONE_12MP, encode, phone_photo
from compiler.quantize import agreement_of, photos

MIN_AGREEMENT = 0.99


def phone_photos() -> Iterator[tuple[str, bytes]]:
    """The default held-out set: each example photo as a 2 MP and a 12 MP phone JPEG,
    baseline and progressive, upright and mirrored (none of them in the parity set)."""
    for index, path in enumerate(sorted(EXAMPLES_DIR.glob("*.jpg"))):
        photo = Image.open(path).convert("RGB")
        for size, progressive in ((PHONE_2MP, False), (PHONE_12MP, True)):
            phone = phone_photo(photo, size, seed=100 + index)
            for mirrored in (False, True):
                image = phone.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if mirrored else phone
                name = f"{path.stem} {size[0]}x{size[1]}{' mirrored' if mirrored else ''}"
                yield name, encode(image, "JPEG", quality=90, progressive=progressive)


def _held_out(folder: Path | None) -> Iterator[tuple[str, bytes]]:
    if folder is None:
        yield from phone_photos()
        return
    for path in photos(folder):
        yield path.name, path.read_bytes()


def check_fast_decode(size: list[int] | None) -> None:
    """Refused before anything is compiled: a model that takes each image at its own size
    sees a smaller decode as a different photo."""
    if size is None:
        raise CompileError(
            "--fast-decode needs a model with a fixed input size: this one takes each image "
            "at its own size, so a smaller decode would change what it sees. Serve it exact"
        )


def reduced_decoding(model: Model, holdout: Path | None) -> dict:
    """The decoding record for a model served with reduced-scale JPEG decoding: its
    agreement with exact decoding on the held-out photos; CompileError below MIN_AGREEMENT."""
    draft_size = 2 * max(model.input_size)

    def decoded(name: str, data: bytes, draft: int | None) -> Image.Image:
        try:
            return decode_image(data, ANY_SIZE, model.preprocessor.mode, draft)
        except ApiError as exc:
            raise CompileError(f"cannot read the held-out photo {name}: {exc}") from None

    pairs = []  # only the photos that reduced-scale decoding changes count
    for name, data in _held_out(holdout):
        exact, reduced = decoded(name, data, None), decoded(name, data, draft_size)
        if reduced.size != exact.size:
            answers = (model.infer([model.preprocess(image)])[0] for image in (exact, reduced))
            pairs.append((name, *answers))
    if not pairs:
        raise CompileError(
            "none of the held-out photos is a JPEG large enough to be decoded at reduced "
            f"scale (at least {2 * draft_size} px on its shorter side)"
        )
    figures = agreement_of(kind_of(model.info), pairs)
    if figures["agreement"] < MIN_AGREEMENT:
        raise CompileError(
            "decoding JPEGs at reduced scale gives the exact decoding's answer on "
            f"{figures['same_labels']} of {figures['images']} held-out photos "
            f"({figures['agreement']:.0%}), below the {MIN_AGREEMENT:.0%} required (changed: "
            f"{', '.join(figures['changed'])}): serve it exact"
        )
    return {
        "jpeg": "reduced",
        "draft_size": draft_size,
        "holdout": {"folder": holdout.name if holdout else "phone-size examples", **figures},
        "min_agreement": MIN_AGREEMENT,
    }
