"""The home page in a real browser: Debian's Chromium, headless, driven by Playwright.

Skipped (with the reason) where no Chromium is installed; .ci/run installs it, so
in CI these always run. Screenshots land in test-artifacts/.
"""

import base64
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.corpus import DRAWN
from tests.helpers import ARTIFACTS, CAT, CAT_CLASSES, CHROMIUM_ARGS, EXAMPLES, ImageServer
from tests.learners import colour_pictures
from tests.live import Live, serve

CHROMIUM = shutil.which("chromium")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed"),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live: Live) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
    page.on("pageerror", lambda e: page.console_errors.append(str(e)))
    page.goto(f"http://127.0.0.1:{live.port}/")
    yield page
    context.close()


def top_label(page) -> str:
    page.wait_for_selector("#result .top-label", timeout=20_000)
    return page.inner_text("#result .top-label")


@pytest.mark.smoke  # one of the container test's sample of the slow tier
def test_upload_shows_bars_with_the_right_label(page) -> None:
    page.set_input_files("#file", str(CAT))
    assert top_label(page) in CAT_CLASSES
    assert page.locator("#result .bars li").count() == 5
    assert page.is_visible("#result figure.drawn img")  # the photo (where it looked, over it)
    assert page.console_errors == []


def test_url_flow(page, image_server: ImageServer) -> None:
    page.fill("#url", image_server.url("/coffee.png"))
    page.click("#url-form button")
    assert top_label(page) == "espresso"
    assert page.console_errors == []


def test_drag_and_drop(page) -> None:
    data = base64.b64encode(CAT.read_bytes()).decode()
    page.evaluate(
        """async (data) => {
            const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "cat.jpg", {type: "image/jpeg"}));
            const zone = document.getElementById("drop-zone");
            zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: transfer, bubbles: true}));
            zone.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true}));
        }""",
        data,
    )
    assert top_label(page) in CAT_CLASSES


def test_paste(page) -> None:
    data = base64.b64encode((EXAMPLES / "coffee.jpg").read_bytes()).decode()
    page.evaluate(
        """async (data) => {
            const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "pasted.jpg", {type: "image/jpeg"}));
            const event = new ClipboardEvent("paste", {clipboardData: transfer, bubbles: true});
            document.dispatchEvent(event);
        }""",
        data,
    )
    assert top_label(page) == "espresso"


def test_example_button(page) -> None:
    page.click("button.example >> nth=1")  # coffee.jpg
    assert top_label(page) == "espresso"


def test_error_flow(page, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo")
    page.set_input_files("#file", str(notes))
    page.wait_for_selector("#error:not([hidden])", timeout=20_000)
    message = page.inner_text("#error")
    assert "unsupported_media_type" in message and "Choose a JPEG" in message
    assert page.is_hidden("#result")
    # Chromium logs the refused request itself; nothing else may go wrong.
    assert all("status of 415" in error for error in page.console_errors), page.console_errors


def test_an_answer_that_is_not_the_apps_is_an_error_and_the_page_recovers(page) -> None:
    """A plain-text 503 (uvicorn at its connection limit, or a proxy's page) is shown as
    an error, without replacing the answer's boxes, so the next photo still answers."""
    page.route(
        "**/api/predict",
        lambda route: route.fulfill(
            status=503, body="Service Unavailable", content_type="text/plain"
        ),
    )
    page.set_input_files("#file", str(CAT))
    page.wait_for_selector("#error:not([hidden])", timeout=20_000)
    assert "unexpected_response" in page.inner_text("#error")
    assert "503" in page.inner_text("#error") and "try again" in page.inner_text("#error")
    page.unroute("**/api/predict")
    page.set_input_files("#file", str(EXAMPLES / "coffee.jpg"))
    assert top_label(page) == "espresso"
    assert page.is_hidden("#error")
    assert all("status of 503" in error for error in page.console_errors), page.console_errors


HEATMAP = "#result figure.drawn .heatmap"


def opacity(page, selector: str) -> str:
    return page.eval_on_selector(selector, "e => getComputedStyle(e).opacity")


def map_lies_over_the_photo(page) -> None:
    """The answer's figure: the server's copy of the photo, and the map stretched over it."""
    photo = page.locator("#result figure.drawn img >> nth=0")
    assert photo.get_attribute("src").startswith("data:image/jpeg;base64,")
    assert page.get_attribute(HEATMAP, "src").startswith("data:image/png;base64,")
    assert page.is_visible(HEATMAP)
    boxes = page.eval_on_selector(  # at one moment: the page may be scrolling to the answer
        "#result figure.drawn",
        """figure => [...figure.querySelectorAll("img")].map((img) => {
            const box = img.getBoundingClientRect();
            return [box.x, box.y, box.width, box.height];
        })""",
    )
    assert len(boxes) == 2 and boxes[0] == boxes[1] and boxes[0][2] > 100, boxes


def test_the_answer_shows_where_the_network_looked_its_opacity_by_keyboard(page) -> None:
    """The map over the photo in place of the preview, at half opacity; Tab from the last
    control before it reaches its opacity control, and the arrow keys change it."""
    page.set_input_files("#file", str(CAT))
    top_label(page)
    map_lies_over_the_photo(page)
    assert page.is_hidden("#preview-figure") and opacity(page, HEATMAP) == "0.5"
    page.focus("button.example >> nth=-1")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "look-50"
    page.keyboard.press("ArrowRight")
    assert page.is_checked("#look-75") and opacity(page, HEATMAP) == "0.75"
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    assert page.is_checked("#look-0") and opacity(page, HEATMAP) == "0"
    assert page.console_errors == []


def test_camera_input_for_phones(page) -> None:
    camera = page.locator("#camera")
    assert camera.get_attribute("capture") == "environment"
    assert camera.get_attribute("accept") == "image/*"
    assert page.is_visible("label[for=camera]")


def test_keyboard_opens_the_file_chooser(page) -> None:
    """Enter (or Space) on the focused drop zone opens the file input, as a click would."""
    page.evaluate(
        """() => document.getElementById("file").addEventListener("click", (event) => {
            window.fileChooserOpened = (window.fileChooserOpened || 0) + 1;
            event.preventDefault();
        })"""
    )
    page.focus("#drop-zone")
    assert page.evaluate("document.activeElement.id") == "drop-zone"
    page.keyboard.press("Enter")
    page.keyboard.press(" ")
    assert page.evaluate("window.fileChooserOpened") == 2


def test_without_javascript_the_forms_still_work(browser, live: Live) -> None:
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(f"http://127.0.0.1:{live.port}/")
    assert page.is_visible("button.no-js-only")
    assert not page.is_visible(".examples")
    page.set_input_files("#file", str(CAT))
    page.click("#upload-form button[type=submit]")
    page.wait_for_selector(".top-label")
    assert page.inner_text(".top-label") in CAT_CLASSES
    assert page.url.endswith("/api/predict")
    map_lies_over_the_photo(page)  # and its opacity control, CSS alone:
    page.click("label[for=look-100]")
    assert opacity(page, HEATMAP) == "1"
    context.close()


def test_multi_label_answer_shows_passing_labels_and_the_threshold(
    browser, colours_compiled: Path, tmp_path: Path
) -> None:
    """The passing labels first, then every label as a bar with the threshold marked; "Was
    it right?" has every label as a checkbox, the passing ones checked, and none checked
    says the photo has none."""
    picture = tmp_path / "picture.png"
    picture.write_bytes(colour_pictures(1, seed=5)[0][1])
    store = str(tmp_path / "store")
    with serve(tmp_path, MODEL_PATH=str(colours_compiled), FEEDBACK_DIR=store) as server:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{server.port}/")
        page.set_input_files("#file", str(picture))
        page.wait_for_selector("#result .passing", timeout=20_000)
        chips = page.locator("#result .passing .top-label").all_inner_texts()
        passing = page.locator("#result .bars li.pass .bar-label").all_inner_texts()
        assert chips == passing and len(chips) >= 2
        assert page.locator("#result .bars.multi-label li").count() == 5
        threshold = page.eval_on_selector(
            "#result .bars", "e => getComputedStyle(e).getPropertyValue('--threshold')"
        )
        assert threshold.strip() == "50.0%"
        marker = page.eval_on_selector(
            "#result .bar", "e => getComputedStyle(e, '::after').borderLeftStyle"
        )
        assert marker == "dashed"
        boxes = page.locator("#result .feedback-choices input[type=checkbox]")
        checked = boxes.evaluate_all("boxes => boxes.filter((b) => b.checked).map((b) => b.value)")
        assert boxes.count() == 5 and checked == sorted(chips)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "home-multi-label.png"), full_page=True)
        for box in boxes.all():
            box.uncheck()
        page.click("#result .feedback-wrong button")
        page.wait_for_selector("#result .feedback-said:not([hidden])", timeout=10_000)
        assert "correction is kept" in page.inner_text("#result .feedback-said")
        context.close()


def test_screenshots_desktop_and_phone(browser, live: Live) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    for name, viewport in [("desktop", (1280, 900)), ("phone-360", (360, 740))]:
        context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{live.port}/")
        page.set_input_files("#file", str(CAT))
        top_label(page)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= viewport[0], f"{name}: the page scrolls sideways ({width}px)"
        page.screenshot(path=str(ARTIFACTS / f"home-{name}.png"), full_page=True)
        context.close()


# axe-core's rules for WCAG 2 A and AA, and its best practices.
WCAG = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "best-practice"]}}


def violations(page) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    found = Axe().run(page, options=WCAG).response["violations"]
    return [f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']]}" for v in found]


def test_no_accessibility_violations_on_the_page_or_its_answers(browser, page, live: Live) -> None:
    """axe-core finds nothing on the home page, on an answer drawn by the script, and on
    the page the server renders for a form post without JavaScript."""
    assert violations(page) == []
    page.set_input_files("#file", str(CAT))
    top_label(page)
    assert page.is_visible(HEATMAP) and violations(page) == []  # where it looked, too
    # axe needs JavaScript: the page's own script is kept out, and the form posted natively.
    context = browser.new_context()
    plain = context.new_page()
    plain.route("**/static/app.js", lambda route: route.abort())
    plain.goto(f"http://127.0.0.1:{live.port}/")
    plain.set_input_files("#file", str(CAT))
    plain.evaluate("document.getElementById('upload-form').submit()")
    plain.wait_for_selector(".top-label")
    assert plain.is_visible(HEATMAP)
    assert plain.url.endswith("/api/predict") and violations(plain) == []
    context.close()


IN_VIEW = """() => {
    const box = document.getElementById("result").getBoundingClientRect();
    return box.top >= 0 && box.top < window.innerHeight;
}"""


def send_photo(browser, port: int, photo: Path, script: bool, viewport: tuple[int, int]):
    """A fresh page of the server at `port`, with `photo` chosen (and, without JavaScript,
    the form posted); its context, to close."""
    context = browser.new_context(
        viewport={"width": viewport[0], "height": viewport[1]}, java_script_enabled=script
    )
    page = context.new_page()
    page.goto(f"http://127.0.0.1:{port}/")
    page.set_input_files("#file", str(photo))
    if not script:
        page.click("#upload-form button[type=submit]")
    return context, page


def test_on_a_phone_the_answer_comes_into_view(browser, live: Live) -> None:
    """The answer lands below the fold of a 360x740 screen: the page scrolls to it."""
    context, page = send_photo(browser, live.port, CAT, True, (360, 740))
    page.wait_for_selector("#result .top-label", timeout=20_000)
    page.wait_for_function(IN_VIEW, timeout=5_000)
    context.close()


def drawn(page, name: str) -> None:
    """What each kind of answer shows: values by name, points on the photo, a mask over it
    with its legend and an opacity control (which works without JavaScript too)."""
    page.wait_for_selector("#result h2", timeout=20_000)
    if name == "regression":
        names = page.locator("#result table.values tbody th").all_inner_texts()
        assert names == ["brightness", "disc_x"]
        shown = page.locator("#result table.values td.value").all_inner_texts()
        fields = page.locator("#result .feedback-values input[type=number]")  # the answer's
        prefilled = fields.evaluate_all("fields => fields.map((f) => f.value)")
        assert [f"{float(value):.4g}" for value in prefilled] == shown
    elif name == "keypoints":
        assert page.locator("#result figure.drawn svg circle").count() == 2
        assert page.is_visible("#result figure.drawn img")
    else:
        assert page.is_visible("#result figure.drawn .mask")
        assert page.locator("#result .legend li").count() == 3


def opacity_follows_the_control(page) -> None:
    assert opacity(page, "#result .mask") == "0.5"
    page.click("label[for=opacity-100]")
    assert opacity(page, "#result .mask") == "1"


@pytest.mark.learners(lines=("2.8",))
@pytest.mark.parametrize("name", DRAWN)
def test_every_kind_is_drawn_with_and_without_javascript(
    browser, corpus: dict, tmp_path: Path, name: str
) -> None:
    built = corpus["2.8", name]
    probe = built.export.parent / "probes" / "scene-wide-300x100.png"
    ARTIFACTS.mkdir(exist_ok=True)
    store = str(tmp_path / "store")  # feedback on: a regression's answer takes it, no other
    with serve(tmp_path, MODEL_PATH=str(built.onnx), FEEDBACK_DIR=store) as server:
        for script in (True, False):
            context, page = send_photo(browser, server.port, probe, script, (1280, 900))
            drawn(page, name)
            assert page.locator("#result .feedback").count() == (name == "regression")
            if script:
                assert violations(page) == []
                # A regression's answer is drawn on the photo where the model explains it.
                explained = page.locator(HEATMAP).count() == 1
                assert page.is_hidden("#preview-figure") == (name != "regression" or explained)
            shot = f"home-{name}{'' if script else '-no-javascript'}.png"
            page.screenshot(path=str(ARTIFACTS / shot), full_page=True)
            if name == "segmentation":
                opacity_follows_the_control(page)
            context.close()
