"""Schemathesis generates requests from /openapi.json and checks every answer
against the same document: no undocumented status, no body that breaks its
schema, no 5xx but the documented upstream ones.

Requests go through the `client` fixture (the real app, lifespan running),
under the network guard, so URLs it invents are refused before any packet
leaves; that refusal is the 502 `url_unreachable` the API documents.
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.testclient import TestClient

from app.http.openapi import document
from app.inference.model import read_info
from app.kinds import kind_of
from app.main import routes
from tests.helpers import COMPILED

pytestmark = pytest.mark.unit

UPSTREAM_FAILURES = {"url_unreachable", "url_fetch_failed", "url_http_error", "url_timeout"}


# The document /openapi.json serves, built from the same route table.
schema = schemathesis.openapi.from_dict(document(routes, kind_of(read_info(COMPILED))))


def httpx_kwargs(case: schemathesis.Case) -> dict:
    """The case as keyword arguments for the test client (httpx), which takes
    raw bodies as `content` and wants every multipart part as bytes."""
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    kwargs.pop("cookies", None)
    data = kwargs.pop("data", None)
    if isinstance(data, (bytes, str)):
        kwargs["content"] = data
    elif data is not None:
        kwargs["data"] = data
    if kwargs.get("files"):
        parts = []
        for name, value in kwargs["files"]:
            body = value[1] if isinstance(value, tuple) else value
            if not isinstance(body, bytes):
                body = str(body).encode()
            filename = value[0] if isinstance(value, tuple) else None
            parts.append((name, (filename, body, "application/octet-stream")))
        kwargs["files"] = parts
    return kwargs


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: schemathesis.Case, client: TestClient) -> None:
    response = client.request(**httpx_kwargs(case))
    if hasattr(response.request, "read"):
        response.request.read()  # a multipart body streams; schemathesis reads it back
    # What the API promises: every status it answers is documented, every body
    # matches its schema, and the only 5xx are the documented upstream failures.
    case.validate_response(
        response,
        checks=[status_code_conformance, content_type_conformance, response_schema_conformance],
    )
    assert response.status_code < 500 or (
        response.status_code in (502, 504) and response.json()["error"]["code"] in UPSTREAM_FAILURES
    ), response.text
