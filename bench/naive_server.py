"""The naive baseline: how the anchor apps serve (cougar-or-not, the course template).

`learn.predict` runs inside the async handler, on the event loop, one image at
a time. Benchmark use only.
"""

import os

from compiler.torchvision_compat import ensure_torchvision

ensure_torchvision()

import uvicorn  # noqa: E402
from fastai.vision.all import PILImage, load_learner  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

learn = load_learner(os.environ.get("MODEL_PATH", "export.pkl"))


async def predict(request: Request) -> JSONResponse:
    form = await request.form()
    data = await form["file"].read()
    label, _, probs = learn.predict(PILImage.create(data))
    return JSONResponse({"label": label, "probability": float(probs.max())})


async def ready(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ready"})


app = Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/readyz", ready)])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")
