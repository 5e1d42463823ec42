"""Drives the unmodified braintrust Python SDK against a Holdfast server.

Environment: BRAINTRUST_API_KEY, BRAINTRUST_APP_URL (as `holdfast serve` prints them).
Each check reads data back through the REST API and compares it field by field. Exits
non-zero on the first mismatch; prints one `ok: ...` line per passed check.
"""

import io
import os
import re
import sys
import contextlib

import requests
import braintrust
from braintrust import Eval, init_dataset, init_logger, load_prompt, traced, Attachment, ExternalAttachment
from braintrust.logger import ReadonlyAttachment
from autoevals import Levenshtein

URL = os.environ["BRAINTRUST_APP_URL"]
KEY = os.environ["BRAINTRUST_API_KEY"]
HDR = {"Authorization": f"Bearer {KEY}"}
PROJECT = os.environ.get("HF_PROJECT", "compat-py")


def api(method, path, **kw):
    r = requests.request(method, URL + path, headers=HDR, timeout=30, **kw)
    if r.status_code != 200:
        raise AssertionError(f"{method} {path} -> {r.status_code} {r.text}")
    return r.json()


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def ok(what):
    print(f"ok: {what}", flush=True)


def project_id():
    return api("POST", "/v1/project", json={"name": PROJECT})["id"]


def logs(pid):
    return api("POST", f"/v1/project_logs/{pid}/fetch", json={"limit": 1000})["events"]


def test_logger():
    logger = init_logger(project=PROJECT)

    @traced
    def add(a, b):
        braintrust.current_span().log(metadata={"op": "add"}, scores={"ok": 1})
        return a + b

    @traced
    def outer(x):
        return add(x, 22)

    result = outer(20)
    check(result == 42, "traced function result")
    span = logger.start_span(name="manual", input={"q": "hello"})
    span.log(output={"a": "world"}, metadata={"stage": 1}, tags=["t1"])
    span.end()
    span_id = span.id
    logger.flush()
    logger.log_feedback(id=span_id, scores={"helpful": 0.5}, comment="nice answer", metadata={"by": "qa"})
    logger.update_span(id=span_id, metadata={"stage": 2}, tags=["t2"])
    logger.flush()
    # A second feedback, without metadata, must not reset the first one's.
    logger.log_feedback(id=span_id, scores={"second": 1}, comment="second look")
    logger.flush()

    pid = project_id()
    rows = logs(pid)
    by_name = {r.get("span_attributes", {}).get("name"): r for r in rows if r.get("span_attributes")}
    o, a, m = by_name["outer"], by_name["add"], by_name["manual"]
    check(o["input"] == {"x": 20} and o["output"] == 42, f"outer input/output {o}")
    check(o["is_root"] is True and not o.get("span_parents"), "outer is root")
    check(a["span_parents"] == [o["span_id"]] and a["root_span_id"] == o["root_span_id"], "add is outer's child")
    check(a["input"] == {"a": 20, "b": 22} and a["output"] == 42, f"add input/output {a}")
    check(a["metadata"] == {"op": "add"} and a["scores"] == {"ok": 1}, "add metadata and scores")
    check("end" in a["metrics"] and "start" in a["metrics"], "span metrics start/end merged")
    check(m["output"] == {"a": "world"} and m["scores"] == {"helpful": 0.5, "second": 1}, f"feedback scores merged {m}")
    # Feedback metadata describes the feedback, not the row: it is kept in audit_data.
    check(m["metadata"] == {"stage": 2}, f"update_span merged, feedback metadata kept apart {m['metadata']}")
    check(set(m["tags"]) == {"t1", "t2"}, f"tags merged as a set {m['tags']}")
    check(all(r.get("span_id") and r.get("root_span_id") for r in rows), f"no stray comment rows {rows}")
    texts = [(c["comment"]["text"], c.get("_audit_metadata")) for c in m.get("comments") or []]
    check(texts == [("nice answer", {"by": "qa"}), ("second look", None)], f"comments on their row {texts}")
    trail = [(a.get("action"), a.get("_audit_source"), a.get("_audit_metadata")) for a in m.get("audit_data") or []]
    check(trail == [("merge", "external", {"by": "qa"}), ("merge", "external", None)], f"feedback audit trail {trail}")
    check("_audit_metadata" not in m and "_audit_source" not in m, "audit fields are not row fields")
    check(all(len(r["_xact_id"]) == 19 for r in rows), "19-digit xact ids")
    ok("init_logger with nested traced spans, feedback and span updates read back")


SUMMARY_RE = re.compile(r"(\d+\.\d+)% (?:\([^)]*\) )?'(\w+)'\s+score")


def run_eval(name, data, scores):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        res = Eval(PROJECT, experiment_name=name, data=data, task=lambda input: input.upper(), scores=scores)
    text = out.getvalue()
    sys.stdout.write(text)
    printed = {m.group(2): float(m.group(1)) for m in SUMMARY_RE.finditer(text)}
    return res, printed


def lev(a, b):
    return Levenshtein()(output=a, expected=b).score


def exact(input, output, expected):
    return 1.0 if output == expected else 0.0


def test_eval_inline():
    data = [
        {"input": "abc", "expected": "ABC"},
        {"input": "hello", "expected": "HELLX"},
        {"input": "x", "expected": "Y"},
    ]
    res, printed = run_eval("inline-exp", data, [Levenshtein, exact])
    exp_lev = sum(lev(d["input"].upper(), d["expected"]) for d in data) / len(data)
    exp_exact = sum(1.0 if d["input"].upper() == d["expected"] else 0.0 for d in data) / len(data)
    check(abs(printed["Levenshtein"] - round(exp_lev * 100, 2)) < 0.006, f"Levenshtein {printed} vs {exp_lev}")
    check(abs(printed["exact"] - round(exp_exact * 100, 2)) < 0.006, f"exact {printed} vs {exp_exact}")
    exp_id = res.summary.experiment_id if hasattr(res.summary, "experiment_id") else None
    ok(f"Eval over inline data printed Levenshtein {printed['Levenshtein']}% and exact {printed['exact']}%")
    return exp_id


def test_dataset():
    ds = init_dataset(project=PROJECT, name="ds-compat")
    ids = [ds.insert(input={"q": f"q{i}"}, expected=f"A{i}", metadata={"i": i}, tags=["seed"]) for i in range(3)]
    ds.flush()
    version_before = ds.version if hasattr(ds, "version") else None
    v1 = max(r["_xact_id"] for r in ds.fetch())
    ds.update(id=ids[0], metadata={"i": 0, "updated": True})
    ds.delete(ids[2])
    ds.flush()
    ds2 = init_dataset(project=PROJECT, name="ds-compat")
    rows = {r["id"]: r for r in ds2.fetch()}
    check(set(rows) == {ids[0], ids[1]}, f"live rows after delete {list(rows)}")
    check(rows[ids[0]]["metadata"] == {"i": 0, "updated": True}, "update merged")
    check(rows[ids[1]]["expected"] == "A1" and rows[ids[1]]["input"] == {"q": "q1"}, "fetch fields")
    old = init_dataset(project=PROJECT, name="ds-compat", version=v1)
    old_rows = {r["id"]: r for r in old.fetch()}
    check(set(old_rows) == set(ids), f"pinned version sees all three {list(old_rows)}")
    check(old_rows[ids[0]]["metadata"] == {"i": 0}, "pinned version sees the old metadata")
    summary = ds2.summarize()
    check(summary.data_summary.total_records == 2, f"dataset summary {summary}")
    ok("dataset insert, update, delete, fetch and fetch pinned to an earlier version")
    return ds2


def test_eval_dataset():
    ds = init_dataset(project=PROJECT, name="ds-eval")
    rows = [("alpha", "ALPHA"), ("beta", "BETX"), ("gamma", "GAMMA!")]
    for i, e in rows:
        ds.insert(input=i, expected=e)
    ds.flush()
    res, printed = run_eval("dataset-exp", init_dataset(project=PROJECT, name="ds-eval"), [Levenshtein, exact])
    exp_lev = sum(lev(i.upper(), e) for i, e in rows) / len(rows)
    exp_exact = sum(1.0 if i.upper() == e else 0.0 for i, e in rows) / len(rows)
    check(abs(printed["Levenshtein"] - round(exp_lev * 100, 2)) < 0.006, f"Levenshtein {printed} vs {exp_lev}")
    check(abs(printed["exact"] - round(exp_exact * 100, 2)) < 0.006, f"exact {printed} vs {exp_exact}")
    ok(f"Eval over a dataset with two scorers printed Levenshtein {printed['Levenshtein']}%, exact {printed['exact']}%")


def test_prompt():
    pid = project_id()
    api("PUT", "/v1/prompt", json={
        "project_id": pid, "name": "Greeter", "slug": "greeter", "description": "says hi",
        "prompt_data": {"prompt": {"type": "chat", "messages": [
            {"role": "system", "content": "You are friendly."},
            {"role": "user", "content": "Say hello to {{name}} from {{city}}."}]},
            "options": {"model": "gpt-4o-mini", "params": {"temperature": 0.2}}},
    })
    built = load_prompt(project=PROJECT, slug="greeter").build(name="Ada", city="London")
    check(built["model"] == "gpt-4o-mini" and built["temperature"] == 0.2, f"built options {built}")
    check(built["messages"][1]["content"] == "Say hello to Ada from London.", f"rendered {built['messages']}")
    ok("load_prompt(...).build(...) renders the stored prompt")

    # Pinned versions: the decimal `_xact_id` and the SDK's 16-hex pretty form both load the
    # version they name, after a newer one was stored.
    from braintrust.xact_ids import prettify_xact
    v1 = load_prompt(project=PROJECT, slug="greeter").version
    api("PUT", "/v1/prompt", json={
        "project_id": pid, "name": "Greeter", "slug": "greeter",
        "prompt_data": {"prompt": {"type": "chat", "messages": [
            {"role": "user", "content": "Goodbye, {{name}}."}]},
            "options": {"model": "gpt-4o-mini"}},
    })
    newest = load_prompt(project=PROJECT, slug="greeter").build(name="Ada")
    check(newest["messages"][0]["content"] == "Goodbye, Ada.", f"newest {newest['messages']}")
    for pinned in (v1, prettify_xact(v1)):
        old = load_prompt(project=PROJECT, slug="greeter", version=pinned).build(name="Ada", city="Paris")
        check(old["messages"][1]["content"] == "Say hello to Ada from Paris.", f"version {pinned}: {old['messages']}")
    ok(f"load_prompt(version=...) loads the pinned version, as {v1} and as {prettify_xact(v1)}")

    # History: both versions, oldest first, in the pretty form the SDK pins with.
    from braintrust.logger import get_prompt_versions
    latest = load_prompt(project=PROJECT, slug="greeter")
    history = get_prompt_versions(pid, latest.id)
    check(history == [prettify_xact(v1), prettify_xact(latest.version)], f"prompt history {history}")
    pinned = load_prompt(project=PROJECT, slug="greeter", version=history[0]).build(name="Ada", city="Oslo")
    check(pinned["messages"][1]["content"] == "Say hello to Ada from Oslo.", f"first version by history {pinned}")
    ok(f"get_prompt_versions lists the prompt's versions {history}")


def test_publish():
    """Prompts defined in code and published with project.publish() (POST /insert-functions)."""
    import braintrust
    project = braintrust.projects.create(name=PROJECT)
    project.prompts.create(
        name="Published greeter", slug="published-greeter",
        messages=[{"role": "user", "content": "Hi {{name}}, from code."}],
        model="gpt-4o-mini", if_exists="replace",
    )
    project.publish()
    built = load_prompt(project=PROJECT, slug="published-greeter").build(name="Bo")
    check(built["messages"][0]["content"] == "Hi Bo, from code.", f"published {built['messages']}")
    # Published again with a change: `replace` stores a new version.
    again = braintrust.projects.create(name=PROJECT)
    again.prompts.create(
        name="Published greeter", slug="published-greeter",
        messages=[{"role": "user", "content": "Hello {{name}}, version two."}],
        model="gpt-4o-mini", if_exists="replace",
    )
    again.publish()
    built = load_prompt(project=PROJECT, slug="published-greeter").build(name="Bo")
    check(built["messages"][0]["content"] == "Hello Bo, version two.", f"replaced {built['messages']}")
    ok("project.prompts.create(...) + project.publish() stores and replaces a prompt")


def test_experiment_comments():
    """log_feedback(comment=...) on an experiment, then the experiment read back as a dataset."""
    # as_dataset() keeps root spans by `root_span_id == span_id`, which holds for the SDK's
    # legacy ids only (its default ids give an empty dataset, against any server); main()
    # runs this scenario in a process of its own with BRAINTRUST_LEGACY_IDS=1.
    exp = braintrust.init(project=PROJECT, experiment="commented")
    ids = [exp.log(input={"n": n}, output=n * 2, expected=n * 2, scores={"exact": 1}) for n in range(3)]
    exp.flush()
    exp.log_feedback(id=ids[0], comment="looks right", metadata={"reviewer": "ana"})
    exp.log_feedback(id=ids[0], scores={"reviewed": 1})
    exp.flush()
    ro = braintrust.init(project=PROJECT, experiment="commented", open=True)
    records = list(ro.as_dataset())
    check(sorted(r["expected"] for r in records) == [0, 2, 4], f"as_dataset reads the three rows and nothing else {records}")
    rows = {r["id"]: r for r in ro.fetch()}
    first = rows[ids[0]]
    check([c["comment"]["text"] for c in first.get("comments") or []] == ["looks right"], f"comment on its row {first}")
    check(first["comments"][0].get("_audit_metadata") == {"reviewer": "ana"}, f"comment audit metadata {first['comments']}")
    check(first["scores"] == {"exact": 1, "reviewed": 1}, f"feedback scores {first['scores']}")
    ok("experiment comments attach to their rows; as_dataset() reads only rows")


def test_attachment_and_overflow():
    logger = init_logger(project=PROJECT)
    payload = os.urandom(2048) + b"holdfast-attachment"
    logger.log(input={"file": Attachment(data=payload, filename="blob.bin", content_type="application/octet-stream")}, output="stored")
    big = "x" * 300_000
    logger.log(input={"big": big}, output="big row")
    logger.flush()
    rows = logs(project_id())
    att_row = next(r for r in rows if r.get("output") == "stored")
    ref = att_row["input"]["file"]
    check(ref["type"] == "braintrust_attachment", f"attachment reference {ref}")
    meta = api("GET", "/attachment", params={"key": ref["key"], "filename": ref["filename"], "content_type": ref["content_type"]})
    check(meta["status"]["upload_status"] == "done", f"attachment status {meta}")
    got = requests.get(meta["downloadUrl"], timeout=30)
    check(got.status_code == 200 and got.content == payload, "attachment bytes round trip")
    check(got.headers.get("content-type") == "application/octet-stream", f"download type {got.headers}")
    check(got.headers.get("content-disposition") == "attachment", "downloads are never rendered")
    check(got.headers.get("x-content-type-options") == "nosniff", "nosniff on downloads")
    big_row = next(r for r in rows if r.get("output") == "big row")
    check(big_row["input"]["big"] == big, "overflowed row stored whole")
    ok("attachment upload/download and an overflowing batch round trip")


def test_external_attachment():
    """ExternalAttachment: resolved only in the configured bucket, only for readable rows."""
    url, body = os.environ["HF_EXTERNAL_URL"], os.environ["HF_EXTERNAL_BODY"]
    logger = init_logger(project=PROJECT)
    logger.log(input={"doc": ExternalAttachment(url=url, filename="report.txt", content_type="text/plain")},
               output="external")
    logger.flush()
    row = next(r for r in logs(project_id()) if r.get("output") == "external")
    ref = row["input"]["doc"]
    check(ref["type"] == "external_attachment" and ref["url"] == url, f"external reference {ref}")
    got = ReadonlyAttachment(ref).data
    check(got == body.encode(), f"external attachment bytes {got!r}")
    # Not a fetcher of arbitrary URLs, and nothing no readable row references.
    bucket_dir = url.rsplit("/", 1)[0]
    for other, status in [("http://169.254.169.254/latest/meta-data/", 400),
                          ("https://example.com/report.txt", 400),
                          ("s3://another-bucket/report.txt", 400),
                          ("s3://team-files/outside-the-prefix.txt", 400),
                          (bucket_dir + "/never-logged.txt", 404)]:
        r = requests.get(URL + "/attachment", headers=HDR, params={"url": other}, timeout=30)
        check(r.status_code == status, f"{other}: {r.status_code} {r.text}")
    ok("ExternalAttachment resolves in the configured bucket; other URLs are refused")


def main():
    test_logger()
    test_eval_inline()
    test_dataset()
    test_eval_dataset()
    test_prompt()
    test_publish()
    import subprocess
    subprocess.run([sys.executable, __file__, "experiment_comments"], check=True,
                   env={**os.environ, "BRAINTRUST_LEGACY_IDS": "1"})
    test_attachment_and_overflow()
    test_external_attachment()
    print("python sdk flows: all passed")


if __name__ == "__main__":
    if sys.argv[1:] == ["experiment_comments"]:
        test_experiment_comments()
    else:
        main()
