"""The OpenAPI document as a contract for client generators (app/http/openapi.py): every
operation named, tagged and matched to the route table; bodies required; each
status an operation can answer listed, with its error codes and headers; every
$ref resolves. tests/test_clients.py then generates real clients from it."""

import json

import jsonschema
import pytest
from starlette.testclient import TestClient

from app.error_codes import ERRORS, RETRY_AFTER
from app.http.openapi import BATCH_FORM, OPERATIONS, document
from app.kinds import KINDS
from app.main import routes
from tests.helpers import CAT

pytestmark = pytest.mark.unit


def refs(node: object) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if "$ref" in node else set()
        return found.union(*(refs(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(refs(value) for value in node))
    return set()


def resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        kind, name = node["$ref"].split("/")[2:]
        node = schema["components"][kind][name]
    return node


def test_operations_match_the_route_table(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    documented = {(m.upper(), path) for path, ops in schema["paths"].items() for m in ops}
    assert documented == set(OPERATIONS)
    assert {path for _, path in documented} <= {getattr(route, "path", None) for route in routes}
    ids = [op["operationId"] for ops in schema["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids)) == 9
    assert all(op["tags"] for ops in schema["paths"].values() for op in ops.values())
    assert schema["servers"] and schema["security"] == []
    components = {
        f"#/components/{k}/{n}" for k, entries in schema["components"].items() for n in entries
    }
    assert refs(schema) and refs(schema) <= components


def test_operations_are_named_for_every_kind() -> None:
    """The operations predict, whatever the kind (their ids name generated clients'
    functions); nothing in their names, summaries or tags says they classify."""
    schema = document(routes)
    operations = [op for ops in schema["paths"].values() for op in ops.values()]
    assert {op["operationId"] for op in operations} == {
        *("predict", "predictUrl", "predictBatch", "getModel", "getHealth", "getReadiness"),
        *("postFeedback", "exportFeedback", "getFeedbackSummary"),
    }
    words = [
        schema["info"],
        schema["tags"],
        [(op["summary"], op.get("description")) for op in operations],
    ]
    assert "classif" not in json.dumps(words).lower()


@pytest.mark.parametrize("kind", KINDS.values(), ids=list(KINDS))
def test_each_kind_has_its_own_answer_and_model_schema(kind: type) -> None:
    """A kind's example answer is its own answer and no other kind's; /api/model is one
    schema a kind, each with the kind's own fields beside the compiled file's."""
    schema = document(routes)
    components = schema["components"]
    answer = {**kind.example, "model": "export.pkl", "elapsed_ms": 1.0}
    pascal = "".join(part.capitalize() for part in kind.name.split("-"))
    matched = []
    for branch in components["schemas"]["PredictResponse"]["oneOf"]:
        try:
            jsonschema.validate(answer, {**branch, "components": components})
            matched.append(branch["$ref"])
        except jsonschema.ValidationError:
            pass
    assert matched == [f"#/components/schemas/{pascal}Answer"]
    model = components["schemas"][f"{pascal}Model"]["allOf"]
    assert model[1] == {"$ref": "#/components/schemas/ModelMeta"}
    assert model[0]["properties"]["kind"]["enum"] == [kind.name]
    assert set(model[0]["required"]) == {"kind", *kind.description}
    assert {"$ref": f"#/components/schemas/{pascal}Model"} in components["schemas"]["ModelInfo"][
        "oneOf"
    ]


def test_bodies_are_required_and_sources_are_a_named_one_of(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for path, method in (("/api/predict", "post"), ("/api/predict/batch", "post")):
        assert schema["paths"][path][method]["requestBody"]["required"] is True
    source = schema["components"]["schemas"]["ImageSource"]
    assert source["oneOf"] == [
        {"$ref": "#/components/schemas/UrlSource"},
        {"$ref": "#/components/schemas/Base64Source"},
    ]


def test_top_k_has_bounds_and_a_described_default(client: TestClient) -> None:
    top_k = client.get("/openapi.json").json()["components"]["parameters"]["TopK"]
    assert top_k["schema"] == {"type": "integer", "minimum": 1, "maximum": 1000}
    assert "default" not in top_k["schema"] and "TOP_K" in top_k["description"]


def test_every_status_lists_its_codes_and_headers(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert schema["components"]["schemas"]["ErrorCode"]["enum"] == list(ERRORS)
    post = schema["paths"]["/api/predict"]["post"]["responses"]
    assert {"400", "408", "413", "415", "422", "431", "500", "502", "503", "504"} <= set(post)
    for ops in schema["paths"].values():
        for operation in ops.values():
            for status, response in operation["responses"].items():
                assert "X-Request-ID" in response["headers"], status
                if "application/zip" in response["content"]:  # the feedback's export
                    assert status == "200"
                    continue
                body = response["content"]["application/json"]["schema"]
                if status == "200":
                    assert "example" in response["content"]["application/json"] or body
                    continue
                assert body == {"$ref": "#/components/schemas/Error"}
                codes = response["description"].split(": ", 1)[1].split(", ")
                assert codes and all(int(status) in ERRORS[code].statuses for code in codes)
                assert ("Retry-After" in response["headers"]) == bool(RETRY_AFTER & set(codes))
                assert ("WWW-Authenticate" in response["headers"]) == ("unauthorized" in codes)
    assert set(
        schema["paths"]["/readyz"]["get"]["responses"]["503"]["description"]
        .split(": ")[1]
        .split(", ")
    ) == {"not_ready"}
    assert "503" not in schema["paths"]["/healthz"]["get"]["responses"]
    assert resolve(schema, post["200"])["content"]["application/json"]["example"]["label"]


def test_a_prediction_by_url_can_be_overloaded_too() -> None:
    """The queue's 503 `overloaded` reaches GET predictions as well as bodies' budget."""
    codes = document(routes)["paths"]["/api/predict"]["get"]["responses"]["503"]["description"]
    assert "overloaded" in codes and "queue_timeout" in codes


@pytest.mark.parametrize(
    ("schema", "body"),
    [
        ({"$ref": "#/components/schemas/Base64Source"}, {"image": ""}),
        (BATCH_FORM, {}),
        (BATCH_FORM, {"file": []}),
    ],
)
def test_what_the_api_refuses_the_document_does_not_allow(schema: dict, body: dict) -> None:
    """Bodies the API answers 400 for (an empty base64 image, a batch naming no image)
    are not valid by the document either, so a generated request never is one."""
    components = document(routes)["components"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(body, {**schema, "components": components})


def test_explain_and_its_answer_are_documented_as_served(client: TestClient) -> None:
    """explain, explain_class and explain_value are options of every prediction; the
    answer's `explanation` is the Explanation schema, for the kinds that explain; what
    /api/model and an explained answer say has no field the document leaves out (a
    generated client would keep it aside, untyped). explain_class is a string, not an
    enum of the labels: the default model's "cardigan" and "Cardigan" would be one name
    in a generated Python client, which refuses the document."""
    schema = client.get("/openapi.json").json()
    components = schema["components"]
    parameters = components["parameters"]
    assert parameters["Explain"]["schema"] == {"type": "boolean", "default": False}
    assert parameters["ExplainClass"]["schema"] == parameters["ExplainValue"]["schema"]
    assert parameters["ExplainClass"]["schema"] == {"type": "string"}
    for path, method in (("/api/predict", "get"), ("/api/predict", "post")):
        used = refs(schema["paths"][path][method]["parameters"])
        assert {f"#/components/parameters/Explain{s}" for s in ("", "Class", "Value")} <= used
    assert refs(schema["paths"]["/api/predict/batch"]["post"]["parameters"]) >= {
        "#/components/parameters/Explain"
    }
    explains = {name for name, kind in KINDS.items() if kind.explains}
    assert explains == {"single-label", "multi-label", "regression"}
    for name, kind in KINDS.items():
        answer = components["schemas"][kind.answer_schema()]["properties"]
        assert ("explanation" in answer) == (name in explains), name

    info = client.get("/api/model").json()
    described = components["schemas"]["SingleLabelModel"]["allOf"][0]["properties"]
    assert set(info) <= set(components["schemas"]["ModelMeta"]["properties"]) | set(described)
    assert info["explanation"]["method"] == "recipro-cam"
    photo = CAT.read_bytes()
    answer = client.post("/api/predict?explain=true", files={"file": ("cat.jpg", photo)}).json()
    fields = {**components["schemas"]["Result"]["properties"], "model": 0, "elapsed_ms": 0}
    assert set(answer) <= set(fields) and "explanation" in answer
    explanation = components["schemas"]["Explanation"]
    jsonschema.validate(answer["explanation"], explanation)
    assert set(answer["explanation"]) == set(explanation["properties"])


def test_the_feedback_operations_say_who_may_call_them_and_what_they_take() -> None:
    """The export and the summary need the admin token (an http bearer scheme); a
    feedback body is one of four shapes, and each refusal the table gives a correction or
    the token is listed."""
    schema = document(routes)
    paths, components = schema["paths"], schema["components"]
    assert components["securitySchemes"]["adminToken"] == {
        **components["securitySchemes"]["adminToken"],
        "type": "http",
        "scheme": "bearer",
    }
    for path in ("/api/feedback/export", "/api/feedback/summary"):
        operation = paths[path]["get"]
        assert operation["security"] == [{"adminToken": []}]
        assert {"401", "403", "404"} <= set(operation["responses"])
    post = paths["/api/feedback"]["post"]
    assert "security" not in post
    assert set(post["requestBody"]["content"]) == {"application/json"}  # forms: the page's
    codes = " ".join(r["description"] for r in post["responses"].values())
    for code in ("unknown_prediction", "already_answered", "invalid_label", "feedback_off"):
        assert code in codes
    assert "feedback_store_full" in post["responses"]["507"]["description"]
    shapes = components["schemas"]["Feedback"]["oneOf"]
    body = {"components": components}
    valid = [
        {"prediction_id": "a" * 32, "correct": True},
        {"prediction_id": "a" * 32, "label": "tabby"},
        {"prediction_id": "a" * 32, "labels": []},
        {"prediction_id": "a" * 32, "values": [0.5, 1]},
    ]
    for example, shape in zip(valid, shapes, strict=True):
        jsonschema.validate(example, {**shape, **body})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"prediction_id": "a" * 32, "correct": False}, {**shapes[0], **body})
    meta = components["schemas"]["AnswerMeta"]["properties"]
    assert (
        "prediction_id" in meta
        and "prediction_id" not in components["schemas"]["AnswerMeta"]["required"]
    )
