"""The status page in a real headless Chromium against a real sidecar and real sinks.

Run by scripts/test-browser (which installs Chromium, chromedriver and Selenium):

    status_page.py --binary target/debug/hookrelay --screenshots DIR

Checks, each in the browser as an operator uses the page:
- the page is refused without the token (401 and a sign-in form, nothing else), a wrong
  token is refused, the right one opens it;
- a callback appears in the deliveries list without a page reload;
- a dead letter (the endpoint answered 400) is replayed from the page and then shows
  delivered;
- an endpoint paused by 410 Gone shows paused, and resuming it from the keyboard clears it;
- the headers a delivery carries are shown with secrets redacted;
- every form field has a label, text has a contrast of 4.5:1 or more in light and in dark
  mode, and the first Tab reaches the skip link.
A screenshot of each view is saved to DIR.

Waits poll a condition with a deadline (WebDriverWait); nothing sleeps to synchronise.
"""

import argparse
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

TOKEN = "page-token-0123456789abcdef"
DEADLINE = 30
SINK_SECRET = "sink-secret-never-shown"


class Sink:
    """An HTTP endpoint on a port of its own: answers each POST with the status set for
    its path, and keeps what it received."""

    def __init__(self):
        self.status = {}
        self.received = []
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                with sink.lock:
                    sink.received.append((self.path, dict(self.headers), body))
                    status = sink.status.get(self.path, 200)
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path):
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def set_status(self, path, status):
        with self.lock:
            self.status[path] = status

    def count(self, path, status_ok_only=False):
        with self.lock:
            return sum(1 for p, _, _ in self.received if p == path)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def free_port():
    """A port the kernel just gave and took back, for the sidecar to bind."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def eventually(what, check):
    """Polls `check` until it returns something true, failing at the deadline."""
    end = time.monotonic() + DEADLINE
    while True:
        try:
            value = check()
        except Exception:  # not up yet
            value = None
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def http(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def postmark(record, recipient, message_id):
    return json.dumps({
        "RecordType": record, "MessageID": message_id, "Recipient": recipient,
        "Email": recipient, "DeliveredAt": "2026-01-02T03:04:05Z",
        "Details": "250 ok", "Metadata": {"customer": "c-1"},
    }).encode()


class Sidecar:
    def __init__(self, binary, sink, workdir):
        self.listen = free_port()
        self.admin_port = free_port()
        self.dir = workdir
        self.config = os.path.join(workdir, "hookrelay.yaml")
        with open(self.config, "w") as f:
            f.write(f"""
listen: "127.0.0.1:{self.listen}"
admin: {{ listen: "127.0.0.1:{self.admin_port}", token: "{TOKEN}" }}
upstream: http://127.0.0.1:9
store: {{ kind: embedded, path: "{workdir}/data" }}
callbacks:
  - path: /cb/postmark
    provider: postmark
    verify: {{ basic_auth: "user:pass" }}
endpoints:
  - name: crm
    url: {sink.url("/crm")}
    description: The CRM, every email status
    events: {{ email: [status] }}
    rate_limit: {{ per_second: 20 }}
    headers: {{ X-Team: growth, Authorization: "Bearer {SINK_SECRET}" }}
    signing_secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
    retry: {{ max_attempts: 3, backoff: [100ms] }}
""")
        self.log = open(os.path.join(workdir, "hookrelay.log"), "wb")
        env = dict(os.environ, RUST_LOG="info,pingora=warn,fjall=warn,lsm_tree=warn")
        self.proc = subprocess.Popen(
            [binary, "run", "-c", self.config],
            stdout=subprocess.DEVNULL, stderr=self.log, env=env)
        eventually("the sidecar to be ready", lambda: self.running() and
                   http("GET", self.admin("/readyz"))[0] == 200)

    def running(self):
        if self.proc.poll() is not None:
            raise SystemExit(f"hookrelay exited ({self.proc.returncode}):\n{self.read_log()}")
        return True

    def read_log(self):
        with open(os.path.join(self.dir, "hookrelay.log"), "rb") as f:
            return f.read().decode(errors="replace")

    def admin(self, path):
        return f"http://127.0.0.1:{self.admin_port}{path}"

    def callback(self, record, recipient, message_id):
        auth = base64.b64encode(b"user:pass").decode()
        status, body = http(
            "POST", f"http://127.0.0.1:{self.listen}/cb/postmark",
            postmark(record, recipient, message_id),
            {"content-type": "application/json", "authorization": f"Basic {auth}"})
        assert status == 200, (status, body)

    def stop(self):
        self.proc.terminate()
        try:
            code = self.proc.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("hookrelay did not stop within the deadline on SIGTERM")
        self.log.close()
        assert code == 0, f"hookrelay exited {code} on SIGTERM:\n{self.read_log()}"


# Every text node's contrast against the background behind it, from the computed styles;
# the elements below 4.5:1 are returned.
CONTRAST_JS = r"""
function rgb(c) {
  const m = c.match(/rgba?\(([^)]+)\)/);
  if (!m) return null;
  const p = m[1].split(/[ ,\/]+/).filter(Boolean).map(Number);
  return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1};
}
function lum(c) {
  const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b);
}
function background(el) {
  for (let e = el; e; e = e.parentElement) {
    const c = rgb(getComputedStyle(e).backgroundColor);
    if (c && c.a > 0.5) return c;
  }
  return rgb(getComputedStyle(document.documentElement).backgroundColor) || {r: 255, g: 255, b: 255, a: 1};
}
const low = [];
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
while (walker.nextNode()) {
  const node = walker.currentNode;
  if (!node.textContent.trim()) continue;
  const el = node.parentElement;
  const style = getComputedStyle(el);
  if (style.visibility === "hidden" || style.display === "none" || el.closest(".skip, .sr-only, svg")) continue;
  const fg = rgb(style.color), bg = background(el);
  const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
  const ratio = (a + 0.05) / (b + 0.05);
  if (ratio < 4.5) low.push(el.tagName + " '" + node.textContent.trim().slice(0, 40) + "' " + ratio.toFixed(2));
}
return low;
"""

UNLABELLED_JS = r"""
return Array.from(document.querySelectorAll("input, select, textarea"))
  .filter(e => e.type !== "hidden" && e.labels.length === 0 && !e.getAttribute("aria-label"))
  .map(e => e.outerHTML);
"""


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000", "--lang=en-US"]:
        options.add_argument(arg)
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    return webdriver.Chrome(service=Service(executable_path=driver_path), options=options)


def wait(driver, what, check):
    try:
        # A page being replaced (after a click, or by a live update) makes elements stale
        # between finding and reading them: the condition is tried again.
        return WebDriverWait(driver, DEADLINE, poll_frequency=0.1, ignored_exceptions=[
            StaleElementReferenceException, NoSuchElementException]).until(lambda d: check(d))
    except Exception as e:
        raise AssertionError(f"timed out waiting for {what}: {e}\n--- page ---\n"
                             f"{driver.find_element(By.TAG_NAME, 'main').text}") from None


def accessible(driver, view, shots):
    """Labels and contrast of the view shown, in light mode and in dark mode."""
    unlabelled = driver.execute_script(UNLABELLED_JS)
    assert not unlabelled, f"{view}: fields without a label: {unlabelled}"
    for scheme in ["light", "dark"]:
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {
            "features": [{"name": "prefers-color-scheme", "value": scheme}]})
        low = driver.execute_script(CONTRAST_JS)
        assert not low, f"{view} ({scheme}): text below 4.5:1: {low[:10]}"
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})


def state_of(row):
    """The state badge of a row of the deliveries list (its sixth column)."""
    badges = row.find_elements(By.CSS_SELECTOR, "td:nth-child(6) .badge")
    return badges[0].text if badges else None


def shot(driver, shots, name):
    driver.save_screenshot(os.path.join(shots, f"{name}.png"))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    parser.add_argument("--screenshots", required=True)
    args = parser.parse_args()
    shots = args.screenshots
    os.makedirs(shots, exist_ok=True)

    workdir = tempfile.mkdtemp(prefix="hookrelay-browser-")
    sink = Sink()
    sidecar = Sidecar(os.path.abspath(args.binary), sink, workdir)
    driver = browser()
    try:
        run(driver, sidecar, sink, shots)
        print("status page: every check passed; screenshots in", shots)
    except BaseException:
        print(sidecar.read_log()[-5000:], file=sys.stderr)
        raise
    finally:
        driver.quit()
        sidecar.stop()
        sink.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def run(driver, sidecar, sink, shots):
    # Refused without the token, over plain HTTP and in the browser.
    status, body = http("GET", sidecar.admin("/"))
    assert status == 401, status
    assert b"Admin token" in body and b"Overview" not in body, body[:300]
    status, _ = http("GET", sidecar.admin("/"), headers={"authorization": f"Bearer {TOKEN}"})
    assert status == 200, status
    status, _ = http("GET", sidecar.admin("/ui/deliveries"),
                     headers={"cookie": "hookrelay_session=" + "0" * 64})
    assert status == 401, status

    driver.get(sidecar.admin("/ui/deliveries"))
    assert "Sign in" in driver.title, driver.title
    assert not driver.find_elements(By.ID, "deliveries")
    accessible(driver, "sign-in", shots)
    shot(driver, shots, "sign-in")
    driver.find_element(By.ID, "token").send_keys("not-the-token")
    driver.find_element(By.CSS_SELECTOR, "form.login button").click()
    wait(driver, "the wrong token refused", lambda d: "Wrong token." in d.page_source)
    assert not driver.find_elements(By.ID, "deliveries")
    driver.find_element(By.ID, "token").send_keys(TOKEN)
    driver.find_element(By.CSS_SELECTOR, "form.login button").click()
    # Back where the sign-in was asked for.
    wait(driver, "the deliveries view", lambda d: d.find_elements(By.ID, "deliveries"))
    assert driver.current_url.endswith("/ui/deliveries"), driver.current_url
    assert TOKEN not in driver.page_source

    # A callback appears in the list without a reload: the marker set on this document
    # survives only if the document is not reloaded.
    driver.execute_script("window.__notReloaded = true;")
    sidecar.callback("Delivery", "ada@example.com", "msg-live-1")
    wait(driver, "the callback in the list",
         lambda d: any("postmark" in row.text and state_of(row) == "delivered"
             for row in d.find_elements(By.CSS_SELECTOR, "#deliveries tbody tr")))
    assert driver.execute_script("return window.__notReloaded === true;"), "the page was reloaded"
    accessible(driver, "deliveries", shots)
    shot(driver, shots, "deliveries")

    # Live updates can be paused (WCAG 2.2.2) and resumed, from a labelled toggle.
    toggle = driver.find_element(By.CSS_SELECTOR, "#live-control button")
    assert toggle.get_attribute("aria-pressed") == "false"
    toggle.click()
    assert toggle.get_attribute("aria-pressed") == "true"
    assert "paused" in driver.find_element(By.ID, "live-control").text
    toggle.click()
    assert toggle.get_attribute("aria-pressed") == "false"

    # One delivery: payload, headers with secrets redacted, attempts.
    driver.find_element(By.CSS_SELECTOR, "#deliveries tbody tr a").click()
    wait(driver, "the delivery view", lambda d: d.find_elements(By.ID, "delivery"))
    text = driver.find_element(By.ID, "delivery").text
    assert "msg-live-1" in text, text  # the payload, pretty
    assert "x-team" in text and "growth" in text, text
    assert SINK_SECRET not in driver.page_source, "a secret header value is shown"
    assert "redacted" in text, text
    assert "webhook-signature" in text, text
    accessible(driver, "delivery", shots)
    shot(driver, shots, "delivery")

    # A dead letter replayed from the page, then delivered.
    sink.set_status("/crm", 400)
    driver.get(sidecar.admin("/ui/dead-letters"))
    driver.execute_script("window.__notReloaded = true;")
    sidecar.callback("Delivery", "grace@example.com", "msg-dead-1")
    card = wait(driver, "the dead letter", lambda d: [
        c for c in d.find_elements(By.CSS_SELECTOR, "#letters section.card")
        if [dd.text for dd in c.find_elements(
            By.XPATH, ".//dt[normalize-space()='Status']/following-sibling::dd[1]")] == ["400"]])
    assert driver.execute_script("return window.__notReloaded === true;"), "the page was reloaded"
    assert "msg-dead-1" in driver.page_source  # the payload, in its <details>
    accessible(driver, "dead letters", shots)
    shot(driver, shots, "dead-letters")
    sink.set_status("/crm", 200)
    before = sink.count("/crm")
    card[0].find_element(By.XPATH, ".//button[starts-with(normalize-space(), 'Replay')]").click()
    wait(driver, "the replay's notice", lambda d: "replayed" in d.find_element(By.ID, "notice").text)
    eventually("the replayed delivery at the sink", lambda: sink.count("/crm") > before)
    wait(driver, "the dead letter gone", lambda d: "No dead letters." in d.find_element(By.ID, "letters").text)
    driver.get(sidecar.admin("/ui/deliveries?state=delivered"))
    wait(driver, "the replayed delivery delivered", lambda d: len(
        [row for row in d.find_elements(By.CSS_SELECTOR, "#deliveries tbody tr")
         if state_of(row) == "delivered"]) >= 2)
    status, body = http("GET", sidecar.admin("/dead-letters"),
                        headers={"authorization": f"Bearer {TOKEN}"})
    assert status == 200 and json.loads(body) == [], body
    # The delivery's own view says delivered, with the 400 and the 200 among its attempts.
    links = driver.find_elements(By.CSS_SELECTOR, "#deliveries tbody tr a")
    found = False
    for href in [a.get_attribute("href") for a in links]:
        driver.get(href)
        text = driver.find_element(By.ID, "delivery").text
        if "msg-dead-1" in text:
            found = True
            badge = driver.find_element(By.CSS_SELECTOR, "#delivery h2 .badge").text
            assert badge == "delivered", badge
            rows = [(tr.find_element(By.CSS_SELECTOR, "td:nth-child(3)").text,
                     tr.find_element(By.CSS_SELECTOR, "td:nth-child(4)").text)
                    for tr in driver.find_elements(By.CSS_SELECTOR, "#delivery table:not(.kv) tbody tr")]
            # Refused with 400, replayed from the page (no status of its own), delivered.
            assert rows == [("dead", "400"), ("replayed", "—"), ("delivered", "200")], rows
            break
    assert found, "the replayed delivery is not in the delivered list"

    # Paused by 410 Gone, shown, and resumed from the keyboard.
    sink.set_status("/crm", 410)
    driver.get(sidecar.admin("/ui/endpoints"))
    driver.execute_script("window.__notReloaded = true;")
    sidecar.callback("Delivery", "linus@example.com", "msg-paused-1")
    wait(driver, "the endpoint paused", lambda d: "Paused: the endpoint answered 410"
         in d.find_element(By.ID, "endpoints").text)
    assert driver.execute_script("return window.__notReloaded === true;"), "the page was reloaded"
    accessible(driver, "endpoints", shots)
    shot(driver, shots, "endpoints-paused")
    sink.set_status("/crm", 200)
    before = sink.count("/crm")
    resume = driver.find_element(By.XPATH, "//button[normalize-space()='Resume crm']")
    driver.execute_script("arguments[0].focus();", resume)
    resume.send_keys(Keys.ENTER)
    wait(driver, "the resume's notice", lambda d: "Endpoint crm resumed." in d.find_element(By.ID, "notice").text)
    wait(driver, "the paused state cleared", lambda d: "Paused" not in d.find_element(By.ID, "endpoints").text
         and "active" in d.find_element(By.ID, "endpoints").text)
    eventually("the held delivery at the sink", lambda: sink.count("/crm") > before)

    # The overview, in light and dark mode, and on a phone.
    driver.get(sidecar.admin("/"))
    wait(driver, "the overview", lambda d: d.find_elements(By.ID, "endpoint-charts"))
    overview = driver.find_element(By.ID, "main").text
    assert "/cb/postmark" in overview and "crm" in overview, overview
    routes = driver.find_element(By.ID, "routes").text
    assert "postmark 3 0" in " ".join(routes.split()), routes
    charts = driver.find_elements(By.CSS_SELECTOR, "svg.chart")
    assert charts and "delivered" in charts[0].get_attribute("aria-label"), charts
    # A configuration refused by a reload shows, with the reason, while the old one runs.
    with open(sidecar.config) as f:
        good = f.read()
    driver.execute_script("window.__notReloaded = true;")
    with open(sidecar.config, "w") as f:
        f.write(good.replace("provider: postmark", "provider: no_such_provider"))
    wait(driver, "the refused reload", lambda d: "rejected" in d.find_element(By.ID, "config").text
         and "no_such_provider" in d.find_element(By.ID, "config").text)
    assert driver.execute_script("return window.__notReloaded === true;"), "the page was reloaded"
    assert "Running the file on disk\nno" in driver.find_element(By.ID, "config").text
    accessible(driver, "overview", shots)
    shot(driver, shots, "overview")
    with open(sidecar.config, "w") as f:
        f.write(good)
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {
        "features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    shot(driver, shots, "overview-dark")
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    # The keyboard: the first Tab reaches the skip link, which leads to the content.
    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    active = driver.switch_to.active_element
    assert active.get_attribute("class") == "skip", active.get_attribute("outerHTML")
    driver.set_window_size(390, 844)
    driver.get(sidecar.admin("/ui/deliveries"))
    wait(driver, "the deliveries view", lambda d: d.find_elements(By.ID, "deliveries"))
    shot(driver, shots, "deliveries-phone")
    driver.set_window_size(1280, 1000)

    # Cross-site actions are refused even with the session cookie.
    status, _ = http("POST", sidecar.admin("/ui/endpoints/crm/resume"), b"back=/",
                     {"authorization": f"Bearer {TOKEN}", "origin": "http://evil.example",
                      "host": f"127.0.0.1:{sidecar.admin_port}",
                      "content-type": "application/x-www-form-urlencoded"})
    assert status == 403, status

    # Signing out ends the session.
    driver.find_element(By.CSS_SELECTOR, "form.signout button").click()
    wait(driver, "the sign-in page", lambda d: d.find_elements(By.ID, "token"))
    driver.get(sidecar.admin("/"))
    assert driver.find_elements(By.ID, "token") and not driver.find_elements(By.ID, "routes")


if __name__ == "__main__":
    main()
