//! Experiment summaries, as the SDKs print them after an `Eval`.
//!
//! Rules (written down because the SDK protocol leaves them to the server):
//! * Rows are grouped into traces by `root_span_id` (a row without one is its own trace).
//! * A trace's score for a name is the mean of every non-null value of that name on any span
//!   of the trace (`Eval` logs scores on child `score` spans, not on the root).
//! * The experiment's score is the mean of its traces' scores, over the traces that have it.
//! * Metrics per trace: `duration` is `metrics.end - metrics.start` of the root span;
//!   `prompt_tokens`, `completion_tokens` and `tokens` are summed over the trace's spans.
//!   The experiment's metric is the mean over traces that have it.
//! * Comparison with a base experiment matches traces by the root span's `input` (compared
//!   as canonical JSON, object keys sorted). Traces with equal input are averaged first. For
//!   each input present in both experiments, a higher score is an improvement and a lower
//!   one a regression; for metrics, lower is better. `diff` is this experiment's overall
//!   value minus the base's.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub value: f64,
    pub all_integers: bool,
    pub diff: Option<f64>,
    pub improvements: u64,
    pub regressions: u64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Summary {
    pub scores: BTreeMap<String, Entry>,
    pub metrics: BTreeMap<String, Entry>,
}

pub const TOKEN_METRICS: [&str; 3] = ["prompt_tokens", "completion_tokens", "tokens"];

#[derive(Clone, Default)]
struct Trace {
    input_key: Option<String>,
    scores: BTreeMap<String, Vec<f64>>,
    metrics: BTreeMap<String, f64>,
}

fn canonical(v: &Value) -> String {
    fn sort(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let sorted: BTreeMap<_, _> = m.iter().map(|(k, v)| (k.clone(), sort(v))).collect();
                Value::Object(sorted.into_iter().collect())
            }
            Value::Array(a) => Value::Array(a.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    sort(v).to_string()
}

fn is_root(row: &Map<String, Value>) -> bool {
    match row.get("span_parents") {
        None | Some(Value::Null) => true,
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    }
}

/// Per-trace values of one score or metric: (trace input key, value).
type PerTrace = Vec<(Option<String>, f64)>;

/// Per-trace values by name.
struct Traced {
    scores: BTreeMap<String, PerTrace>,
    metrics: BTreeMap<String, PerTrace>,
}

/// An experiment's rows summed up per trace as they are read (in any order, a page at a
/// time): what it holds per trace is its input's canonical form and its score and metric
/// values, never the rows.
#[derive(Clone, Default)]
pub struct Traces {
    by_root: BTreeMap<String, Trace>,
}

impl Traces {
    /// Drops what was added of trace `root` (to add its rows again).
    pub fn remove(&mut self, root: &str) {
        self.by_root.remove(root);
    }

    /// About how many bytes it holds.
    pub fn bytes(&self) -> usize {
        self.by_root
            .iter()
            .map(|(root, t)| {
                let scores: usize = t
                    .scores
                    .iter()
                    .map(|(k, v)| k.len() + 8 * v.len() + 64)
                    .sum();
                let metrics: usize = t.metrics.keys().map(|k| k.len() + 72).sum();
                root.len() + t.input_key.as_ref().map_or(0, String::len) + scores + metrics + 128
            })
            .sum()
    }

    /// Adds one row to its trace.
    pub fn add(&mut self, row: &Map<String, Value>) {
        let root = row
            .get("root_span_id")
            .and_then(Value::as_str)
            .or_else(|| row.get("id").and_then(Value::as_str))
            .unwrap_or_default();
        let trace = match self.by_root.get_mut(root) {
            Some(t) => t,
            None => self.by_root.entry(root.to_owned()).or_default(),
        };
        if let Some(Value::Object(scores)) = row.get("scores") {
            for (name, v) in scores {
                if let Some(x) = v.as_f64() {
                    trace.scores.entry(name.clone()).or_default().push(x);
                }
            }
        }
        let metrics = row.get("metrics").and_then(Value::as_object);
        if let Some(m) = metrics {
            for name in TOKEN_METRICS {
                if let Some(x) = m.get(name).and_then(Value::as_f64) {
                    *trace.metrics.entry(name.to_owned()).or_default() += x;
                }
            }
        }
        if is_root(row) {
            trace.input_key = Some(canonical(row.get("input").unwrap_or(&Value::Null)));
            if let Some(m) = metrics
                && let (Some(s), Some(e)) = (
                    m.get("start").and_then(Value::as_f64),
                    m.get("end").and_then(Value::as_f64),
                )
            {
                trace.metrics.insert("duration".into(), e - s);
            }
        }
    }

    /// [`summarize_traces`] of these traces without a base.
    pub fn summary(&self) -> Summary {
        summary_of(self.done(), None)
    }

    fn done(&self) -> Traced {
        let mut out = Traced {
            scores: BTreeMap::new(),
            metrics: BTreeMap::new(),
        };
        for trace in self.by_root.values() {
            for (name, values) in &trace.scores {
                let mean = values.iter().sum::<f64>() / values.len() as f64;
                out.scores
                    .entry(name.clone())
                    .or_default()
                    .push((trace.input_key.clone(), mean));
            }
            for (name, v) in &trace.metrics {
                out.metrics
                    .entry(name.clone())
                    .or_default()
                    .push((trace.input_key.clone(), *v));
            }
        }
        out
    }
}

fn traces<'a>(rows: impl IntoIterator<Item = &'a Map<String, Value>>) -> Traced {
    let mut t = Traces::default();
    for row in rows {
        t.add(row);
    }
    t.done()
}

fn mean(values: &[(Option<String>, f64)]) -> f64 {
    values.iter().map(|(_, v)| v).sum::<f64>() / values.len().max(1) as f64
}

fn by_input(values: &[(Option<String>, f64)]) -> BTreeMap<&str, f64> {
    let mut groups: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for (k, v) in values {
        if let Some(k) = k {
            groups.entry(k.as_str()).or_default().push(*v);
        }
    }
    groups
        .into_iter()
        .map(|(k, v)| (k, v.iter().sum::<f64>() / v.len() as f64))
        .collect()
}

fn entries(
    current: &BTreeMap<String, PerTrace>,
    base: Option<&BTreeMap<String, PerTrace>>,
    higher_is_better: bool,
) -> BTreeMap<String, Entry> {
    const EPS: f64 = 1e-12;
    current
        .iter()
        .map(|(name, values)| {
            let value = mean(values);
            let all_integers = values.iter().all(|(_, v)| v.fract() == 0.0) && value.fract() == 0.0;
            let mut entry = Entry {
                value,
                all_integers,
                diff: None,
                improvements: 0,
                regressions: 0,
            };
            if let Some(base_values) = base.and_then(|b| b.get(name)) {
                entry.diff = Some(value - mean(base_values));
                let base_by_input = by_input(base_values);
                for (input, v) in by_input(values) {
                    if let Some(b) = base_by_input.get(input) {
                        let better = if higher_is_better { v - b } else { b - v };
                        if better > EPS {
                            entry.improvements += 1;
                        } else if better < -EPS {
                            entry.regressions += 1;
                        }
                    }
                }
            }
            (name.clone(), entry)
        })
        .collect()
}

/// Summarizes an experiment's latest rows, optionally against a base experiment's rows.
pub fn summarize(rows: &[Map<String, Value>], base: Option<&[Map<String, Value>]>) -> Summary {
    summary_of(traces(rows), base.map(traces))
}

/// [`summarize`] of rows held elsewhere: for example one summary row per trace (scores
/// already averaged over the trace's spans, the root's `input`), which summarizes as the
/// trace's spans would for scores. Not for metrics: a summary row's `duration` spans the
/// whole trace, where [`summarize`] takes the root span's.
pub fn summarize_refs(
    rows: &[&Map<String, Value>],
    base: Option<&[&Map<String, Value>]>,
) -> Summary {
    summary_of(
        traces(rows.iter().copied()),
        base.map(|b| traces(b.iter().copied())),
    )
}

/// [`summarize`] of rows summed up as they were read.
pub fn summarize_traces(current: Traces, base: Option<Traces>) -> Summary {
    summary_of(current.done(), base.as_ref().map(Traces::done))
}

fn summary_of(current: Traced, base: Option<Traced>) -> Summary {
    Summary {
        scores: entries(&current.scores, base.as_ref().map(|b| &b.scores), true),
        metrics: entries(&current.metrics, base.as_ref().map(|b| &b.metrics), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rows(v: Value) -> Vec<Map<String, Value>> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_object().unwrap().clone())
            .collect()
    }

    #[test]
    fn scores_average_per_trace_then_over_traces() {
        let current = rows(json!([
            {"id":"r1","root_span_id":"t1","span_parents":null,"input":"a","metrics":{"start":1.0,"end":3.0}},
            {"id":"s1","root_span_id":"t1","span_parents":["r1"],"scores":{"acc":1.0}},
            {"id":"s2","root_span_id":"t1","span_parents":["r1"],"scores":{"acc":0.0}},
            {"id":"r2","root_span_id":"t2","input":"b","metrics":{"start":0.0,"end":1.0,"tokens":10}},
            {"id":"s3","root_span_id":"t2","span_parents":["r2"],"scores":{"acc":1.0,"other":null}},
        ]));
        let s = summarize(&current, None);
        assert_eq!(s.scores["acc"].value, 0.75);
        assert!(!s.scores.contains_key("other"));
        assert_eq!(s.metrics["duration"].value, 1.5);
        assert_eq!(s.metrics["tokens"].value, 10.0);
        assert!(s.metrics["tokens"].all_integers);
        assert_eq!(s.scores["acc"].diff, None);
    }

    /// A trace removed and its rows added again sums up as the rows added once; its size
    /// goes with it.
    #[test]
    fn a_trace_summed_again_is_as_summed_once() {
        let all = rows(json!([
            {"id":"r1","root_span_id":"t1","input":"a","metrics":{"start":1.0,"end":3.0}},
            {"id":"s1","root_span_id":"t1","span_parents":["r1"],"scores":{"acc":1.0}},
            {"id":"r2","root_span_id":"t2","input":"b","metrics":{"start":0.0,"end":1.0}},
            {"id":"s2","root_span_id":"t2","span_parents":["r2"],"scores":{"acc":0.0}},
        ]));
        let mut once = Traces::default();
        all.iter().for_each(|r| once.add(r));
        let mut again = Traces::default();
        all.iter().for_each(|r| again.add(r));
        let bytes = again.bytes();
        again.remove("t2");
        assert!(again.bytes() < bytes);
        assert_eq!(
            summarize_traces(again.clone(), None).scores["acc"].value,
            1.0
        );
        all.iter().skip(2).for_each(|r| again.add(r));
        assert_eq!(again.bytes(), bytes);
        assert_eq!(summarize_traces(again, None), summarize_traces(once, None));
    }

    #[test]
    fn comparison_matches_traces_by_input() {
        let base = rows(json!([
            {"id":"a","root_span_id":"a","input":{"q":1,"z":2},"scores":{"acc":0.5}},
            {"id":"b","root_span_id":"b","input":"b","scores":{"acc":1.0}},
            {"id":"c","root_span_id":"c","input":"c","scores":{"acc":0.2}},
        ]));
        let current = rows(json!([
            {"id":"x","root_span_id":"x","input":{"z":2,"q":1},"scores":{"acc":1.0}},
            {"id":"y","root_span_id":"y","input":"b","scores":{"acc":0.0}},
            {"id":"w","root_span_id":"w","input":"new","scores":{"acc":1.0}},
        ]));
        let s = summarize(&current, Some(&base));
        let acc = &s.scores["acc"];
        assert_eq!((acc.improvements, acc.regressions), (1, 1));
        let expected = 2.0 / 3.0 - 1.7 / 3.0;
        assert!((acc.diff.unwrap() - expected).abs() < 1e-9);
    }
}
