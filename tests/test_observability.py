"""Request ids, the one error contract, metrics and structured access logs."""

import logging

import pytest
from starlette.testclient import TestClient

from tests.helpers import upload


@pytest.mark.unit
def test_every_response_has_a_request_id(client: TestClient) -> None:
    for response in [client.get("/healthz"), client.get("/nope"), client.get("/api/model")]:
        assert len(response.headers["X-Request-ID"]) == 32


@pytest.mark.unit
def test_sane_client_request_id_is_echoed_in_header_and_error(client: TestClient) -> None:
    response = client.get("/nope", headers={"X-Request-ID": "trace-abc.123"})
    assert response.headers["X-Request-ID"] == "trace-abc.123"
    assert response.json()["error"]["request_id"] == "trace-abc.123"


@pytest.mark.unit
def test_insane_client_request_id_is_replaced(client: TestClient) -> None:
    for bad in ["x" * 500, "evil\r\nSet-Cookie: a=b".replace("\r\n", " "), "<script>"]:
        response = client.get("/nope", headers={"X-Request-ID": bad})
        assert response.headers["X-Request-ID"] != bad
        assert response.json()["error"]["request_id"] == response.headers["X-Request-ID"]


@pytest.mark.unit
def test_errors_carry_code_message_and_request_id(client: TestClient) -> None:
    for response in [
        client.get("/nope"),
        client.delete("/api/predict"),
        client.post("/api/predict", files=upload(b"")),
    ]:
        assert set(response.json()["error"]) == {"code", "message", "request_id"}


@pytest.mark.unit
def test_metrics(client: TestClient, chelsea_jpeg: bytes) -> None:
    client.post("/api/predict", files=upload(chelsea_jpeg))
    client.get("/nope")
    text = client.get("/metrics").text
    assert 'pounce_http_requests_total{method="POST",route="/api/predict",status="200"}' in text
    assert 'pounce_http_requests_total{method="GET",route="unmatched",status="404"}' in text
    for name in [
        "pounce_http_request_duration_seconds_bucket",
        "pounce_queue_wait_seconds_bucket",
        "pounce_inference_seconds_bucket",
        "pounce_batch_size_bucket",
        "pounce_predictions_in_flight",
        "pounce_model_info{",
    ]:
        assert name in text, name


@pytest.mark.unit
def test_one_json_access_log_line_per_request(client: TestClient, caplog) -> None:
    secret_url = "http://user:hunter2@10.0.0.1/cat.jpg"
    with caplog.at_level(logging.INFO, logger="app.access"):
        client.get("/api/predict", params={"url": secret_url}, headers={"X-Request-ID": "r-1"})
    records = [r for r in caplog.records if r.name == "app.access"]
    assert len(records) == 1
    record = records[0]
    assert (record.request_id, record.method, record.route, record.status) == (
        "r-1",
        "GET",
        "/api/predict",
        422,
    )
    assert record.duration_ms >= 0
    logged = " ".join(str(value) for value in vars(record).values())
    assert "hunter2" not in logged and "10.0.0.1" not in logged


@pytest.mark.unit
def test_access_log_formats_as_json() -> None:
    import json

    from pythonjsonlogger.json import JsonFormatter

    from app.ops.logs import logging_config

    formatter_config = logging_config("info")["formatters"]["json"]
    formatter = JsonFormatter(
        formatter_config["fmt"], rename_fields=formatter_config["rename_fields"]
    )
    record = logging.LogRecord("app.access", logging.INFO, __file__, 1, "request", None, None)
    record.request_id, record.status = "abc", 200
    line = json.loads(formatter.format(record))
    assert line["logger"] == "app.access" and line["request_id"] == "abc" and line["status"] == 200
    assert line["level"] == "INFO" and "time" in line


@pytest.mark.unit
def test_a_genuine_server_error_is_logged_with_its_traceback(caplog, chelsea_jpeg: bytes) -> None:
    """A failure of ours stays an ERROR, with its traceback; the client gets the generic
    500 body (a vanished client, by contrast, is an INFO line with 499: test_faults.py)."""
    from app.main import create_app
    from tests.helpers import make_settings

    def broken(inputs: list) -> None:
        raise RuntimeError("the model broke")

    with TestClient(create_app(make_settings()), raise_server_exceptions=False) as client:
        client.app_state["services"].pipeline.model.infer = broken
        with caplog.at_level(logging.INFO):
            response = client.post("/api/predict", files=upload(chelsea_jpeg))
    assert response.status_code == 500 and response.json()["error"]["code"] == "internal_error"
    errors = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert errors and "the model broke" in str(errors[0].exc_info[1])
    assert [r.status for r in caplog.records if r.name == "app.access"] == [500]


@pytest.mark.slow
def test_in_a_terminal_the_logs_are_readable_lines(tmp_path) -> None:
    """LOG_FORMAT=text (what `auto` picks when stderr is a terminal): one readable line a
    record, the access log's fields as key=value, no JSON."""
    from tests.live import request, serve

    with serve(tmp_path, LOG_FORMAT="text") as live:
        request(live.port, "GET", "/healthz", headers={"X-Request-ID": "tty-1"})
        assert live.terminate() == 0
    lines = live.log.read_text().splitlines()
    assert lines and not any(line.startswith("{") for line in lines)
    access = [line for line in lines if "request_id=tty-1" in line]
    assert len(access) == 1 and "INFO" in access[0] and "app.access: request" in access[0]
    assert "route=/healthz" in access[0] and "status=200" in access[0]
