"""Shared helpers for the dashboard's browser tests.

The tests start the real cluster with scripts/run.sh (Consul or its stand-in, two inference
nodes, the gateway; release build) on its default ports, or on GATEWAY_PORT, CONSUL_PORT and
NODE_PORTS when set (the variables run.sh reads), and fail with a clear message when a port is
taken. They drive the system's Chromium, headless, through the system's chromedriver
(Debian's `chromium` and `chromium-driver`; scripts/test.sh installs them), and never download
a browser or a driver.
"""
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time

import pytest
import requests

ROOT = pathlib.Path(__file__).resolve().parents[2]
GATEWAY_PORT = int(os.environ.get("GATEWAY_PORT", "8000"))
CONSUL_PORT = int(os.environ.get("CONSUL_PORT", "8500"))
NODE_PORTS = [int(p) for p in os.environ.get("NODE_PORTS", "5001 5002").split()]
GATEWAY = f"http://127.0.0.1:{GATEWAY_PORT}"
# run.sh may build the release binaries first (minutes on a cold cache).
READY_SECS = float(os.environ.get("BROWSER_TEST_READY_SECS", "1800"))
# Longest wait for anything on the page (a launch, a node joining through Consul, ...).
WAIT_SECS = 45.0
LOG_DIR = ROOT / "target" / "browser-tests"


def port_busy(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_until(what: str, check, timeout: float = WAIT_SECS, interval: float = 0.2):
    """Polls `check()` until it returns a truthy value, which is returned; fails after `timeout`
    seconds saying `what` was awaited and what `check` last raised."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as error:  # noqa: BLE001 - the last error is reported below
            last = error
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last!r})")


class Cluster:
    """scripts/run.sh in the background, in its own session; stopped with SIGTERM, as a user's
    Ctrl-C would (run.sh stops the gateway, the nodes it launched, the nodes, Consul)."""

    def __init__(self, name: str, env: dict[str, str]):
        ports = [GATEWAY_PORT, CONSUL_PORT, *NODE_PORTS]
        busy = [p for p in ports if port_busy(p)]
        if busy:
            pytest.fail(
                f"port(s) {busy} are in use on 127.0.0.1 (a cluster already running?): the browser "
                "tests start scripts/run.sh on ports "
                f"{ports}. Stop what listens there, or set GATEWAY_PORT, CONSUL_PORT and NODE_PORTS."
            )
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"run-{name}.log"
        self.log = open(self.log_path, "w")
        full_env = dict(os.environ)
        full_env.pop("GATEWAY_ADMIN_TOKEN", None)
        full_env.update(env)
        self.proc = subprocess.Popen(
            [str(ROOT / "scripts" / "run.sh")],
            cwd=ROOT,
            env=full_env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + READY_SECS
        while "The cluster is running" not in self.log_path.read_text(errors="replace"):
            if self.proc.poll() is not None:
                self.stop()
                pytest.fail(f"scripts/run.sh exited with {self.proc.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"scripts/run.sh not ready within {READY_SECS:.0f}s:\n{self.tail()}")
            time.sleep(0.5)

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def chrome_paths() -> tuple[str, str]:
    browser = next(
        (p for p in map(shutil.which, ["chromium", "chromium-browser", "google-chrome"]) if p), None
    )
    driver = shutil.which("chromedriver") or (
        "/usr/lib/chromium/chromedriver" if os.path.exists("/usr/lib/chromium/chromedriver") else None
    )
    if not browser or not driver:
        pytest.fail(
            "no Chromium and chromedriver on this machine: install Debian's packages "
            "(apt-get install -y chromium chromium-driver; scripts/test.sh does so when it can)"
        )
    return browser, driver


def make_browser(width: int = 1280, height: int = 900):
    """A headless Chromium driven through the system's chromedriver (nothing is downloaded)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not look for downloads
    browser, driver = chrome_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in [
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        f"--window-size={width},{height}",
        "--force-device-scale-factor=1",
        "--lang=en-US",
    ]:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=driver, log_output=str(LOG_DIR / "chromedriver.log"))
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    drv = webdriver.Chrome(options=options, service=service)
    drv.set_page_load_timeout(30)
    drv.set_script_timeout(30)
    return drv


@pytest.fixture(scope="module")
def api():
    session = requests.Session()
    session.trust_env = False
    return session
