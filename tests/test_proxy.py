"""The page and /docs behind a proxy that ends TLS, as on Heroku or behind an ingress:
Debian's nginx, with a self-signed certificate made here, in front of a real server
with its default settings, and Chromium loading the page through it over https.

nginx connects to the server from 127.0.0.2, a peer the default FORWARDED_ALLOW_IPS
does not believe (as Heroku's router is not), so the server thinks the request was
http. The browser reaches nginx as https://pounce.test:PORT/, a name Chromium maps to
127.0.0.1, because Chromium lets an https page load http:// from 127.0.0.1 itself:
under a real name, an http:// stylesheet is blocked as mixed content, as it would be in
a deploy. Skipped (with the reason) where nginx, openssl or chromium is missing;
.ci/run and the dev image install them, so in CI these always run.
"""

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest

from tests.helpers import CAT, CAT_CLASSES, CHROMIUM_ARGS
from tests.live import Live, free_port

NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
OPENSSL = shutil.which("openssl")
CHROMIUM = shutil.which("chromium")
NAME = "pounce.test"  # what the browser calls the site: not a loopback name
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(NGINX is None, reason="Debian's nginx is not installed"),
    pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed"),
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed"),
]

CONFIG = """
daemon off;
master_process off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {tmp}/cert.pem;
        ssl_certificate_key {tmp}/key.pem;
        client_max_body_size 10m;
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_bind 127.0.0.2;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"""


@pytest.fixture(scope="module")
def origin(live: Live, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """nginx ending TLS in front of the shared server: the site's https origin."""
    tmp = tmp_path_factory.mktemp("proxy")
    subprocess.run(
        [OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-subj", f"/CN={NAME}", "-addext", f"subjectAltName=DNS:{NAME}",
         "-keyout", tmp / "key.pem", "-out", tmp / "cert.pem"],
        check=True, capture_output=True,
    )  # fmt: skip
    port = free_port()
    (tmp / "nginx.conf").write_text(CONFIG.format(tmp=tmp, port=port, upstream=live.port))
    log = tmp / "error.log"
    nginx = subprocess.Popen(
        [NGINX, "-p", tmp, "-c", tmp / "nginx.conf", "-e", log],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if nginx.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nginx did not start:\n{log.read_text()}") from None
                time.sleep(0.05)
        yield f"https://{NAME}:{port}"
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[*CHROMIUM_ARGS, f"--host-resolver-rules=MAP {NAME} 127.0.0.1"],
        )
        yield browser
        browser.close()


@dataclass
class Visit:
    """What one browser context saw: every response, request that failed, and console
    message that is an error or names mixed content."""

    page: object
    responses: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    complaints: list[str] = field(default_factory=list)

    def quiet(self) -> None:
        """Nothing failed, and the console has no complaint (mixed content, say)."""
        assert self.complaints == [] and self.failed == []

    def check(self, origin: str, *paths: str) -> None:
        """Quiet; everything came over https from the site; each of `paths` loaded."""
        self.quiet()
        site = (origin + "/", f"blob:{origin}/")  # blob: the page's preview of the photo
        assert all(url.startswith(site) for url in self.responses), self.responses
        for path in paths:
            assert self.responses.get(origin + path) == 200, (path, self.responses)


def visit(browser: object, **options: object) -> Visit:
    context = browser.new_context(ignore_https_errors=True, **options)
    seen = Visit(context.new_page())
    context.on("response", lambda r: seen.responses.setdefault(r.url.split("#")[0], r.status))
    context.on("requestfailed", lambda r: seen.failed.append(f"{r.url}: {r.failure}"))

    def console(message: object) -> None:
        if message.type == "error" or "mixed content" in message.text.lower():
            seen.complaints.append(f"{message.text} {message.location}")

    seen.page.on("console", console)
    seen.page.on("pageerror", lambda error: seen.complaints.append(str(error)))
    return seen


class Links(HTMLParser):
    """Every URL an element of a page names: href, src, action."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.urls += [v for k, v in attrs if k in ("href", "src", "action") and v is not None]


def links_of(html: str) -> list[str]:
    parser = Links()
    parser.feed(html)
    return parser.urls


def test_the_page_loads_and_answers_over_https(browser, origin: str) -> None:
    seen = visit(browser)
    page = seen.page
    page.goto(origin + "/")
    seen.quiet()
    page.set_input_files("#file", str(CAT))
    page.wait_for_selector("#result .top-label", timeout=20_000)
    assert page.inner_text("#result .top-label") in CAT_CLASSES
    seen.check(origin, "/", "/static/style.css", "/static/app.js", "/api/predict")
    # The code samples name the address the browser used, not the server's idea of it.
    curl = page.inner_text(".code pre code >> nth=0")
    assert curl == f"curl -F file=@photo.jpg {origin}/api/predict"
    page.context.close()


def test_the_result_page_without_javascript_names_only_the_sites_urls(browser, origin) -> None:
    seen = visit(browser, java_script_enabled=False)
    page = seen.page
    page.goto(origin + "/")
    seen.quiet()
    page.set_input_files("#file", str(CAT))
    page.click("#upload-form button[type=submit]")
    page.wait_for_selector("#result .top-label", timeout=20_000)
    assert page.url == origin + "/api/predict"
    assert page.inner_text("#result .top-label") in CAT_CLASSES
    seen.check(origin, "/", "/api/predict", "/static/style.css")
    links = links_of(page.content())
    assert {"/", "/docs", "/api/model", "/openapi.json", "/api/predict"} <= set(links)
    for url in links:  # paths (or the page's own data:), so the browser's https is theirs
        assert url.startswith(("/", "data:")) and not url.startswith("//"), url
        assert urlsplit(urljoin(page.url, url)).scheme in ("https", "data"), url
    # Without the script the samples keep the server's own idea of the address: http, so
    # the server really did not trust the proxy, and paths are what kept the page whole.
    assert page.inner_text(".code pre code >> nth=0").startswith("curl -F file=@photo.jpg http://")
    page.context.close()


def test_the_api_docs_load_their_ui_and_spec_over_https(browser, origin: str) -> None:
    seen = visit(browser)
    page = seen.page
    page.goto(origin + "/docs")
    seen.quiet()
    page.wait_for_selector(".swagger-ui .opblock", timeout=20_000)
    assert page.locator(".swagger-ui .opblock").count() >= 3
    seen.check(
        origin,
        "/docs",
        "/docs/static/swagger-ui.css",
        "/docs/static/swagger-ui-bundle.js",
        "/openapi.json",
    )
    page.context.close()
