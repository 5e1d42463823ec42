"""What the browser tests share: Debian's headless Chromium driven over WebDriver (selenium),
and checks that print one line each and stop at the first failure, saying where the browser
was when it failed."""

import re
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

_CURRENT = []


def browser(width=1280, height=900):
    """A new headless Chromium; failed checks describe its page."""
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              f"--window-size={width},{height}", "--no-first-run", "--password-store=basic",
              "--disable-background-networking", "--disable-component-update", "--disable-sync"]:
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    _CURRENT[:] = [driver]
    return driver


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        for d in _CURRENT:
            try:
                found = re.findall(r"ERR_[A-Z_]+|<p[^>]*>[^<]*", d.page_source)[:10]
                print("--- at", d.current_url, found, flush=True)
            except Exception:  # noqa: BLE001 - the browser may be gone
                pass
        raise SystemExit(1)


def wait(cond, seconds=10):
    """Whether `cond()` becomes true within `seconds` (pages load after a click returns)."""
    end = time.time() + seconds
    while True:
        try:
            if cond():
                return True
        except Exception:  # noqa: BLE001 - a page mid-load
            pass
        if time.time() > end:
            return False
        time.sleep(0.1)
