"""Every error code the app answers with: its status, what it means, and which
requests can get it. The one table: `ApiError` takes its status from here, the
OpenAPI document lists the codes and each operation's statuses from it, and the
tests hold the docs' error table and every raised code to it.
"""

from dataclasses import dataclass

# Which requests can get a code, so each operation documents only its own statuses.
ANY = "any request"
ROUTE = "a path or method the app doesn't serve"
BODY = "a request with a body"
IMAGE = "a request that names an image"
URL = "an image named by URL"
PREDICT = "a prediction"
BATCH = "a batch"
READY = "the readiness check"
INFERENCE = "an Open Inference Protocol request (/v2)"
FEEDBACK = "a correction or confirmation (POST /api/feedback)"
ADMIN = "the feedback's export or summary (ADMIN_TOKEN)"


@dataclass(frozen=True)
class ErrorCode:
    statuses: tuple[int, ...]  # the first is the usual one
    meaning: str
    scope: str | tuple[str, ...]  # which requests can get it (one or several of those above)

    @property
    def status(self) -> int:
        return self.statuses[0]

    @property
    def scopes(self) -> tuple[str, ...]:
        return self.scope if isinstance(self.scope, tuple) else (self.scope,)


ERRORS: dict[str, ErrorCode] = {
    "no_image": ErrorCode(
        (400,), "The request names no image (no `file`, `url` or `image`).", IMAGE
    ),
    "empty_file": ErrorCode((400,), "The uploaded file is empty.", IMAGE),
    "invalid_json": ErrorCode((400,), "The JSON body doesn't parse, or isn't an object.", BODY),
    "invalid_base64": ErrorCode((400,), "`image` is not valid base64.", IMAGE),
    "invalid_url": ErrorCode(
        (400,), "`url` is not an http(s) address, or redirects to no address.", URL
    ),
    "invalid_form": ErrorCode((400,), "The form body doesn't parse.", BODY),
    "invalid_item": ErrorCode((400,), "A batch item is not an object naming an image.", BATCH),
    "bad_request": ErrorCode((400,), "The request is malformed.", ANY),
    "invalid_inference_request": ErrorCode(
        (400,),
        "An Open Inference Protocol request the server can't take; the message says why.",
        INFERENCE,
    ),
    "model_not_found": ErrorCode(
        (404,), "No model of that name is served here (MODEL_NAME).", INFERENCE
    ),
    "not_found": ErrorCode((404,), "There is nothing at this path.", ROUTE),
    "method_not_allowed": ErrorCode((405,), "This path doesn't take that method.", ROUTE),
    "request_timeout": ErrorCode(
        (408,), "The body took over BODY_TIMEOUT, or the headers over HEADER_TIMEOUT.", ANY
    ),
    "unauthorized": ErrorCode(
        (401,),
        "No `Authorization: Bearer` token, or not ADMIN_TOKEN; with WWW-Authenticate.",
        ADMIN,
    ),
    "admin_off": ErrorCode(
        (403,), "No ADMIN_TOKEN is set on the server, so the export and summary are off.", ADMIN
    ),
    "feedback_off": ErrorCode(
        (404,), "Feedback is off on this server (no FEEDBACK_DIR).", (FEEDBACK, ADMIN)
    ),
    "unknown_prediction": ErrorCode(
        (404,),
        "No held answer has that `prediction_id`: never given, past FEEDBACK_HOLD_MINUTES "
        "(or dropped, past FEEDBACK_HOLD_MB), or given by a model served here before.",
        FEEDBACK,
    ),
    "already_answered": ErrorCode(
        (409,), "That prediction was already confirmed or corrected.", FEEDBACK
    ),
    "payload_too_large": ErrorCode(
        (413,),
        "The body, or a fetched image, is over MAX_UPLOAD_MB (a feedback body over 64 KB).",
        (IMAGE, FEEDBACK),
    ),
    "image_too_large": ErrorCode((413,), "The image is over MAX_IMAGE_MEGAPIXELS.", IMAGE),
    "too_many_items": ErrorCode((413,), "The batch has more than MAX_BATCH_ITEMS images.", BATCH),
    "unsupported_media_type": ErrorCode(
        (415,),
        "The file is not an image the server reads (JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC).",
        IMAGE,
    ),
    "unsupported_content_type": ErrorCode(
        (415,), "The request body is not multipart, form or JSON.", BODY
    ),
    "url_not_image": ErrorCode((415,), "The URL answered with something not an image.", URL),
    "corrupt_image": ErrorCode((422,), "The image is truncated or damaged.", IMAGE),
    "invalid_top_k": ErrorCode((422,), "`top_k` is not an integer from 1 to the classes.", PREDICT),
    "invalid_option": ErrorCode(
        (422,),
        "A query option (`explain`, or the kind's: `mask`) has a value it can't take.",
        PREDICT,
    ),
    "explain_not_applicable": ErrorCode(
        (422,),
        "`explain=true` for a keypoints or segmentation model, whose answer is already a "
        "place in the photo.",
        PREDICT,
    ),
    "explain_unavailable": ErrorCode(
        (422,),
        "`explain=true` for a model that can't explain its answers; /api/model's "
        "`explanation.refused` says why.",
        PREDICT,
    ),
    "invalid_explain_target": ErrorCode(
        (422,),
        "`explain_class` names no label the answer can be explained for (a multi-label "
        "model's: a label that passed), or `explain_value` no value of the model.",
        PREDICT,
    ),
    "invalid_feedback": ErrorCode(
        (422,),
        "The feedback is not one the model's kind takes: `prediction_id` with `correct: true`, "
        "or with `label` (single-label), `labels` (multi-label) or `values` (regression).",
        FEEDBACK,
    ),
    "invalid_label": ErrorCode(
        (422,),
        "A label the model doesn't have (FEEDBACK_NEW_LABELS allows new ones: up to 40 "
        "letters, digits, spaces, `-` and `_`), or `values` not the model's count of numbers.",
        FEEDBACK,
    ),
    "feedback_not_applicable": ErrorCode(
        (422,), "The served model is a keypoints or segmentation model: no feedback.", FEEDBACK
    ),
    "url_not_allowed": ErrorCode(
        (422,), "The URL's host is not a public address (ALLOW_PRIVATE_URLS).", URL
    ),
    "url_http_error": ErrorCode(
        (422, 502), "The URL answered an error: 422 for its 4xx, 502 for its 5xx.", URL
    ),
    "too_many_redirects": ErrorCode((422,), "The URL redirected too many times.", URL),
    "headers_too_large": ErrorCode((431,), "The request's headers are over MAX_HEADER_KB.", ANY),
    "internal_error": ErrorCode((500,), "A fault on the server's side, logged with the id.", ANY),
    "url_unreachable": ErrorCode((502,), "The URL's host could not be reached.", URL),
    "url_fetch_failed": ErrorCode((502,), "The URL's answer broke off.", URL),
    "overloaded": ErrorCode(
        (503,), "The queue, or the upload buffer, is full; with Retry-After.", (BODY, PREDICT)
    ),
    "queue_timeout": ErrorCode(
        (503,), "No prediction slot came free within QUEUE_TIMEOUT; with Retry-After.", PREDICT
    ),
    "shutting_down": ErrorCode(
        (503,), "The server is draining to stop; with Retry-After.", PREDICT
    ),
    "not_ready": ErrorCode(
        (503,), "The model is not loaded yet, or the server is stopping.", READY
    ),
    "url_timeout": ErrorCode((504,), "The URL took over URL_TIMEOUT to answer.", URL),
    "feedback_store_full": ErrorCode(
        (507,), "The kept feedback is at FEEDBACK_MAX_MB; nothing was written.", FEEDBACK
    ),
}
RETRY_AFTER = frozenset(("overloaded", "queue_timeout", "shutting_down"))
