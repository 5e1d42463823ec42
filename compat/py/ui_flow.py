"""The web UI end to end, in headless Chromium driven over WebDriver: sign in with a password,
run a real SDK `Eval` twice, open the link it prints, compare the two experiments, open a
trace, open the links `span.link()` and `span.permalink()` make, filter and search the logs,
and check as a member who may read one project what they see. Every page is checked with
axe-core (no serious or critical violation) and saved as a screenshot.

Environment: HOLDFAST (base URL), OWNER_KEY (an Owner's API key, which the SDK runs use),
INVITE (a set-password link for ann@acme.test, an Owner), READER_INVITE (one for
rita@acme.test, in a group that may read the project "Say Hi Bot" only), AXE (the path of
axe.min.js), SHOTS (a folder for screenshots). Prints one line per check; exits non-zero on
the first failure.
"""

import io
import json
import os
import re
import struct
import sys
import time
import urllib.parse
import zlib
from contextlib import redirect_stderr, redirect_stdout

import braintrust
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from chromium import browser, check, wait

HF = os.environ["HOLDFAST"].rstrip("/")
KEY = os.environ["OWNER_KEY"]
SHOTS = os.environ["SHOTS"]
AXE = open(os.environ["AXE"], encoding="utf-8").read()
API = {"Authorization": f"Bearer {KEY}"}
PROJECT = "Say Hi Bot"
PASSWORD = "a long passphrase for the ui test"
TIMES = {}


def shot(d, name):
    d.save_screenshot(os.path.join(SHOTS, f"{name}.png"))


def accessible(d, what):
    """Runs axe-core on the page; no serious or critical violation may remain."""
    d.execute_script(AXE)
    found = d.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a',"
        " 'wcag21aa', 'best-practice']}}).then(r => done(r.violations.map(v => ({id: v.id,"
        " impact: v.impact, nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))))"
        ".catch(e => done([{id: 'axe failed', impact: 'critical', nodes: [String(e)]}]));")
    bad = [v for v in found if v["impact"] in ("serious", "critical")]
    check(not bad, f"axe-core: no serious issue on {what} {json.dumps(bad)[:600]}")


def page(d, url, name, what):
    """Opens `url`, checks it is a page of ours that rendered, runs axe, saves a shot."""
    started = time.time()
    d.get(url)
    TIMES[name] = time.time() - started
    check(wait(lambda: d.find_element(By.ID, "main")), f"{what} renders")
    accessible(d, what)
    shot(d, name)


def set_password(d, link, password):
    d.delete_all_cookies()
    d.get(link)
    check(wait(lambda: d.find_element(By.ID, "password")), "the set-password page opens")
    d.find_element(By.ID, "password").send_keys(password)
    d.find_element(By.ID, "confirm").send_keys(password)
    d.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    check(wait(lambda: "password_set" in d.current_url), "the password is set")


def sign_in_here(d, email, password):
    """On the sign-in page the browser was sent to: sign in, and it returns where it was."""
    check(wait(lambda: d.find_element(By.ID, "email")), "the sign-in page asks for a password")
    d.find_element(By.ID, "email").send_keys(email)
    d.find_element(By.ID, "password").send_keys(password)
    d.find_element(By.CSS_SELECTOR, "form[action='/login'] button[type=submit]").click()


def run_evals():
    """Two runs of the same Eval; the second regresses on every row. Returns the printed
    links."""
    from braintrust import Eval

    def exact(input, output, expected):
        return 1.0 if output == expected else 0.0

    def greet(greeting):
        return lambda inp: greeting + inp

    links = []
    for run, greeting in [("1", "Hi "), ("2", "Hello ")]:
        printed = io.StringIO()
        with redirect_stdout(printed), redirect_stderr(printed):
            Eval(PROJECT,
                 data=lambda: [{"input": n, "expected": "Hi " + n} for n in ["Foo", "Bar", "Bob"]],
                 task=greet(greeting),
                 scores=[exact], experiment_name=f"greeting-{run}")
        found = re.findall(r"See results for \S+ at (\S+)", printed.getvalue())
        check(len(found) == 1, f"Eval run {run} prints its link"
              + ("" if found else f": {printed.getvalue()[-2000:]!r}"))
        links.append(found[0])
    return links


def png(width, height, rgb):
    """A PNG image of one colour."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


# A screenshot the LLM span carries as an attachment, uploaded by the SDK.
SCREENSHOT = png(24, 16, (200, 40, 40))


def log_traces():
    """A chat trace with an LLM child (whose output holds an image as base64, and whose
    metadata an image attachment) and a failed trace; returns (span.link(),
    span.permalink()) of the chat's root."""
    logger = braintrust.init_logger(project=PROJECT)
    with logger.start_span(name="support chat") as span:
        span.log(input=[{"role": "system", "content": "Answer briefly."},
                        {"role": "user", "content": "Where is my <b>order</b>?"}],
                 output="On its way.", metadata={"user_id": "u-42"})
        with span.start_span(name="model call", type="llm") as child:
            child.log(input={"messages": [{"role": "user", "content": "Where is my order?"}]},
                      output={"image": "data:image/png;base64," + "iVBORw0KGgo" * 100},
                      metrics={"prompt_tokens": 12, "completion_tokens": 4, "tokens": 16},
                      metadata={"screenshot": braintrust.Attachment(
                          data=SCREENSHOT, filename="screen.png", content_type="image/png")})
        link, permalink = span.link(), span.permalink()
    with logger.start_span(name="refund request") as span:
        span.log(input="refund order 7", error="ValueError: order 7 not found",
                 metadata={"user_id": "u-7"})
    logger.flush()
    return link, permalink


def saml_idp():
    """Starts the local SAML identity provider (compat/py/saml_idp.py) on a free port:
    (process, base URL)."""
    import socket
    import subprocess
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    idp = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), "saml_idp.py"), str(port)],
                           stdout=subprocess.PIPE, text=True)
    line = idp.stdout.readline()
    check(line.startswith("ready "), f"the SAML identity provider starts: {line!r}")
    return idp, f"http://127.0.0.1:{port}"


def oidc_provider():
    """Starts the local OpenID provider (npm oidc-provider, compat/js/oidc_provider.mjs) for
    this server's callback: (process, issuer)."""
    import socket
    import subprocess
    ports = []
    for _ in range(2):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
    script = os.path.join(os.path.dirname(__file__), "..", "js", "oidc_provider.mjs")
    provider = subprocess.Popen(["node", script, str(ports[0]), f"{HF}/auth/oidc/callback", "holdfast-ui",
                                 "ui-client-secret", str(ports[1])],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = provider.stdout.readline()
    check(line.startswith("ready "), f"the OpenID provider starts: {line!r}")
    # It keeps writing notices: read them, or a full pipe would stop it.
    import threading
    threading.Thread(target=lambda: provider.stdout.read(), daemon=True).start()
    return provider, line[len("ready "):].strip()


def grant_here(d, url, kind, name, held=lambda: None):
    """Grants group Reviewers Viewer on the object of page `url` alone from its access
    section, then revokes it there; returns what `held()` said while the grant was there."""
    d.get(url)
    d.find_element(By.CSS_SELECTOR, "#access summary").click()
    Select(d.find_element(By.ID, "grant-who")).select_by_visible_text("group Reviewers")
    Select(d.find_element(By.ID, "grant-on")).select_by_visible_text(f"this {kind} only")
    Select(d.find_element(By.ID, "grant-role")).select_by_visible_text("Viewer")
    d.find_element(By.CSS_SELECTOR, "#grant button").click()
    granted = lambda: [r for r in d.find_elements(By.CSS_SELECTOR, "#access tbody tr")
                       if "Reviewers" in r.get_attribute("textContent")]
    check(wait(lambda: granted() and f"this {kind}" in granted()[0].get_attribute("textContent")),
          f"a grant on the {kind} alone is made from its page")
    found = held()
    d.find_element(By.CSS_SELECTOR, "#access summary").click()
    accessible(d, f"the {kind}'s access section")
    shot(d, name)
    granted()[0].find_element(By.CSS_SELECTOR, "form.revoke-grant button").click()
    d.switch_to.alert.accept()
    check(wait(lambda: d.find_elements(By.ID, "access") and not granted()), "and revoked there")
    return found


def main():
    os.environ["BRAINTRUST_API_KEY"] = KEY
    os.environ["BRAINTRUST_APP_URL"] = HF
    links = run_evals()
    check(links[1].startswith(f"{HF}/app/"), "the printed link points at this server")
    link, permalink = log_traces()

    d = browser(1440, 1000)
    try:
        set_password(d, os.environ["INVITE"], PASSWORD)
        # The link Eval printed: sign in first, then the page itself.
        d.get(links[1])
        check(wait(lambda: "/login" in d.current_url), "a signed-out browser is sent to sign in")
        sign_in_here(d, "ann@acme.test", PASSWORD)
        check(wait(lambda: d.current_url == links[1]), "after signing in it returns to the link")
        check(wait(lambda: "greeting-2" in d.find_element(By.TAG_NAME, "h1").text),
              "the printed link opens its experiment")
        accessible(d, "the experiment page")
        shot(d, "01-experiment")
        check(d.find_element(By.ID, "baseline").text == "greeting-1",
              "the previous run is the baseline")
        summary = d.find_element(By.ID, "summary").text
        check("exact" in summary and "-100.0" in summary, f"the score's change is shown: {summary!r}")
        cells = [c.text for c in d.find_elements(By.CSS_SELECTOR, "#summary td")]
        check(cells[-1] == "3", f"three regressions counted: {cells}")
        rows = d.find_elements(By.CSS_SELECTOR, "#rows tbody tr")
        check(len(rows) == 3 and all("regressed" in r.get_attribute("class") for r in rows),
              "every row is matched by input and marked regressed")
        check("Hi Foo" in d.find_element(By.ID, "rows").text, "the baseline's output is side by side")
        marked = lambda css: [e.text for e in d.find_elements(By.CSS_SELECTOR, css)]
        check(marked("#rows td.output ins") == ["Hello"] * 3 and marked("#rows td.changed del") == ["Hi"] * 3,
              f"the words that differ are marked on each side: {marked('#rows td.output ins')} "
              f"{marked('#rows td.changed del')}")
        Select(d.find_element(By.ID, "sort")).select_by_value("regression")
        d.find_element(By.ID, "apply").click()
        check(wait(lambda: "sort=regression" in d.current_url), "rows sort by regression")
        page(d, d.current_url, "02-experiment-by-regression", "the sorted experiment page")

        # A row's trace.
        d.find_element(By.CSS_SELECTOR, "#rows tbody tr td a").click()
        check(wait(lambda: d.find_element(By.CSS_SELECTOR, "ol.spans")), "a row opens its trace")
        names = [e.text for e in d.find_elements(By.CSS_SELECTOR, "ol.spans .name")]
        check("exact" in names and len(names) >= 3, f"the span tree holds the task and the score: {names}")
        accessible(d, "an experiment trace")
        shot(d, "03-experiment-trace")
        # The row against the baseline's row with the same input.
        against = d.find_element(By.ID, "row-compare").text
        check("Compared with greeting-1" in against and "-100.0" in against,
              f"the row's scores are compared with the baseline's row: {against!r}")
        check(marked("#baseline-output del") == ["Hi"] and marked("#row-output ins") == ["Hello"],
              "the two outputs' word diff")
        d.find_element(By.ID, "baseline-trace").click()
        check(wait(lambda: "/experiments/greeting-1?" in d.current_url
                   and "Compared with greeting-2" in d.find_element(By.ID, "row-compare").text),
              "the baseline row's trace opens, compared the other way")
        check(wait(lambda: d.find_element(By.CSS_SELECTOR, "ol.spans")), "with its span tree")
        accessible(d, "a baseline trace compared with a row")
        shot(d, "03b-baseline-row-trace")

        # The experiments list with its chart.
        page(d, f"{HF}/app/default/p/{urllib.parse.quote(PROJECT)}/experiments", "04-experiments",
             "the experiments list")
        check(len(d.find_elements(By.CSS_SELECTOR, "#experiments tbody tr")) == 2, "both experiments listed")
        check(len(d.find_elements(By.CSS_SELECTOR, "figure.chart circle")) == 2, "the score chart has both runs")

        # A dataset to add spans to.
        pid = requests.get(f"{HF}/v1/project", headers=API, params={"project_name": PROJECT},
                           timeout=10).json()["objects"][0]["id"]
        dataset = requests.post(f"{HF}/v1/dataset", headers=API, timeout=10,
                                json={"project_id": pid, "name": "Hard questions"}).json()

        # span.link() and span.permalink() open the chat's trace.
        for name, url in [("05-span-link", link), ("06-permalink", permalink)]:
            page(d, url, name, f"the {name[3:]}")
            check("/logs?oid=" in d.current_url, f"the {name[3:]} lands on the trace in logs")
            conv = d.find_elements(By.CSS_SELECTOR, "#span ol.chat li")
            check(len(conv) == 2, "the chat input is rendered as a conversation")
            check("<b>order</b>" in d.find_element(By.ID, "span").text, "message text is escaped, not markup")
        # Add the chat's root span to the dataset.
        Select(d.find_element(By.ID, "dataset")).select_by_visible_text("Hard questions")
        d.find_element(By.CSS_SELECTOR, "#add-to-dataset button").click()
        status = lambda: d.find_element(By.CSS_SELECTOR, "#add-to-dataset [role=status]").text
        check(wait(lambda: "Added" in status()), f"the span is added to the dataset {status()!r}")
        events = requests.post(f"{HF}/v1/dataset/{dataset['id']}/fetch", headers=API, json={},
                               timeout=10).json()["events"]
        check(len(events) == 1 and events[0]["input"][1]["content"] == "Where is my <b>order</b>?"
              and events[0]["expected"] == "On its way.", "the dataset row holds the span's input and output")
        d.find_element(By.PARTIAL_LINK_TEXT, "model call").click()
        check(wait(lambda: "model call" in d.find_element(By.CSS_SELECTOR, "#span h2").text),
              "a span of the tree opens its detail")
        detail = d.find_element(By.ID, "span").text
        check("iVBORw0KGgo" not in d.page_source and "not shown" in detail,
              "a base64 image is never rendered as text")
        check(len(d.find_elements(By.CSS_SELECTOR, ".track .bar.t-llm")) == 1, "the timeline colours the LLM span")
        # The attachment the SDK uploaded: shown as an image, and its link downloads it.
        img = lambda: d.find_element(By.CSS_SELECTOR, "#span div.attachment img")
        check(wait(lambda: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth",
                                            img()) == 24),
              "the span's image attachment is shown")
        href = d.find_element(By.CSS_SELECTOR, "#span div.attachment a[download]").get_attribute("href")
        got = d.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch(arguments[0]).then(r => r.arrayBuffer()).then(b => done(Array.from(new Uint8Array(b))))"
            ".catch(e => done(String(e)));", href)
        check(isinstance(got, list) and bytes(got) == SCREENSHOT,
              f"its download link gives the bytes the SDK uploaded ({len(got)} of {len(SCREENSHOT)})")
        shot(d, "07-llm-span")

        # The logs: table, filter, search, errors, a bad filter.
        logs = f"{HF}/app/default/p/{urllib.parse.quote(PROJECT)}/logs"
        page(d, logs, "08-logs", "the logs table")
        check(len(d.find_elements(By.CSS_SELECTOR, "#logs tbody tr")) == 2, "both traces are listed")
        live = d.find_element(By.ID, "live")
        check(live.is_displayed(), "the page's script offers live refresh")
        live.click()
        logger = braintrust.init_logger(project=PROJECT)
        with logger.start_span(name="arrived later") as span:
            span.log(input="late question", output="late answer")
        logger.flush()
        check(wait(lambda: len(d.find_elements(By.CSS_SELECTOR, "#logs tbody tr")) == 3
                   and "arrived later" in d.find_element(By.ID, "logs").text, 15),
              "a new trace appears without reloading the page")
        live.click()
        box = d.find_element(By.ID, "filter")
        box.send_keys("metadata.user_id = 'u-42'")
        box.submit()
        check(wait(lambda: "filter=" in d.current_url), "the filter is applied")
        rows = d.find_elements(By.CSS_SELECTOR, "#logs tbody tr")
        check(len(rows) == 1 and "support chat" in rows[0].text, "a WHERE filter narrows the logs")
        accessible(d, "the filtered logs")
        shot(d, "09-logs-filtered")
        d.get(f"{logs}?search=refund")
        rows = d.find_elements(By.CSS_SELECTOR, "#logs tbody tr")
        check(len(rows) == 1 and "refund request" in rows[0].text, "full-text search finds the trace")
        d.get(f"{logs}?errors=1")
        rows = d.find_elements(By.CSS_SELECTOR, "#logs tbody tr")
        check(len(rows) == 1 and "refund request" in rows[0].text, "the errors view shows the failed trace")
        d.get(f"{logs}?filter=" + urllib.parse.quote("metadata.user_id = "))
        check("line 1" in d.find_element(By.ID, "problem").text, "a bad filter is explained, with its position")
        accessible(d, "a logs page with a bad filter")
        shot(d, "10-logs-bad-filter")
        d.get(f"{logs}?col=time&col=name")
        heads = [h.text for h in d.find_elements(By.CSS_SELECTOR, "#logs thead th")]
        check(heads == ["Time", "Name"], f"columns can be chosen: {heads}")
        page(d, f"{HF}/app/default", "11-projects", "the projects page")
        # A wide monitor and a small laptop screen: the experiment page fills the one and
        # scrolls its tables (not the page) on the other.
        for size, name in [((2560, 1440), "11b-experiment-wide"), ((1280, 720), "11c-experiment-laptop")]:
            d.set_window_size(*size)
            page(d, links[1], name, f"the experiment page at {size[0]}x{size[1]}")
            overflow = d.execute_script("return document.documentElement.scrollWidth > window.innerWidth")
            check(not overflow, f"no sideways scrolling of the page at {size[0]}x{size[1]}")
        d.set_window_size(1440, 1000)

        # The dataset: its row, then add, edit, import and delete rows.
        ds_page = f"{HF}/app/default/p/{urllib.parse.quote(PROJECT)}/datasets/Hard%20questions"
        page(d, ds_page, "14-dataset", "the dataset page")
        dataset_rows = lambda: d.find_elements(By.CSS_SELECTOR, "#dataset-rows tbody tr")
        check(len(dataset_rows()) == 1 and "Where is my" in dataset_rows()[0].text, "the added row is listed")
        d.find_element(By.CSS_SELECTOR, "details.panel summary").click()
        d.find_element(By.ID, "new-input").send_keys('{"question": "What is 2+2?"}')
        d.find_element(By.ID, "new-expected").send_keys('"4"')
        d.find_element(By.CSS_SELECTOR, "#add-row button").click()
        check(wait(lambda: len(dataset_rows()) == 2), "a row is added from the page")
        d.find_element(By.CSS_SELECTOR, "details.panel summary").click()
        bad = d.find_element(By.ID, "new-input")
        bad.clear()
        bad.send_keys("{not json")
        d.find_element(By.CSS_SELECTOR, "#add-row button").click()
        check(wait(lambda: "not JSON" in d.find_element(By.CSS_SELECTOR, "#add-row [role=status]").text),
              "a value that is not JSON is refused before anything is sent")
        d.get(ds_page)
        first = dataset_rows()[0]
        first.find_element(By.CSS_SELECTOR, "td.actions summary").click()
        expected = first.find_element(By.CSS_SELECTOR, "textarea[name=expected]")
        expected.clear()
        expected.send_keys('"four"')
        first.find_element(By.CSS_SELECTOR, ".edit-row button").click()
        check(wait(lambda: "four" in d.find_element(By.ID, "dataset-rows").text), "a row is edited in place")
        import_file = os.path.join(SHOTS, "import.csv")
        with open(import_file, "w", encoding="utf-8") as f:
            f.write('question,answer,source\n"Capital of France?",Paris,atlas\n"3, then 4?",7,"quoted, with comma"\n')
        d.find_elements(By.CSS_SELECTOR, "details.panel summary")[1].click()
        d.find_element(By.ID, "import-file").send_keys(import_file)
        d.find_element(By.CSS_SELECTOR, "#read-import button").click()
        check(wait(lambda: d.find_element(By.ID, "import-map").is_displayed()), "the import shows its column mapping")
        check(Select(d.find_element(By.NAME, "map:question")).first_selected_option.text == "input"
              and Select(d.find_element(By.NAME, "map:answer")).first_selected_option.text == "expected",
              "columns are mapped by their names")
        accessible(d, "the import mapping")
        shot(d, "15-import-mapping")
        d.find_element(By.ID, "import").click()
        check(wait(lambda: len(dataset_rows()) == 4), "two CSV rows are imported")
        events = requests.post(f"{HF}/v1/dataset/{dataset['id']}/fetch", headers=API, json={},
                               timeout=10).json()["events"]
        imported = [e for e in events if (e.get("metadata") or {}).get("source") == "quoted, with comma"]
        check(len(imported) == 1 and imported[0]["input"] == "3, then 4?" and imported[0]["expected"] == 7,
              f"a quoted CSV cell keeps its comma and a number is read as one: {imported}")
        d.find_element(By.CSS_SELECTOR, ".delete-row button").click()
        d.switch_to.alert.accept()
        check(wait(lambda: len(dataset_rows()) == 3), "a row is deleted")
        page(d, ds_page, "16-dataset-edited", "the edited dataset")

        # Prompts: two versions and the change between them.
        def prompt_data(text, model):
            return {"prompt": {"type": "chat", "messages": [{"role": "system", "content": text}]},
                    "options": {"model": model}}
        made = requests.post(f"{HF}/v1/prompt", headers=API, timeout=10, json={
            "project_id": pid, "name": "Greeter", "slug": "greeter",
            "prompt_data": prompt_data("Greet {{name}} warmly.", "gpt-4o")}).json()
        changed = requests.patch(f"{HF}/v1/prompt/{made['id']}", headers=API, timeout=10, json={
            "prompt_data": prompt_data("Greet {{name}} briefly.", "gpt-4o-mini")})
        check(changed.ok, "a prompt has two versions")
        page(d, f"{HF}/app/default/p/{urllib.parse.quote(PROJECT)}/prompts", "23-prompts", "the prompts list")
        d.find_element(By.LINK_TEXT, "Greeter").click()
        check(wait(lambda: len(d.find_elements(By.CSS_SELECTOR, "ol.versions li")) == 2), "both versions are listed")
        d.find_element(By.ID, "compare").click()
        check(wait(lambda: d.find_elements(By.CSS_SELECTOR, "pre.diff")), "the change between versions is shown")
        removed = [e.text for e in d.find_elements(By.CSS_SELECTOR, "pre.diff del")]
        added = [e.text for e in d.find_elements(By.CSS_SELECTOR, "pre.diff ins")]
        check(any("warmly" in t for t in removed) and any("briefly" in t for t in added)
              and any("gpt-4o-mini" in t for t in added), f"the diff marks the changed lines: {removed} {added}")
        accessible(d, "the prompt diff")
        shot(d, "24-prompt-diff")

        # API keys: create (shown once), revoke.
        page(d, f"{HF}/app/default/keys", "17-keys", "the API keys page")
        d.find_element(By.ID, "key-name").send_keys("ui test key")
        d.find_element(By.CSS_SELECTOR, "#create-key button").click()
        check(wait(lambda: d.find_element(By.ID, "new-key").is_displayed()), "a new key is shown")
        secret = d.find_element(By.CSS_SELECTOR, "#new-key code").text
        check(requests.get(f"{HF}/v1/project", headers={"Authorization": f"Bearer {secret}"},
                           timeout=10).ok, "the new key works")
        check(wait(lambda: any("ui test key" in r.text
                               for r in d.find_elements(By.CSS_SELECTOR, "#keys tbody tr"))),
              "the new key is listed at once, without a reload")
        check(secret not in d.find_element(By.ID, "key-list").text, "and the list does not show its secret")
        shot(d, "18-key-created")
        d.get(f"{HF}/app/default/keys")
        check(secret not in d.page_source, "the key's secret is never shown again")
        row = [r for r in d.find_elements(By.CSS_SELECTOR, "#keys tbody tr") if "ui test key" in r.text][0]
        used = row.find_elements(By.TAG_NAME, "td")[5].text
        check(re.search(r"\d{4}-\d\d-\d\d: 1$", used) is not None, f"the key's use is counted per day: {used!r}")
        row.find_element(By.CSS_SELECTOR, ".revoke-key button").click()
        d.switch_to.alert.accept()
        check(wait(lambda: "revoked" in [r for r in d.find_elements(By.CSS_SELECTOR, "#keys tbody tr")
                                          if "ui test key" in r.text][0].text), "the key is revoked")
        check(requests.get(f"{HF}/v1/project", headers={"Authorization": f"Bearer {secret}"},
                           timeout=10).status_code == 401, "the revoked key is refused")

        # A member who may read this project only: the owner grants the reader's group the
        # Viewer role on it.
        other = requests.post(f"{HF}/v1/project", headers=API, json={"name": "Private project"},
                              timeout=10)
        check(other.ok, "a second project exists")
        page(d, f"{HF}/app/default/admin", "20-admin", "the administration page")
        check("ann@acme.test" in d.find_element(By.ID, "members").text, "members are listed")
        d.find_element(By.ID, "group-name").send_keys("Reviewers")
        d.find_element(By.CSS_SELECTOR, "#create-group button").click()
        group_row = lambda: [r for r in d.find_elements(By.CSS_SELECTOR, "#groups tbody tr") if "Reviewers" in r.text]
        check(wait(lambda: group_row()), "a group is created")
        member_of = lambda: group_row()[0].find_element(By.CSS_SELECTOR, "input[list=member-emails]")
        member_of().send_keys("nobody@acme.test")
        group_row()[0].find_element(By.CSS_SELECTOR, "button[value=add]").click()
        check(wait(lambda: "No member of the organization has the email nobody@acme.test"
                   in group_row()[0].find_element(By.CSS_SELECTOR, "[role=status]").text),
              "an email that is no member's is refused, naming it")
        member_of().clear()
        member_of().send_keys("ann@acme.test")
        group_row()[0].find_element(By.CSS_SELECTOR, "button[value=add]").click()
        check(wait(lambda: "ann@acme.test" in group_row()[0].find_elements(By.TAG_NAME, "td")[2].text),
              "a member is added to the group")
        member_of().send_keys("ann@acme.test")
        group_row()[0].find_element(By.CSS_SELECTOR, "button[value=remove]").click()
        check(wait(lambda: "ann@acme.test" not in group_row()[0].find_elements(By.TAG_NAME, "td")[2].text),
              "and removed from it")
        Select(d.find_element(By.ID, "grant-who")).select_by_visible_text("group Bot readers")
        Select(d.find_element(By.ID, "grant-on")).select_by_visible_text(f"project {PROJECT}")
        Select(d.find_element(By.ID, "grant-role")).select_by_visible_text("Viewer")
        d.find_element(By.CSS_SELECTOR, "#grant button").click()
        granted = lambda: [r.text for r in d.find_elements(By.CSS_SELECTOR, "#grants tbody tr")
                           if "Bot readers" in r.text]
        check(wait(lambda: granted() and f"project {PROJECT}" in granted()[0] and "Viewer" in granted()[0]),
              f"the grant is listed: {granted()}")
        shot(d, "21-granted")
        d.get(links[1])
        d.find_element(By.CSS_SELECTOR, "#access summary").click()
        access = d.find_element(By.ID, "access").text
        check("rita@acme.test" in access and "group Bot readers" in access and "project " + PROJECT in access,
              f"the experiment says who can see it, and why: {access!r}")
        shot(d, "21b-who-can-see")
        page(d, f"{HF}/app/default/audit?action=" + urllib.parse.quote("POST /v1/acl"), "22-audit",
             "the audit log filtered by action")
        entries = d.find_elements(By.CSS_SELECTOR, "#audit tbody tr")
        check(len(entries) == 1 and "ann@acme.test" in entries[0].text,
              "the audit log shows who granted it, and only that action")
        # Access to this experiment alone, and to the dataset alone, granted and revoked
        # from their own pages; the logs say who may read them.
        grant_here(d, links[1], "experiment", "21c-experiment-grant")
        acls = grant_here(d, ds_page, "dataset", "21d-dataset-grant",
                          lambda: requests.get(f"{HF}/v1/acl", headers=API, timeout=10,
                                               params={"object_type": "dataset", "object_id": dataset["id"]}
                                               ).json()["objects"])
        check(len(acls) == 1 and acls[0]["group_id"], f"the API held the dataset's grant: {acls}")
        d.get(logs)
        d.find_element(By.CSS_SELECTOR, "#access summary").click()
        access = d.find_element(By.ID, "access").text
        check("this project's logs" in access and "rita@acme.test" in access and "group Bot readers" in access,
              f"the logs say who can read them, and why: {access!r}")
        check("this project's logs only" in [o.text for o in Select(d.find_element(By.ID, "grant-on")).options],
              "and offer a grant on the logs alone")
        # A custom role: made on the admin page (refused without a permission), granted, and
        # deleted there with its grant.
        page(d, f"{HF}/app/default/admin#roles-h", "20f-admin-roles", "the roles")
        role_rows = lambda: {r.find_element(By.TAG_NAME, "td").text: r
                             for r in d.find_elements(By.CSS_SELECTOR, "#roles tbody tr")}
        check({"Owner built-in", "Engineer built-in", "Viewer built-in"} <= set(role_rows()),
              f"the built-in roles are listed: {list(role_rows())}")
        d.find_element(By.ID, "role-name").send_keys("Prompt editors")
        d.find_element(By.ID, "role-description").send_keys("Edit prompts, nothing else")
        Select(d.find_element(By.ID, "role-0-only")).select_by_value("prompt")
        d.find_element(By.CSS_SELECTOR, "#create-role button").click()
        status = lambda: d.find_element(By.CSS_SELECTOR, "#create-role [role=status]").text
        check(wait(lambda: "at least one permission" in status()), f"a role without permissions is refused {status()!r}")
        for perm in ["read", "update"]:
            d.find_element(By.ID, f"role-0-{perm}").click()
        d.find_element(By.CSS_SELECTOR, "#create-role button").click()
        check(wait(lambda: "Prompt editors" in role_rows()), "the custom role is made")
        allows = role_rows()["Prompt editors"].text
        check("read, update (prompt only)" in allows, f"with what it allows: {allows!r}")
        roles_api = requests.get(f"{HF}/v1/role", headers=API, timeout=10).json()["objects"]
        made = [r for r in roles_api if r["name"] == "Prompt editors"]
        check(len(made) == 1 and sorted(p["permission"] for p in made[0]["member_permissions"]) == ["read", "update"]
              and all(p["restrict_object_type"] == "prompt" for p in made[0]["member_permissions"]),
              f"the API holds it: {made}")
        # Changed in place, from the role's own edit form: one permission less, one more, one
        # on another object type (the form's next line), and what Viewer allows besides.
        role_rows()["Prompt editors"].find_element(By.CSS_SELECTOR, "a.change-role").click()
        check(wait(lambda: d.find_elements(By.CSS_SELECTOR, "#edit-role form[data-action=edit-role]")), "the role's edit form opens")
        edit = d.find_element(By.CSS_SELECTOR, "#edit-role form[data-action=edit-role]")
        lines = lambda: edit.find_elements(By.CSS_SELECTOR, "fieldset.permissions")
        box = lambda line, perm: lines()[line].find_element(By.CSS_SELECTOR, f"input[value={perm}]")
        check(len(lines()) == 2 and box(0, "update").is_selected() and not box(0, "delete").is_selected()
              and not box(1, "read").is_selected(), "the edit form shows the role's permissions, and a line to add")
        # Someone else changes the role meanwhile: the form's save is refused, and their
        # change stays.
        role_id = made[0]["id"]
        changed = requests.patch(f"{HF}/v1/role/{role_id}", headers=API, timeout=10,
                                 json={"remove_member_permissions": [{"permission": "read", "restrict_object_type": "prompt"}]})
        check(changed.status_code == 200 and changed.headers.get("etag", "").startswith('"'),
              f"the role is changed elsewhere: {changed.status_code} {changed.text}")
        box(0, "delete").click()
        edit.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        said = lambda: edit.find_element(By.CSS_SELECTOR, "[role=status]").text
        check(wait(lambda: "someone changed this role" in said()), f"a save over another's change is refused: {said()!r}")
        check("It now allows update (prompt only)." in said(), f"saying what the role allows now: {said()!r}")
        held = lambda: requests.get(f"{HF}/v1/role/{role_id}", headers=API, timeout=10).json()["member_permissions"]
        check(held() == [{"permission": "update", "restrict_object_type": "prompt"}],
              f"and the role is as the other change left it: {held()}")
        shot(d, "20g-admin-role-conflict")
        # The form kept the choices; saved again, they replace the role as it is now.
        check(box(0, "read").is_selected() and box(0, "update").is_selected() and box(0, "delete").is_selected(),
              "the refused form keeps its choices")
        edit.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        chosen = lambda: sorted(p["permission"] for p in held() if p["restrict_object_type"] == "prompt")
        check(wait(lambda: chosen() == ["delete", "read", "update"]), f"saved again, the choices replace the role: {held()}")
        # The saved form goes back to the roles (a navigation of its own, awaited before the
        # next one), where the role's edit form is opened again.
        check(wait(lambda: "role=" not in d.current_url and "Prompt editors" in role_rows()),
              f"the saved form returns to the roles: {d.current_url}")
        check(wait(lambda: role_rows()["Prompt editors"].find_element(By.CSS_SELECTOR, "a.change-role").click() or True),
              "the role's change link is followed")
        check(wait(lambda: d.find_elements(By.CSS_SELECTOR, "#edit-role form[data-action=edit-role]")), "the role's edit form opens")
        edit = d.find_element(By.CSS_SELECTOR, "#edit-role form[data-action=edit-role]")
        check(box(0, "update").is_selected() and box(0, "read").is_selected() and box(0, "delete").is_selected(),
              "reloaded, the form shows the role as it is now")
        box(0, "update").click()
        box(0, "create").click()
        box(0, "delete").click()
        Select(lines()[1].find_element(By.CSS_SELECTOR, "select[name=restrict]")).select_by_value("dataset")
        box(1, "read").click()
        Select(edit.find_element(By.CSS_SELECTOR, "select[name=includes]")).select_by_visible_text("Viewer")
        edit.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        check(wait(lambda: "what Viewer allows" in role_rows().get("Prompt editors", d.find_element(By.ID, "roles")).text),
              "the changed role includes Viewer")
        allows = role_rows()["Prompt editors"].text
        check("create (prompt only)" in allows and "dataset" in allows and "update" not in allows,
              f"and its permissions changed: {allows!r}")
        roles_api = requests.get(f"{HF}/v1/role", headers=API, timeout=10).json()["objects"]
        viewer_id = [r["id"] for r in roles_api if r["name"] == "Viewer"]
        made = [r for r in roles_api if r["name"] == "Prompt editors"]
        pairs = sorted((p["permission"], p["restrict_object_type"]) for p in made[0]["member_permissions"]) if made else []
        check(len(made) == 1 and pairs == [("create", "prompt"), ("read", "dataset"), ("read", "prompt")]
              and made[0]["member_roles"] == viewer_id, f"the API holds the change: {made}")
        role_rows()["Prompt editors"].find_element(By.CSS_SELECTOR, "a.change-role").click()
        check(wait(lambda: d.find_elements(By.CSS_SELECTOR, "#edit-role form[data-action=edit-role]")), "the role's edit form opens")
        edit = d.find_element(By.CSS_SELECTOR, "#edit-role form[data-action=edit-role]")
        shown = [(Select(l.find_element(By.CSS_SELECTOR, "select[name=restrict]")).first_selected_option.get_attribute("value"),
                  [c.get_attribute("value") for c in l.find_elements(By.CSS_SELECTOR, "input:checked")]) for l in lines()]
        check(len(shown) == 3 and shown[-1] == ("", [])
              and sorted(shown[:2]) == [("dataset", ["read"]), ("prompt", ["create", "read"])],
              f"the form shows one line per object type, and one to add: {shown}")
        accessible(d, "the roles with a custom one")
        shot(d, "20f-admin-roles")
        Select(d.find_element(By.ID, "grant-who")).select_by_visible_text("group Bot readers")
        Select(d.find_element(By.ID, "grant-on")).select_by_visible_text(f"project {PROJECT}")
        Select(d.find_element(By.ID, "grant-role")).select_by_visible_text("Prompt editors")
        d.find_element(By.CSS_SELECTOR, "#grant button").click()
        with_role = lambda: [r for r in d.find_elements(By.CSS_SELECTOR, "#grants tbody tr") if "Prompt editors" in r.text]
        check(wait(lambda: with_role()), "the custom role is granted like a built-in one")
        role_rows()["Prompt editors"].find_element(By.CSS_SELECTOR, "form.delete-role button").click()
        d.switch_to.alert.accept()
        check(wait(lambda: d.find_elements(By.ID, "roles") and "Prompt editors" not in role_rows()),
              "the custom role is deleted")
        check(not with_role(), "and its grant with it")
        check(not role_rows()["Viewer built-in"].find_elements(By.CSS_SELECTOR, "form.delete-role"),
              "a built-in role has no delete button")
        # Sign-in connections: a provider that cannot be read is refused with the reason; a
        # real SAML identity provider's metadata is read from its URL; then removed.
        page(d, f"{HF}/app/default/admin#signin-h", "20c-admin-sign-in", "the sign-in settings")
        d.find_element(By.XPATH, "//summary[text()='Add an OpenID Connect connection']").click()
        d.find_element(By.ID, "oidc-name").send_keys("Nowhere")
        d.find_element(By.ID, "oidc-issuer").send_keys("http://127.0.0.1:9/no-provider")
        d.find_element(By.ID, "oidc-client").send_keys("holdfast")
        d.find_element(By.ID, "oidc-secret").send_keys("a client secret")
        d.find_element(By.CSS_SELECTOR, "#add-oidc button").click()
        refused = lambda: d.find_element(By.CSS_SELECTOR, "#add-oidc [role=status]").text
        check(wait(lambda: refused().startswith("issuer: discovery failed")),
              f"an unreadable issuer is refused, named: {refused()!r}")
        # A real OpenID provider: its discovery document read, with scopes and a group mapping.
        provider, issuer = oidc_provider()
        org_id = requests.get(f"{HF}/v1/organization", headers=API, timeout=10).json()["objects"][0]["id"]
        try:
            for field, value in [("oidc-name", "Acme OIDC"), ("oidc-issuer", issuer), ("oidc-client", "holdfast-ui"),
                                 ("oidc-secret", "ui-client-secret"), ("oidc-scopes", "email profile groups"),
                                 ("oidc-claim", "groups"), ("oidc-mapping", "eng = Reviewers")]:
                d.find_element(By.ID, field).clear()
                d.find_element(By.ID, field).send_keys(value)
            d.find_element(By.CSS_SELECTOR, "#add-oidc button").click()
            oidc_row = lambda: [r for r in d.find_elements(By.CSS_SELECTOR, "#connections tbody tr") if "Acme OIDC" in r.text]
            check(wait(lambda: oidc_row() and "groups: eng → Reviewers" in oidc_row()[0].text),
                  f"an OpenID Connect connection is added with its group mapping: {[r.text for r in oidc_row()]}")
            oidc = requests.get(f"{HF}/v1/organization/{org_id}/oidc", headers=API, timeout=10).json()["objects"]
            check(any(c["issuer"] == issuer and c["scopes"] == ["email", "profile", "groups"]
                      and c["group_mapping"] == {"eng": "Reviewers"} for c in oidc),
                  f"the API holds its scopes and mapping: {oidc}")
            # Changed in place: the mapping and the verified-email rule; the secret is kept.
            d.find_element(By.XPATH, "//summary[text()='Change Acme OIDC']").click()
            edit = d.find_element(By.CSS_SELECTOR, "form[data-action=edit-oidc]")
            mapping = edit.find_element(By.CSS_SELECTOR, "textarea[name=mapping]")
            check(mapping.get_attribute("value").strip() == "eng = Reviewers", "the edit form shows the mapping")
            mapping.send_keys("\nops = Bot readers")
            Select(edit.find_element(By.CSS_SELECTOR, "select[name=verified]")).select_by_value("no")
            edit.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
            check(wait(lambda: oidc_row() and "ops → Bot readers" in oidc_row()[0].text),
                  f"the connection is changed: {[r.text for r in oidc_row()]}")
            oidc = requests.get(f"{HF}/v1/organization/{org_id}/oidc", headers=API, timeout=10).json()["objects"]
            check(any(c["group_mapping"] == {"eng": "Reviewers", "ops": "Bot readers"}
                      and c["require_verified_email"] is False and c["client_secret_set"]
                      and c["client_id"] == "holdfast-ui" for c in oidc),
                  f"the API holds the change and the secret: {oidc}")
            oidc_row()[0].find_element(By.CSS_SELECTOR, "form.remove-connection button").click()
            d.switch_to.alert.accept()
            check(wait(lambda: d.find_elements(By.ID, "connections") and not oidc_row()), "and it is removed")
        finally:
            provider.kill()
        idp, idp_url = saml_idp()
        try:
            d.get(f"{HF}/app/default/admin#signin-h")
            d.find_element(By.XPATH, "//summary[text()='Add a SAML connection']").click()
            d.find_element(By.ID, "saml-name").send_keys("Acme SAML")
            d.find_element(By.ID, "saml-url").send_keys(f"{idp_url}/metadata")
            d.find_element(By.ID, "saml-domains").send_keys("acme.test")
            d.find_element(By.ID, "saml-claim").send_keys("memberOf")
            said = lambda: d.find_element(By.CSS_SELECTOR, "#add-saml [role=status]").text
            for bad, says in [("admins", "group mapping, line 1"),
                              ("admins = Nobody", "group_mapping: the organization has no group named")]:
                d.find_element(By.ID, "saml-mapping").clear()
                d.find_element(By.ID, "saml-mapping").send_keys(bad)
                d.find_element(By.CSS_SELECTOR, "#add-saml button").click()
                check(wait(lambda: says in said()), f"a bad group mapping is refused: {said()!r}")
            d.find_element(By.ID, "saml-mapping").clear()
            d.find_element(By.ID, "saml-mapping").send_keys("admins = Bot readers\ncn=ops,ou=groups = Reviewers")
            d.find_element(By.CSS_SELECTOR, "#add-saml button").click()
            row = lambda: [r for r in d.find_elements(By.CSS_SELECTOR, "#connections tbody tr") if "Acme SAML" in r.text]
            check(wait(lambda: row() and idp_url in row()[0].text and "acme.test" in row()[0].text),
                  "a SAML connection is added from its provider's metadata URL")
            check("memberOf: admins → Bot readers, cn=ops,ou=groups → Reviewers" in row()[0].text,
                  f"with its group attribute and mapping: {row()[0].text!r}")
            saml = requests.get(f"{HF}/v1/organization/{org_id}/saml", headers=API, timeout=10).json()["objects"]
            check(any(c["group_attribute"] == "memberOf"
                      and c["group_mapping"] == {"admins": "Bot readers", "cn=ops,ou=groups": "Reviewers"}
                      for c in saml), f"the API holds the mapping: {saml}")
            check("/saml/" in row()[0].find_element(By.TAG_NAME, "code").text, "with the address to register at the provider")
            # Changed in place without its metadata: the email attribute and a second domain.
            d.find_element(By.XPATH, "//summary[text()='Change Acme SAML']").click()
            edit = d.find_element(By.CSS_SELECTOR, "form[data-action=edit-saml]")
            edit.find_element(By.CSS_SELECTOR, "input[name=email_attribute]").send_keys("mail")
            edit.find_element(By.CSS_SELECTOR, "input[name=domains]").send_keys(", acme.example")
            edit.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
            check(wait(lambda: row() and "acme.example" in row()[0].text), "the SAML connection is changed")
            saml = requests.get(f"{HF}/v1/organization/{org_id}/saml", headers=API, timeout=10).json()["objects"]
            check(len(saml) == 1 and saml[0]["email_attribute"] == "mail"
                  and saml[0]["allowed_domains"] == ["acme.test", "acme.example"]
                  and saml[0]["idp_metadata_url"] == f"{idp_url}/metadata"
                  and saml[0]["group_mapping"] == {"admins": "Bot readers", "cn=ops,ou=groups": "Reviewers"},
                  f"the API holds the change, and the provider's metadata: {saml}")
            accessible(d, "the sign-in connections")
            shot(d, "20d-admin-saml")
            row()[0].find_element(By.CSS_SELECTOR, "form.remove-connection button").click()
            d.switch_to.alert.accept()
            check(wait(lambda: d.find_elements(By.ID, "connections") and not row()), "and removed")
        finally:
            idp.kill()
        # A new member: invited into a group, then given a one-time link to set a password.
        page(d, f"{HF}/app/default/admin", "20b-admin-invite", "the administration page")
        d.find_element(By.ID, "invite-email").send_keys("nina@acme.test")
        Select(d.find_element(By.ID, "invite-group")).select_by_visible_text("Reviewers")
        d.find_element(By.CSS_SELECTOR, "#invite button").click()
        member_row = lambda: [r for r in d.find_elements(By.CSS_SELECTOR, "#members tbody tr")
                              if "nina@acme.test" in r.text]
        check(wait(lambda: member_row() and "Reviewers" in member_row()[0].text),
              "an invited member is listed in the group they were invited into")
        member_row()[0].find_element(By.CSS_SELECTOR, "form.password-link button").click()
        check(wait(lambda: d.find_element(By.ID, "sign-in-link").is_displayed()), "a sign-in link is made")
        invite = d.find_element(By.CSS_SELECTOR, "#sign-in-link code").text
        check(invite.startswith(f"{HF}/auth/set-password#token="), f"the link sets a password: {invite[:60]!r}")
        d.find_element(By.LINK_TEXT, "Account").click()
        d.find_element(By.ID, "sign-out").click()
        check(wait(lambda: "/login" in d.current_url), "signed out")
        # The invited member sets a password with the link and signs in: no grant, no project.
        set_password(d, invite, PASSWORD)
        d.get(f"{HF}/app")
        sign_in_here(d, "nina@acme.test", PASSWORD)
        check(wait(lambda: "/login" not in d.current_url and d.find_elements(By.ID, "main"))
              and PROJECT not in d.find_element(By.ID, "main").text,
              "the invited member signs in and, without a grant, sees no project")
        d.find_element(By.LINK_TEXT, "Account").click()
        d.find_element(By.ID, "sign-out").click()
        check(wait(lambda: "/login" in d.current_url), "signed out again")
        set_password(d, os.environ["READER_INVITE"], PASSWORD)
        d.get(f"{HF}/app")
        sign_in_here(d, "rita@acme.test", PASSWORD)
        check(wait(lambda: d.find_elements(By.ID, "projects")), "the reader sees a projects page")
        listed = d.find_element(By.ID, "projects").text
        check(PROJECT in listed and "Private project" not in listed,
              "the reader sees the granted project only")
        shot(d, "12-reader-projects")
        d.get(links[1])
        check(wait(lambda: "greeting-2" in d.find_element(By.TAG_NAME, "h1").text),
              "the reader opens the experiment")
        check(not d.find_elements(By.ID, "access"), "the reader is not shown the grants")
        d.get(link)
        check(wait(lambda: d.find_elements(By.ID, "span")), "the reader opens a trace")
        check(not d.find_elements(By.ID, "add-to-dataset"), "the reader is offered no edit control")
        d.get(ds_page)
        check(wait(lambda: d.find_elements(By.ID, "dataset-rows")), "the reader reads the dataset")
        check(not d.find_elements(By.CSS_SELECTOR, "form[data-action]"), "the reader sees no dataset form")
        accessible(d, "the dataset as a reader")
        shot(d, "19-reader-dataset")
        forged = d.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch('/v1/dataset/' + arguments[0] + '/insert', {method: 'POST', credentials: 'same-origin',"
            " headers: {'content-type': 'application/json', 'x-csrf-token':"
            " document.querySelector('meta[name=csrf-token]').content},"
            " body: JSON.stringify({events: [{input: 'forged'}]})}).then(r => done(r.status));",
            dataset["id"])
        check(forged == 403, f"a forged insert from the reader's session is refused: {forged}")
        d.get(f"{HF}/app/default/p/{urllib.parse.quote('Private project')}/logs")
        check(wait(lambda: d.find_element(By.TAG_NAME, "h1").text == "Not found"),
              "another project is not found for the reader")
        accessible(d, "the not-found page")
        shot(d, "13-reader-refused")
        # Last, as an Owner: passwords turned off, which signs out who signed in with one.
        d.find_element(By.LINK_TEXT, "Account").click()
        d.find_element(By.ID, "sign-out").click()
        check(wait(lambda: "/login" in d.current_url), "the reader signs out")
        sign_in_here(d, "ann@acme.test", PASSWORD)
        check(wait(lambda: "/login" not in d.current_url), "the Owner signs in again")
        page(d, f"{HF}/app/default/admin#signin-h", "20e-admin-passwords", "the sign-in settings again")
        d.find_element(By.ID, "password-allowed").click()
        d.find_element(By.CSS_SELECTOR, "#sign-in-settings button").click()
        d.switch_to.alert.accept()
        check(wait(lambda: "/login" in d.current_url), "turning passwords off signs out the Owner who used one")
        org_id = requests.get(f"{HF}/v1/organization", headers=API, timeout=10).json()["objects"][0]["id"]
        settings = requests.get(f"{HF}/v1/organization/{org_id}/sign_in", headers=API, timeout=10).json()
        check(settings == {"password_login": False}, f"passwords are off: {settings}")
    finally:
        d.quit()
    print("page load times (s): " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(TIMES.items())))
    print("ui flow: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
