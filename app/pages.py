"""The HTML pages: the home page, which also shows a result or an error.

They work with no JavaScript: the forms post to /api/predict, which renders
this page for a browser. Settings feed the title and description, so a fork
changes its wording without touching code.
"""

from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.templating import Jinja2Templates

ROOT = Path(__file__).resolve().parent.parent
templates = Jinja2Templates(directory=ROOT / "templates")


def render_page(
    request: Request,
    *,
    result: dict | None = None,
    error: object | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """The home page, with a result or an error in place when there is one."""
    state = request.app.state
    return templates.TemplateResponse(
        request,
        "index.html",
        {
            "settings": state.settings,
            "model": getattr(state, "model_info", None),
            "result": result,
            "error": error,
        },
        status_code=status_code,
    )


async def home(request: Request) -> Response:
    return render_page(request)


async def docs(request: Request) -> Response:
    """Swagger UI for /openapi.json, served from the swagger-ui-bundle package."""
    return templates.TemplateResponse(
        request, "docs.html", {"settings": request.app.state.settings}
    )
