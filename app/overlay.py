"""What `python -m app predict --explain DIR` writes: each photo, upright, with the map of
where the network looked drawn over it, for people to look at.

The map is the answer's own `explanation.heatmap` (app/inference/explanation.py draws
it: a palette PNG, more transparent where the network looked less, at the photo's aspect
ratio), stretched to the photo's size and alpha-composited over it at OPACITY, so the
photo still shows where the network looked most. Saved as a JPEG at the photo's size.
"""

import base64
import io
from pathlib import Path
from urllib.parse import urlparse

from PIL import Image

from app.inference.images import open_image, to_rgb

OPACITY = 0.6  # of the map's own alpha: its hottest part leaves 40% of the photo showing
SUFFIX = ".explained.jpg"


def overlaid(photo: bytes, heatmap: str, max_pixels: int) -> Image.Image:
    """The upright photo with the heatmap (a data: URL of a PNG) stretched over it."""
    image = to_rgb(open_image(photo, max_pixels)).convert("RGBA")
    png = base64.b64decode(heatmap.split(",", 1)[1])
    heat = Image.open(io.BytesIO(png)).convert("RGBA").resize(image.size, Image.Resampling.BILINEAR)
    heat.putalpha(heat.getchannel("A").point(lambda a: round(a * OPACITY)))
    return Image.alpha_composite(image, heat).convert("RGB")


def write(photo: bytes, heatmap: str, max_pixels: int, path: Path) -> None:
    """`overlaid` saved as a JPEG at `path`."""
    overlaid(photo, heatmap, max_pixels).save(path, "JPEG", quality=90)


def destinations(sources: list[str], folder: Path) -> dict[str, Path]:
    """Each source's file in `folder`, named from it (`cat.jpg`: `cat.explained.jpg`; a
    URL by its path's last part), numbered where two would share a name, never a source."""
    taken = {Path(source).resolve() for source in sources}
    named = {}
    for source in dict.fromkeys(sources):
        remote = source.startswith(("http://", "https://"))
        stem = Path(urlparse(source).path if remote else source).stem or "image"
        path, count = folder / f"{stem}{SUFFIX}", 1
        while path.resolve() in taken:
            count += 1
            path = folder / f"{stem}-{count}{SUFFIX}"
        taken.add(path.resolve())
        named[source] = path
    return named
