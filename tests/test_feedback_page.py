"""The page's "Was it right?" (issue 27): under an answer that carries a prediction_id, a
"Right" form and a "Wrong, it's..." form posting to /api/feedback. Without JavaScript the
page comes back with the thank-you; with it, static/app.js posts the same form and shows
the thank-you (or the error) in place, the photo and the answer staying. The store is
checked through the API's summary. In a real Chromium (tests/test_browser.py's), against a
real server with FEEDBACK_DIR set, and the page's HTML in this process.
"""

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from app.main import create_app
from tests.helpers import CAT, CAT_CLASSES, HTML, make_settings, upload
from tests.live import Live, request, serve
from tests.test_browser import CHROMIUM, browser, violations  # noqa: F401 (browser: a fixture)

TOKEN = "feedback-page-admin-token"
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")


@pytest.mark.unit
def test_the_answer_asks_was_it_right_when_feedback_is_on(tmp_path: Path) -> None:
    """Both forms name the answer's prediction id; the model's 1,000 labels are the page's
    one datalist, which the answer's fragment (the script's) does without. Feedback off,
    neither is there."""
    with TestClient(create_app(make_settings(FEEDBACK_DIR=str(tmp_path)))) as client:
        page = client.post("/api/predict", files=upload(CAT.read_bytes()), headers=HTML).text
        fragment = client.post(
            "/api/predict",
            files=upload(CAT.read_bytes()),
            headers={**HTML, "X-Pounce-Fragment": "1"},
        ).text
    for html in (page, fragment):
        ids = re.findall(r'name="prediction_id" value="([0-9a-f]{32})"', html)
        assert len(ids) == 2 and ids[0] == ids[1], ids
        assert 'name="correct" value="true"' in html and 'list="model-labels"' in html
        assert "the photo is kept" in html
    datalist = re.search(r'<datalist id="model-labels">(.*?)</datalist>', page).group(1)
    assert datalist.count("<option") == 1000 and "<option>tabby<option>" in datalist
    assert "<datalist" not in fragment
    with TestClient(create_app(make_settings())) as off:
        plain = off.post("/api/predict", files=upload(CAT.read_bytes()), headers=HTML).text
    assert "Was it right?" not in plain and "<datalist" not in plain


@pytest.fixture(scope="module")
def kept(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """A server keeping feedback, with its summary open to TOKEN."""
    tmp = tmp_path_factory.mktemp("feedback-page")
    with serve(tmp, FEEDBACK_DIR=str(tmp / "store"), ADMIN_TOKEN=TOKEN) as server:
        yield server


def summary(port: int) -> dict:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    status, body, _ = request(port, "GET", "/api/feedback/summary", headers=auth)
    assert status == 200, body
    return json.loads(body)


def answered(page, port: int) -> str:
    """The cat photo sent from the page at `port`; its top label."""
    page.goto(f"http://127.0.0.1:{port}/")
    page.set_input_files("#file", str(CAT))
    if not page.evaluate("document.documentElement.className === 'js'"):
        page.click("#upload-form button[type=submit]")
    page.wait_for_selector("#result .feedback", timeout=20_000)
    return page.inner_text("#result .top-label")


@pytest.mark.slow
@needs_chromium
def test_with_javascript_a_correction_is_thanked_in_place(browser, kept: Live) -> None:  # noqa: F811
    """By keyboard from "Right" to "Wrong, it's...": a label the model lacks is refused in
    place, in the error's style; one of its labels is thanked in place, without a reload,
    the photo and the answer staying; the store has the correction. axe finds nothing."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    label = answered(page, kept.port)
    assert label in CAT_CLASSES and violations(page) == []
    page.evaluate("window.notReloaded = true")
    page.focus("#result .feedback-right button")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "feedback-label"
    page.keyboard.type("not a label")
    page.keyboard.press("Enter")
    page.wait_for_selector("#result .feedback-error:not([hidden])", timeout=10_000)
    assert "invalid_label" in page.inner_text("#result .feedback-error")
    page.fill("#feedback-label", "lynx")
    page.keyboard.press("Enter")
    page.wait_for_selector("#result .feedback-said:not([hidden])", timeout=10_000)
    assert "correction is kept" in page.inner_text("#result .feedback-said")
    assert page.evaluate("document.activeElement.classList.contains('feedback-said')")
    assert (
        page.is_hidden("#result .feedback-error")
        and page.locator("form.feedback-wrong").count() == 0
    )
    assert page.evaluate("window.notReloaded") and page.inner_text("#result .top-label") == label
    assert page.is_visible("#result figure.drawn img") and violations(page) == []
    said = summary(kept.port)
    assert said["corrected"] == 1
    assert said["confused"] == [{"predicted": label, "corrected": "lynx", "count": 1}]
    context.close()


@pytest.mark.slow
@needs_chromium
def test_without_javascript_right_is_thanked_by_the_page(browser, kept: Live) -> None:  # noqa: F811
    """The result page's "Right" form posts the prediction id; the page comes back thanking."""
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    answered(page, kept.port)
    page.click("#result .feedback-right button")
    page.wait_for_selector("#notice:not([hidden])")
    assert page.url.endswith("/api/feedback")
    assert "marked right" in page.inner_text("#notice")
    assert summary(kept.port)["confirmed"] == 1
    context.close()
