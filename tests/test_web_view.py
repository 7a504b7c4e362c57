"""The registry server's read-only web view (/ui/), in a real browser and over plain HTTP.

The browser test drives headless Chromium (the distribution's `chromium` and
`chromium-driver`, through Selenium, the driver path given so that nothing is downloaded)
against a registry server on 127.0.0.1 holding a project pushed with `fdp push`: it searches
a product, opens its page and checks what the page shows against the data store. The HTTP
tests check what a browser cannot see at a glance: keyset paging, search, escaping, private
files, and that the view takes no writes.

Without Chromium the browser test is skipped, saying why; in CI (`CI` set, or
FDP_REQUIRE_BROWSER=1 as .ci/run sets) that is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from support import Env, producer, sha1

from fdp_tasks.server.serve import RunningServer, start_in_thread
from fdp_tasks.store.sql import Store
from fdp_tasks.store.tokens import working_token

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1400",
]
SCRIPTED = "<script>alert('inert')</script>"
# Reads both registered inputs, so that its code run records two, and writes each output,
# with the time, so that each run's versions are other bytes (and other files).
TWO_INPUT_MODEL = """\
import time
from fdp_tasks.api import Session

with Session() as fdp:
    text = "".join(open(fdp.read(name)).read() for name in ("inputs/seed", "inputs/weights"))
    for item in fdp.config["write"]:
        with open(fdp.write(item["data_product"]), "w") as out:
            out.write(f"{item['data_product']},{text},{time.time_ns()}")
"""


# ------------------------------------------------------------------------------ fixtures
@dataclass
class PushedProject:
    """A registry server holding a project pushed to it: three outputs in two versions
    (two runs), one output private, both runs reading two registered inputs."""

    server: RunningServer
    store: Store
    token: str
    env: Env

    @property
    def url(self) -> str:
        return self.server.url

    def get(self, path: str, token: str | None = None, **params: Any) -> requests.Response:
        headers = {"Authorization": f"token {token}"} if token else {}
        return requests.get(f"{self.url}{path}", params=params, headers=headers, timeout=60)

    def product_id(self, name: str, version: str) -> int:
        found = self.store.find_one("data_product", {"name": name, "version": version})
        assert found is not None, f"{name}@{version} was not pushed"
        return found["id"]


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PushedProject]:
    base = tmp_path_factory.mktemp("web-view")
    store = Store(base / "server" / "registry.db")
    token = working_token(store, file=base / "server" / "token")
    server = start_in_thread(store, base / "server" / "blobs")
    try:
        env = producer(
            base,
            outputs=3,
            inputs={"seed": "seed-value\n", "weights": "1,2,3\n"},
            model=TWO_INPUT_MODEL,
        )
        config = yaml.safe_load((env.project / "config.yaml").read_text(encoding="utf-8"))
        config["write"][0]["description"] = f"{SCRIPTED} part 0"
        config["write"][2]["public"] = False
        env.config(config)
        env.doit()
        env.doit("force=1")  # a second run: new versions of every output
        env.add_remote(server.api_url, base / "server" / "token")
        env.fdp("push")
        yield PushedProject(server, store, token, env)
    finally:
        server.stop()
        store.close()


def browser_problem() -> str | None:
    """Why the browser test cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.is_file():
            return f"{path} is missing (apt-get install {package})"
    return None


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Headless Chromium through its driver at a fixed path, with a profile of its own."""
    problem = browser_problem()
    if problem:
        if os.environ.get("CI") or os.environ.get("FDP_REQUIRE_BROWSER") == "1":
            pytest.fail(f"the browser test must run here, but {problem}")
        pytest.skip(problem)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(tmp_path / "driver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


# ------------------------------------------------------------------------------ helpers
class Links(HTMLParser):
    """The hrefs of a page's anchors, by id where they have one."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.by_id: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "a" and found.get("href"):
            self.hrefs.append(found["href"] or "")
            if found.get("id"):
                self.by_id[found["id"] or ""] = found["href"] or ""


def links(html: str) -> Links:
    parser = Links()
    parser.feed(html)
    return parser


def product_ids(html: str) -> list[int]:
    return [int(m) for m in re.findall(r'class="product" href="/ui/products/(\d+)/"', html)]


def walk_pages(url: str, first: str) -> tuple[list[int], int]:
    """The product ids on every page of a listing, following its `Older` links, and how
    many pages there were."""
    seen: list[int] = []
    pages = 0
    path: str | None = first
    while path:
        resp = requests.get(url + path, timeout=60)
        assert resp.status_code == 200, resp.text[:500]
        seen += product_ids(resp.text)
        pages += 1
        path = links(resp.text).by_id.get("next-page")
        assert pages < 100, "the pager never ends"
    return seen, pages


def many_products(store: Store, count: int, namespace: str = "lab", prefix: str = "p") -> None:
    """`count` data products `<prefix>NNNN@1.0.0` with an object each, made in the store."""
    ns = store.get_or_create("namespace", {"name": namespace})[0]
    with store.transaction():
        for i in range(count):
            obj = store.create("object", {"description": f"item {i}"})
            store.create(
                "data_product",
                {
                    "object": obj["id"],
                    "namespace": ns["id"],
                    "name": f"{prefix}{i:04d}",
                    "version": "1.0.0",
                },
            )


# ------------------------------------------------------------------------------ the browser
def open_page(driver: Any, url: str) -> None:
    """Load a page of the view and fail unless it is one (an error answer has no <main>)."""
    from selenium.webdriver.common.by import By

    driver.get(url)
    mains = driver.find_elements(By.TAG_NAME, "main")
    assert mains, f"{url} is not a page of the web view: {driver.page_source[:500]}"
    assert "Not found" not in driver.title, f"{url}: {driver.title}"


def test_a_browser_searches_a_product_and_sees_its_provenance(
    pushed: PushedProject, browser: Any, tmp_path: Path
) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    open_page(browser, f"{pushed.url}/")  # the server's root leads to the view
    assert browser.current_url.endswith("/ui/")
    box = browser.find_element(By.ID, "q")
    box.send_keys("results/part00")
    browser.find_element(By.ID, "search").click()
    WebDriverWait(browser, 60).until(expected_conditions.url_contains("q=results"))
    rows = browser.find_elements(By.CSS_SELECTOR, "#products tbody tr")
    # newest records first: the order the push created them in
    found = {r.find_elements(By.TAG_NAME, "td")[2].text: r for r in rows}
    assert sorted(found) == ["0.0.1", "0.0.2"]
    assert {r.find_element(By.CLASS_NAME, "product").text for r in rows} == {"results/part00"}
    found["0.0.2"].find_element(By.CLASS_NAME, "product").click()
    WebDriverWait(browser, 60).until(expected_conditions.url_contains("/ui/products/"))

    assert browser.find_element(By.ID, "product-name").text == "lab:results/part00 @0.0.2"
    versions = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#versions li")]
    assert versions == ["0.0.2", "0.0.1"]
    stored = sha1(pushed.env.data_store / "lab/results/part00/0.0.2.csv")
    assert browser.find_element(By.CSS_SELECTOR, "#file .sha1 code").text == stored
    download = browser.find_element(By.CSS_SELECTOR, "#file a.download").get_attribute("href")
    assert download == f"{pushed.url}/data/{stored}"
    inputs = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#inputs li")]
    assert inputs == [
        "lab:inputs/seed@1.0.0 (seed)",
        "lab:inputs/weights@1.0.0 (weights)",
        "environment of the run",  # the job's record of what it ran in (fdp_tasks.environment)
    ]
    outputs = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#outputs li")]
    assert sorted(outputs) == [f"lab:results/part0{i}@0.0.2" for i in range(3)]
    if shutil.which("dot"):
        picture = browser.find_element(By.CSS_SELECTOR, "#provenance-picture svg")
        assert picture.size["width"] > 50 and picture.size["height"] > 50
        assert "results/part00" in picture.text
    # the description holding a script is text on the page, and nothing ran
    assert SCRIPTED in browser.find_element(By.CLASS_NAME, "description").text
    assert browser.find_elements(By.TAG_NAME, "script") == []
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 - reading it is what raises

    shot = tmp_path / "product-page.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 1000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the code run's page, from the product page's link
    browser.find_element(By.CSS_SELECTOR, ".made-by a.run").click()
    WebDriverWait(browser, 60).until(expected_conditions.url_contains("/ui/runs/"))
    open_page(browser, browser.current_url)
    run_inputs = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#inputs li")]
    assert run_inputs == inputs
    for part in ("config", "script"):
        link = browser.find_element(By.CSS_SELECTOR, f"#{part} a.download").get_attribute("href")
        assert requests.get(link, timeout=60).status_code == 200
    browser.save_screenshot(str(tmp_path / "code-run-page.png"))

    # what this test takes for a broken page: an error answer, or a page for nothing
    for broken in ("/api/data_product/x/", "/ui/products/99999/"):
        with pytest.raises(AssertionError):
            open_page(browser, f"{pushed.url}{broken}")


# ------------------------------------------------------------------------------ plain HTTP
def test_every_page_of_a_pushed_project_renders(pushed: PushedProject) -> None:
    paths = ["/ui/", "/ui/runs/", "/ui/authors/", "/ui/static/web.css"]
    paths += [f"/ui/products/{p['id']}/" for p in pushed.store.find("data_product")]
    paths += [f"/ui/runs/{r['id']}/" for r in pushed.store.find("code_run")]
    for path in paths:
        resp = pushed.get(path)
        assert resp.status_code == 200, f"{path}: {resp.status_code} {resp.text[:300]}"
    assert pushed.get("/ui/products/99999/").status_code == 404
    assert pushed.get("/ui/runs/99999/").status_code == 404
    authors = pushed.get("/ui/authors/").text
    assert "<td>" in authors and "email" not in authors


def test_private_files_are_hidden_from_anonymous_viewers(pushed: PushedProject) -> None:
    """The private output's page says it is private and names neither its hash nor a link;
    its owner (here the registry's admin, who pushed it) sees the hash."""
    secret = sha1(pushed.env.data_store / "lab/results/part02/0.0.2.csv")
    page = f"/ui/products/{pushed.product_id('results/part02', '0.0.2')}/"
    anonymous = pushed.get(page)
    assert anonymous.status_code == 200
    assert secret not in anonymous.text and "a private file" in anonymous.text
    for listing in ("/ui/", "/ui/runs/", "/ui/runs/1/", "/ui/runs/2/"):
        assert secret not in pushed.get(listing).text
    assert secret in pushed.get(page, token=pushed.token).text
    # a public output's hash is shown to anyone, with a link the server then answers
    public = sha1(pushed.env.data_store / "lab/results/part01/0.0.2.csv")
    shown = pushed.get(f"/ui/products/{pushed.product_id('results/part01', '0.0.2')}/").text
    assert public in shown
    assert requests.get(f"{pushed.url}/data/{public}", timeout=60).status_code == 200


def test_listings_page_by_keyset_and_search_by_substring(
    registry_server: Any, registry_database: str
) -> None:
    reg = registry_server(database=registry_database)
    many_products(reg.store, 130)
    many_products(reg.store, 20, namespace="other-group", prefix="q")
    every = [p["id"] for p in reg.store.find("data_product")]

    seen, pages = walk_pages(reg.url, "/ui/")
    assert seen == every and pages == 3  # newest first, each once, 50 a page

    # a name substring, any case; a namespace substring; `ns:name` narrows both sides
    seen, _ = walk_pages(reg.url, "/ui/?q=P00")
    assert {reg.store.get("data_product", i)["name"] for i in seen} == {
        f"p{i:04d}" for i in range(100)
    }
    assert len(seen) == 100
    seen, pages = walk_pages(reg.url, "/ui/?q=other")
    assert len(seen) == 20 and pages == 1
    seen, _ = walk_pages(reg.url, "/ui/?q=lab:p012")
    assert [reg.store.get("data_product", i)["name"] for i in seen] == [
        f"p{i:04d}" for i in range(129, 119, -1)
    ]
    assert (
        "100 data products matching"
        in requests.get(f"{reg.url}/ui/", params={"q": "p00"}, timeout=60).text
    )
    # LIKE's own wildcards are plain characters in a search
    assert product_ids(requests.get(f"{reg.url}/ui/", params={"q": "p_0%"}, timeout=60).text) == []
    # a cursor that is not one starts at the top rather than failing
    assert product_ids(requests.get(f"{reg.url}/ui/?before=x9", timeout=60).text)[0] == every[0]


def test_names_and_descriptions_stay_inert_text(registry_server: Any) -> None:
    reg = registry_server()
    store = reg.store
    ns = store.create("namespace", {"name": "lab"})
    author = store.create("author", {"name": f"{SCRIPTED} Ada", "identifier": "javascript:x"})
    root = store.create("storage_root", {"root": "javascript:alert(1)//"})
    location = store.create(
        "storage_location",
        {"path": "x", "hash": "ab" * 20, "public": True, "storage_root": root["id"]},
    )
    obj = store.create(
        "object",
        {
            "description": f'"><img src=x onerror=alert(1)> {SCRIPTED}',
            "authors": [author["id"]],
            "storage_location": location["id"],
        },
    )
    name = "<script>alert(1)</script>/<b>bold"
    product = store.create(
        "data_product",
        {"object": obj["id"], "namespace": ns["id"], "name": name, "version": "1.0.0"},
    )
    for path in ("/ui/", f"/ui/products/{product['id']}/", "/ui/authors/", "/ui/?q=<script>"):
        resp = requests.get(f"{reg.url}{path}", timeout=60)
        assert resp.status_code == 200, resp.text[:300]
        body = resp.text
        assert "<script" not in body and "<img" not in body and "<b>" not in body
        assert "&lt;script&gt;" in body
        assert 'href="javascript' not in body
        policy = resp.headers["Content-Security-Policy"]
        assert "script-src 'none'" in policy and "frame-ancestors 'none'" in policy
        if path.startswith("/ui/products/") and shutil.which("dot"):
            # the provenance picture draws the name as text, not as markup
            assert "<svg" in body and "&lt;b&gt;bold" in body.partition("<svg")[2]


def test_the_web_view_takes_no_writes(pushed: PushedProject) -> None:
    product = f"/ui/products/{pushed.product_id('results/part00', '0.0.1')}/"
    before = {t: pushed.store.count(t) for t in ("data_product", "code_run", "object")}
    for path in ("/ui/", product, "/ui/runs/", "/ui/runs/1/", "/ui/authors/"):
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            resp = requests.request(
                method,
                f"{pushed.url}{path}",
                headers={"Authorization": f"token {pushed.token}"},
                timeout=60,
            )
            assert resp.status_code == 405, f"{method} {path}: {resp.status_code}"
            assert "POST" not in resp.headers.get("Allow", "")
        page = pushed.get(path).text
        assert 'method="post"' not in page.lower()
    assert {t: pushed.store.count(t) for t in before} == before
