// Drives the unmodified braintrust JS SDK against a Holdfast server.
// Environment: BRAINTRUST_API_KEY, BRAINTRUST_APP_URL. Prints `ok: ...` per passed check.
import {
  Eval, ExternalAttachment, ReadonlyAttachment, getPromptVersions, initDataset, initLogger, loadPrompt, projects,
} from "braintrust";

const URL = process.env.BRAINTRUST_APP_URL;
const KEY = process.env.BRAINTRUST_API_KEY;
const PROJECT = process.env.HF_PROJECT ?? "compat-js";

async function api(method, path, body) {
  const r = await fetch(URL + path, {
    method,
    headers: { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  if (r.status !== 200) throw new Error(`${method} ${path} -> ${r.status} ${text}`);
  return JSON.parse(text);
}

function check(cond, what) {
  if (!cond) throw new Error(what);
}

const exact = ({ output, expected }) => ({ name: "exact", score: output === expected ? 1 : 0 });
const prefix = ({ output, expected }) => ({
  name: "prefix",
  score: output.slice(0, 2) === String(expected).slice(0, 2) ? 1 : 0,
});

async function main() {
  // Logger spans.
  const logger = initLogger({ projectName: PROJECT });
  await logger.traced(async (span) => {
    span.log({ input: { x: 1 }, output: 2 });
    await span.traced(async (child) => child.log({ input: "c", output: "d" }), { name: "child" });
  }, { name: "root" });
  await logger.flush();
  const project = await api("POST", "/v1/project", { name: PROJECT });
  const events = (await api("POST", `/v1/project_logs/${project.id}/fetch`, { limit: 100 })).events;
  const root = events.find((e) => e.span_attributes?.name === "root");
  const child = events.find((e) => e.span_attributes?.name === "child");
  check(root && child && child.span_parents[0] === root.span_id, "JS spans nested");
  check(root.input.x === 1 && root.output === 2 && child.output === "d", "JS span fields");
  console.log("ok: JS logger spans read back");

  // Feedback with comments: attached to their row, audit metadata kept per call.
  logger.logFeedback({ id: root.id, scores: { helpful: 1 }, comment: "JS comment", metadata: { by: "js" } });
  await logger.flush();
  logger.logFeedback({ id: root.id, scores: { second: 0 }, comment: "JS again" });
  await logger.flush();
  const after = (await api("POST", `/v1/project_logs/${project.id}/fetch`, { limit: 100 })).events;
  check(after.every((e) => e.span_id && e.root_span_id), `JS no stray comment rows ${JSON.stringify(after)}`);
  const commented = after.find((e) => e.id === root.id);
  const texts = (commented.comments ?? []).map((c) => c.comment.text);
  check(JSON.stringify(texts) === JSON.stringify(["JS comment", "JS again"]), `JS comments ${JSON.stringify(commented)}`);
  check(commented.comments[0]._audit_metadata?.by === "js", `JS comment audit metadata ${JSON.stringify(commented.comments)}`);
  check(commented.scores.helpful === 1 && commented.scores.second === 0, `JS feedback scores ${JSON.stringify(commented.scores)}`);
  const trail = (commented.audit_data ?? []).map((a) => a._audit_metadata?.by ?? null);
  check(JSON.stringify(trail) === JSON.stringify(["js", null]), `JS audit trail ${JSON.stringify(commented.audit_data)}`);
  console.log("ok: JS logFeedback comments attach to their row");

  // Eval over inline data, with two scorers.
  const data = [
    { input: "abc", expected: "ABC" },
    { input: "hello", expected: "HEXXO" },
    { input: "zz", expected: "ZZ" },
    { input: "q", expected: "Q!" },
  ];
  const res = await Eval(PROJECT, {
    experimentName: "js-inline",
    data: () => data,
    task: (input) => input.toUpperCase(),
    scores: [exact, prefix],
  });
  const expExact = data.filter((d) => d.input.toUpperCase() === d.expected).length / data.length;
  const expPrefix = data.filter((d) => d.input.toUpperCase().slice(0, 2) === d.expected.slice(0, 2)).length / data.length;
  const scores = res.summary.scores;
  check(Math.abs(scores.exact.score - expExact) < 1e-9, `JS exact ${JSON.stringify(scores)} vs ${expExact}`);
  check(Math.abs(scores.prefix.score - expPrefix) < 1e-9, `JS prefix ${JSON.stringify(scores)} vs ${expPrefix}`);
  console.log(`ok: JS Eval summary exact=${scores.exact.score} prefix=${scores.prefix.score}`);

  // Dataset through /btql.
  const ds = initDataset(PROJECT, { dataset: "js-ds" });
  const ids = [];
  for (let i = 0; i < 3; i++) ids.push(ds.insert({ input: { i }, expected: `e${i}` }));
  await ds.flush();
  const fetched = [];
  for await (const row of initDataset(PROJECT, { dataset: "js-ds" }).fetch()) fetched.push(row);
  check(fetched.length === 3, `JS dataset fetch returned ${fetched.length}`);
  check(ids.every((id) => fetched.some((r) => r.id === id)), "JS dataset ids");
  check(fetched.every((r) => r.expected === `e${r.input.i}`), "JS dataset fields");
  console.log("ok: JS dataset insert and fetch through /btql");

  // Dataset summary (GET /dataset-summary).
  const summary = await initDataset(PROJECT, { dataset: "js-ds" }).summarize();
  check(
    summary.dataSummary && summary.dataSummary.totalRecords === 3,
    `JS dataset summarize ${JSON.stringify(summary)}`,
  );
  console.log("ok: JS dataset.summarize()");

  // Eval over that dataset.
  const res2 = await Eval(PROJECT, {
    experimentName: "js-dataset",
    data: initDataset(PROJECT, { dataset: "js-ds" }),
    task: (input) => `e${input.i}`,
    scores: [exact],
  });
  check(res2.summary.scores.exact.score === 1, `JS dataset Eval ${JSON.stringify(res2.summary.scores)}`);
  console.log("ok: JS Eval over a dataset");

  // Prompts.
  await api("PUT", "/v1/prompt", {
    project_id: project.id, name: "JS Greeter", slug: "js-greeter",
    prompt_data: {
      prompt: { type: "chat", messages: [{ role: "user", content: "Hi {{name}}!" }] },
      options: { model: "gpt-4o-mini", params: { temperature: 0.5 } },
    },
  });
  const prompt = await loadPrompt({ projectName: PROJECT, slug: "js-greeter" });
  const built = prompt.build({ name: "Ada" });
  check(built.messages[0].content === "Hi Ada!" && built.model === "gpt-4o-mini", `JS prompt ${JSON.stringify(built)}`);
  console.log("ok: JS loadPrompt().build()");

  // Prompts defined in code and published (POST /insert-functions).
  const published = projects.create({ name: PROJECT });
  published.prompts.create({
    name: "JS Published", slug: "js-published",
    messages: [{ role: "user", content: "Hey {{name}}, from JS code." }],
    model: "gpt-4o-mini", ifExists: "replace",
  });
  await published.publish();
  const fromCode = await loadPrompt({ projectName: PROJECT, slug: "js-published" });
  const builtFromCode = fromCode.build({ name: "Cy" });
  check(builtFromCode.messages[0].content === "Hey Cy, from JS code.", `JS published ${JSON.stringify(builtFromCode)}`);
  console.log("ok: JS projects.create().prompts.create() + publish()");

  // Prompt history after a second version (from a fresh project handle, as the first one
  // would publish its first definition again).
  const again = projects.create({ name: PROJECT });
  again.prompts.create({
    name: "JS Published", slug: "js-published",
    messages: [{ role: "user", content: "Version two for {{name}}." }],
    model: "gpt-4o-mini", ifExists: "replace",
  });
  await again.publish();
  const second = await loadPrompt({ projectName: PROJECT, slug: "js-published" });
  const history = await getPromptVersions(project.id, second.id);
  check(history.length === 2 && history.every((v) => /^[0-9a-f]{16}$/.test(v)), `JS prompt history ${JSON.stringify(history)}`);
  const byHistory = async (v) =>
    (await loadPrompt({ projectName: PROJECT, slug: "js-published", version: v })).build({ name: "Cy" }).messages[0].content;
  check(await byHistory(history[0]) === "Hey Cy, from JS code.", "JS first version from history");
  check(await byHistory(history[1]) === "Version two for Cy.", "JS second version from history");
  console.log(`ok: JS getPromptVersions ${JSON.stringify(history)}`);

  // External attachments: resolved in the configured bucket only.
  const externalUrl = process.env.HF_EXTERNAL_URL;
  await logger.traced(async (span) => span.log({
    input: { doc: new ExternalAttachment({ url: externalUrl, filename: "report.txt", contentType: "text/plain" }) },
    output: "external",
  }), { name: "external" });
  await logger.flush();
  const withRef = (await api("POST", `/v1/project_logs/${project.id}/fetch`, { limit: 100 })).events
    .find((e) => e.output === "external");
  const extRef = withRef.input.doc;
  check(extRef.type === "external_attachment" && extRef.url === externalUrl, `JS external ref ${JSON.stringify(extRef)}`);
  const extData = await (await new ReadonlyAttachment(extRef).data()).text();
  check(extData === process.env.HF_EXTERNAL_BODY, `JS external bytes ${extData}`);
  const refused = await fetch(`${URL}/attachment?url=${encodeURIComponent("http://127.0.0.1:1/x")}`, {
    headers: { Authorization: `Bearer ${KEY}` },
  });
  check(refused.status === 400, `JS arbitrary URL refused ${refused.status}`);
  console.log("ok: JS ExternalAttachment resolves; other URLs are refused");
  console.log("js sdk flows: all passed");
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
