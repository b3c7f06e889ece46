"""The HTML pages: the home page, which also shows an answer or an error.

They work with no JavaScript: the forms post to /api/predict, which renders this
page for a browser. With JavaScript, static/app.js posts the same forms itself and
asks for the answer's fragment alone (`X-Pounce-Fragment`), which is the same
template the page includes: templates/answer.html, and the kind's partial in
templates/kinds/. So the page has one drawing of each kind's answer, with or without
a script. Settings feed the title and description, so a fork changes its wording
without touching code.

Every URL a page loads, posts to or links to is a path (`url_for` below), never
scheme://host/path: behind a proxy that ends TLS, the server can't know the browser's
scheme unless it trusts the proxy's headers (FORWARDED_ALLOW_IPS), and an http:// URL
in an https page is mixed content the browser blocks. A path needs no such trust.
"""

import base64
import io
from collections.abc import Mapping
from typing import Any

import jinja2
from jinja2.runtime import Context
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.templating import Jinja2Templates

from app.errors import ApiError
from app.inference.images import open_image, to_rgb
from app.pipeline import Pipeline
from app.services import Services
from app.settings import ROOT


@jinja2.pass_context
def url_path_for(context: Context, name: str, /, **path_params: object) -> str:
    """A route's path (under the app's root path), without scheme or host, so the
    browser resolves it against the page's own scheme and host."""
    return str(context["request"].url_for(name, **path_params).path)


@jinja2.pass_context
def absolute_url_for(context: Context, name: str, /, **path_params: object) -> str:
    """A route's whole URL as the server sees it, for text a reader copies (the code
    samples), never for something the page loads: static/app.js puts the browser's own
    in its place."""
    return str(context["request"].url_for(name, **path_params))


templates = Jinja2Templates(directory=ROOT / "templates")
# Starlette's own `url_for` makes absolute URLs from the request's scheme: replaced, so
# every template (and any added later) writes paths.
templates.env.globals["url_for"] = url_path_for
templates.env.globals["absolute_url_for"] = absolute_url_for
FRAGMENT = "X-Pounce-Fragment"  # static/app.js asks for the answer's fragment alone
THUMBNAIL = 960  # the photo a drawn answer (points, a mask) is drawn on, at most, in pixels
# What to try next, shown with the error's own message.
HELP = {
    "payload_too_large": "Try a smaller photo.",
    "image_too_large": "Try a smaller photo.",
    "unsupported_media_type": "Choose a JPEG, PNG, WebP, GIF, BMP, TIFF or HEIC photo.",
    "url_not_allowed": "That address is not on the public internet.",
    "overloaded": "The server is busy. Try again in a moment.",
    "queue_timeout": "The server is busy. Try again in a moment.",
    "request_timeout": "The upload was too slow. Check the connection and try again.",
    "url_timeout": "That address was too slow to answer. Try another, or upload the photo.",
}


def wants_html(request: Request) -> bool:
    """True for browsers: their form posts and page loads ask for text/html."""
    return "text/html" in request.headers.get("accept", "")


def render_page(
    request: Request,
    *,
    result: dict[str, Any] | None = None,
    error: ApiError | None = None,
    photo: str | None = None,
    notice: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """The home page, with an answer, an error or a notice (feedback's thank-you) in
    place when there is one; only that part when the page's script asks for it."""
    services: Services = request.state.services
    fragment = request.headers.get(FRAGMENT) is not None and (result or error or notice)
    return templates.TemplateResponse(
        request,
        "answer.html" if fragment else "index.html",
        {
            "settings": services.settings,
            "model": services.model_info,
            "kind": services.pipeline.kind,
            "result": result,
            "error": error,
            "help": HELP.get(error.code) if error else None,
            "photo": photo,
            "notice": notice,
            "feedback": services.feedback is not None and services.pipeline.kind.corrected_by,
        },
        status_code=status_code,
    )


def page_options(pipeline: Pipeline, query: Mapping[str, str]) -> dict[str, Any]:
    """The request's options for the page: as the API's, but the page explains every
    answer of a model that can (unless asked `explain=false`), so "where did it look?"
    is there once the answer is, with and without the page's script, for about a third
    of a prediction more (docs/api.md)."""
    if "explain" not in query and pipeline.kind.explains and pipeline.model.explains:
        query = {**query, "explain": "true"}
    return pipeline.options(query)


async def page_photo(services: Services, data: bytes, options: dict[str, Any]) -> str | None:
    """The copy of the photo the page draws an answer on, when it draws on the photo (a
    kind's points or mask, or an explanation's map): decoded again, in the prep pool (a
    49 MP PNG takes most of a second), by the caller holding the request's admission slot."""
    if not (services.pipeline.kind.draws_on_photo or options.get("explain")):
        return None
    return await services.pipeline.offload(thumbnail, data, services.settings.max_image_pixels)


def thumbnail(data: bytes, max_pixels: int, side: int = THUMBNAIL) -> str:
    """The upright photo, at most `side` pixels wide or high, as a JPEG data: URL."""
    image = to_rgb(open_image(data, max_pixels, side))
    image.thumbnail((side, side))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


async def home(request: Request) -> Response:
    return render_page(request)


async def docs(request: Request) -> Response:
    """Swagger UI for /openapi.json, served from the swagger-ui-bundle package."""
    return templates.TemplateResponse(
        request, "docs.html", {"settings": request.state.services.settings}
    )
