"""The chat page in a real browser: headless Debian Chromium, driven by Selenium + chromedriver.

Never skipped: `make setup` installs chromium and chromium-driver. Selenium is given both paths,
so its Selenium Manager has nothing to download. The screenshot lands in build/test-artifacts/.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from local import dev
from local.emulators import REPO
from local.offline_model import LABEL
from tests.support import files

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
ARTIFACTS = REPO / "build" / "test-artifacts"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1200,800",
    "--use-fake-device-for-media-stream",  # a synthetic microphone (a beep) for the recorder
    "--use-fake-ui-for-media-stream",  # and no permission prompt
)


@pytest.fixture(scope="module")
def stack() -> Iterator[dev.Stack]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with (ARTIFACTS / "browser-stack.log").open("w") as console:
        try:
            stack = dev.start_stack({name: "0" for name in dev.PORTS}, console)
        except dev.DevError as exc:
            pytest.fail(f"make dev could not start: {exc}", pytrace=False)
        yield stack
        stack.stop()


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WebDriver]:
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not binary.exists():
            pytest.fail(f"{binary} is missing: run `make setup` (apt-get install chromium chromium-driver)")
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager: never reach for the network
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def texts(driver: WebDriver, selector: str) -> list[str]:
    """Read in one script: the page re-renders on every event, so element handles go stale."""
    script = "return [...document.querySelectorAll(arguments[0])].map((e) => e.textContent)"
    return driver.execute_script(script, selector)


def bot_texts(driver: WebDriver) -> list[str]:
    return texts(driver, ".msg.bot .text")


def test_a_message_typed_on_the_page_is_answered_on_the_page(stack: dev.Stack, browser: WebDriver) -> None:
    wait = WebDriverWait(browser, 30, poll_frequency=0.02)  # fine enough to time the replies
    browser.get(stack.simulator_url)
    wait.until(lambda d: texts(d, "#users li"))

    browser.find_element(By.ID, "new-phone").send_keys("447700900123")  # a new user, from the page
    browser.find_element(By.ID, "new-name").send_keys("Page Tester\n")
    wait.until(lambda d: "Page Tester" in "".join(texts(d, "#users li.current")))

    seconds = []
    for n, text in enumerate(["Hello from Chromium", "How are you?", "Tell me more", "Thanks", "Bye"], 1):
        box = browser.find_element(By.ID, "text")
        box.send_keys(text)
        started = time.monotonic()
        box.send_keys(Keys.ENTER)
        wait.until(lambda d, n=n: len(bot_texts(d)) >= n)
        seconds.append(time.monotonic() - started)
        reply = bot_texts(browser)[-1]
        assert reply.startswith(LABEL) and text in reply

    assert "Hello from Chromium" in texts(browser, ".msg.bot .quote")[0]  # quoted
    wait.until(lambda d: len(texts(d, ".msg.user .ticks.read")) == 5)  # blue ticks

    browser.find_element(By.ID, "reset").click()
    wait.until(lambda d: len(bot_texts(d)) >= 6)
    assert not bot_texts(browser)[-1].startswith(LABEL)  # the responder's own /reset confirmation

    browser.save_screenshot(str(ARTIFACTS / "simulator.png"))
    timings = {"typed_to_reply_on_screen_seconds": seconds, "median": statistics.median(seconds)}
    (ARTIFACTS / "browser-timings.json").write_text(json.dumps(timings, indent=2))


def test_a_voice_note_recorded_on_the_page_arrives_as_ogg_opus(stack: dev.Stack, browser: WebDriver) -> None:
    wait = WebDriverWait(browser, 60, poll_frequency=0.05)
    browser.get(stack.simulator_url)
    wait.until(lambda d: texts(d, "#users li"))
    browser.find_element(By.CSS_SELECTOR, '#users li[data-key="4915112345678"]').click()  # Mia: no messages
    browser.find_element(By.ID, "mic").click()
    wait.until(lambda d: d.find_element(By.ID, "mic").get_attribute("class") == "icon recording")
    time.sleep(1.5)
    browser.find_element(By.ID, "mic").click()
    wait.until(lambda d: texts(d, ".msg.bot .quote"))  # whatever the beep became, the bot answered it
    assert ["Voice message" in quote for quote in texts(browser, ".msg.bot .quote")] == [True]
    assert texts(browser, ".msg.user .voice-label") == ["voice note"]
    state = requests.get(f"{stack.simulator_url}api/state", timeout=5).json()
    recorded = [m for m in state["messages"] if m["type"] == "audio" and m["sender"] == "user"]
    assert [m["mime_type"] for m in recorded] == ["audio/ogg; codecs=opus"]  # as WhatsApp sends them


def test_a_photo_attached_on_the_page_is_seen_by_the_model(
    stack: dev.Stack, browser: WebDriver, tmp_path: Path
) -> None:
    picture = tmp_path / "receipt.png"
    picture.write_bytes(files.png(64, 48))
    wait = WebDriverWait(browser, 60, poll_frequency=0.05)
    browser.get(stack.simulator_url)
    wait.until(lambda d: texts(d, "#users li"))
    browser.find_element(By.ID, "new-phone").send_keys("447700900456")  # a user with no messages yet
    browser.find_element(By.ID, "new-name").send_keys("Photo Tester\n")
    wait.until(lambda d: "Photo Tester" in "".join(texts(d, "#users li.current")))
    browser.find_element(By.ID, "text").send_keys("What does this say?")  # becomes the caption
    browser.find_element(By.ID, "attach").send_keys(str(picture))
    wait.until(lambda d: bot_texts(d))
    [reply] = bot_texts(browser)
    assert reply.startswith(LABEL) and "What does this say?" in reply
    assert "an image (PNG, 64x48 pixels, " in reply  # the bytes reached the model
    photos = "return [...document.querySelectorAll('.msg.user img.photo')].map((i) => i.naturalWidth)"
    wait.until(lambda d: d.execute_script(photos) == [64])  # the photo is in the chat, from the simulator
    assert "Photo: What does this say?" in texts(browser, ".msg.bot .quote")[0]


def test_a_voice_note_after_voice_on_is_answered_with_a_playable_voice_note(
    stack: dev.Stack, browser: WebDriver
) -> None:
    """The offline path: espeak-ng speaks in the stand-in model, the simulator stores and plays it."""
    wait = WebDriverWait(browser, 90, poll_frequency=0.05)
    browser.get(stack.simulator_url)
    wait.until(lambda d: texts(d, "#users li"))
    browser.find_element(By.CSS_SELECTOR, '#users li[data-key="15551234567"]').click()  # Alex: no messages
    browser.find_element(By.ID, "text").send_keys("/voice on\n")
    wait.until(lambda d: bot_texts(d))
    assert bot_texts(browser)[-1].startswith("Voice replies on")
    browser.find_element(By.ID, "mic").click()
    wait.until(lambda d: d.find_element(By.ID, "mic").get_attribute("class") == "icon recording")
    time.sleep(1.5)
    browser.find_element(By.ID, "mic").click()
    source = wait.until(
        lambda d: d.execute_script(
            "const a = document.querySelector('.msg.bot audio'); return a && a.currentSrc"
        )
    )
    spoken = requests.get(source, timeout=10).content
    head = 27 + spoken[26]  # the first page's header and lacing values, then the first packet
    assert spoken[:4] == b"OggS" and spoken[head : head + 8] == b"OpusHead"
    duration = (
        "const a = document.querySelector('.msg.bot audio'); return a && isFinite(a.duration) && a.duration"
    )
    assert wait.until(lambda d: d.execute_script(duration)) > 0.5
    assert "Voice message" in texts(browser, ".msg.bot .quote")[-1]  # quoted to the user's note


def other_site(html: str) -> ThreadingHTTPServer:
    """Another origin (a page the developer happens to visit), serving one page."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_form_on_another_site_cannot_post_to_the_simulator(stack: dev.Stack, browser: WebDriver) -> None:
    """Another origin's page submits a form to the simulator: Chromium sends it, the simulator refuses."""
    user, action = "15550000015", f"{stack.simulator_url}api/messages"
    html = f"""<form id="f" method="post" enctype="multipart/form-data" action="{action}">
      <input name="user" value="{user}"><input name="text" value="spend the key"></form>
      <script>document.getElementById("f").submit()</script>"""
    site = other_site(html)
    try:
        browser.get(f"http://localhost:{site.server_port}/")  # another origin than 127.0.0.1:<simulator>
        WebDriverWait(browser, 30).until(lambda d: d.current_url.endswith("/api/messages"))
        WebDriverWait(browser, 30).until(lambda d: "cross-origin" in d.find_element(By.TAG_NAME, "body").text)
    finally:
        site.shutdown()
    state = requests.get(f"{stack.simulator_url}api/state", timeout=5).json()
    assert user not in [u["key"] for u in state["users"]]  # nothing reached the webhook


def tap_yes(browser: WebDriver) -> None:
    """Tap the first reply button; the page re-renders the chat when a tick arrives, so the button
    found may be replaced before the click: find it again."""

    def tap(driver: WebDriver) -> bool:
        driver.find_element(By.CSS_SELECTOR, ".msg.bot .reply-button").click()
        return True

    WebDriverWait(
        browser, 10, poll_frequency=0.05, ignored_exceptions=(StaleElementReferenceException,)
    ).until(tap)


def test_reply_buttons_are_rendered_and_a_tap_on_the_page_answers_them(
    stack: dev.Stack, browser: WebDriver
) -> None:
    wait = WebDriverWait(browser, 30, poll_frequency=0.05)
    browser.get(stack.simulator_url)
    wait.until(lambda d: texts(d, "#users li"))
    browser.find_element(By.ID, "new-phone").send_keys("447700900456")
    browser.find_element(By.ID, "new-name").send_keys("Button Tester\n")
    wait.until(lambda d: "Button Tester" in "".join(texts(d, "#users li.current")))
    box = browser.find_element(By.ID, "text")
    box.send_keys("book table 2026-05-01 19:30 for 2" + Keys.ENTER)  # the example's confirm: true action
    wait.until(lambda d: texts(d, ".msg.bot .reply-button"))
    assert texts(browser, ".msg.bot .reply-button") == ["Yes, go ahead", "No"]
    assert bot_texts(browser)[-1] == "Book a table for 2 on 2026-05-01 at 19:30?"
    tap_yes(browser)
    wait.until(lambda d: any("book_table answered" in t for t in bot_texts(d)))
    assert texts(browser, ".msg.user .text.tap") == ["Yes, go ahead"]  # the tap, as the user's bubble
