//! Datasets: a project's list, and a dataset's rows newest first, with paging. For a viewer
//! who may change the dataset, forms add, edit and delete rows and import CSV or JSON Lines
//! with a column mapping; the page's script sends them to the dataset's insert endpoint (the
//! API decides, as for the SDKs). A viewer who may only read sees no such control.

use super::view;
use super::{
    AppState, PageResult, Place, document, in_project, may, object_named, param, path_part,
    project_page, project_path, query_string, run_query, source,
};
use crate::extract::{Authed, BaseUrl};
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use holdfast_core::object::ObjectType;
use maud::{Markup, html};
use serde_json::{Value, json};

/// Rows per page.
const PAGE: u64 = 50;
/// Largest value (as JSON text) offered for editing in place.
const MAX_EDITABLE: usize = 64 * 1024;

pub(crate) async fn list(
    State(s): State<AppState>,
    authed: Authed,
    BaseUrl(base): BaseUrl,
    Path((org, project)): Path<(String, String)>,
) -> PageResult {
    let (v, project) = project_page(&s, authed, base, &org, &project).await?;
    let all = s
        .services
        .list_objects(&v.p, ObjectType::Dataset, &in_project(&project.id, None))
        .await?;
    let here = project_path(&v, &project.name, "datasets", None);
    let body = html! {
        h1 { "Datasets" span.muted { " · " (project.name) } }
        @if all.is_empty() {
            p { "No datasets yet. Make one with an SDK (" code { "init_dataset" } ") or through the API." }
        } @else {
            table #datasets {
                thead { tr { th scope="col" { "Dataset" } th scope="col" { "Description" } th scope="col" { "Created" } } }
                tbody {
                    @for d in &all {
                        tr {
                            td { a href={ (here) "/" (path_part(&d.name)) } { (d.name) } }
                            td { (d.info.get("description").map(|x| view::preview(x, 120)).unwrap_or_default()) }
                            td.nowrap { (view::time(&d.created)) }
                        }
                    }
                }
            }
        }
    };
    let place = Some(Place {
        project: &project.name,
        section: "datasets",
    });
    Ok(document(
        StatusCode::OK,
        &format!("Datasets of {}", project.name),
        Some((&v, place)),
        body,
    ))
}

/// A value as the JSON text an edit box holds.
fn editable(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(v) => serde_json::to_string_pretty(v).unwrap_or_default(),
    }
}

fn row_fields(prefix: &str, row: Option<&Value>) -> Markup {
    html! {
        @for (field, label) in [("input", "Input"), ("expected", "Expected"), ("metadata", "Metadata")] {
            label for={ (prefix) "-" (field) } { (label) " (JSON)" }
            textarea id={ (prefix) "-" (field) } name=(field) rows="3" spellcheck="false" {
                (editable(row.and_then(|r| r.get(field))))
            }
        }
    }
}

pub(crate) async fn page(
    State(s): State<AppState>,
    authed: Authed,
    BaseUrl(base): BaseUrl,
    Path((org, project, name)): Path<(String, String, String)>,
    req: Request,
) -> PageResult {
    let (v, project) = project_page(&s, authed, base, &org, &project).await?;
    let q = req.uri().query();
    let dataset = object_named(&s, &v, ObjectType::Dataset, &project.id, &name).await?;
    let writable = may(&s, &v, ObjectType::Dataset, &dataset.id, "update").await?;
    let here = project_path(&v, &project.name, "datasets", Some(&dataset.name));
    let cursor = param(q, "cursor");
    let (rows, next) = run_query(
        &s,
        &v,
        json!({"select": [{"op": "star"}], "from": source("dataset", &dataset.id, "spans"),
               "sort": [{"expr": {"op": "ident", "name": ["created"]}, "dir": "desc"}],
               "limit": PAGE, "cursor": (!cursor.is_empty()).then_some(&cursor)}),
    )
    .await?;
    let next = next.filter(|_| rows.len() as u64 == PAGE);
    let access =
        super::admin::access(&s, &v, ("dataset", "dataset"), &dataset.id, &project.id).await?;
    let body = html! {
        h1 { "Dataset " (dataset.name) }
        @if let Some(d) = dataset.info.get("description").filter(|d| !d.is_null()) { p { (view::preview(d, 400)) } }
        @if writable {
            div.tools {
                details.panel {
                    summary { "Add a row" }
                    form #add-row data-action="save-row" data-dataset=(dataset.id) {
                        (row_fields("new", None))
                        button type="submit" { "Add row" }
                        span.note role="status" {}
                    }
                }
                details.panel {
                    summary { "Import CSV or JSON Lines" }
                    form #read-import data-action="read-import" {
                        label for="import-file" { "File (.csv with a header row, or .jsonl)" }
                        input #import-file type="file" name="file" accept=".csv,.jsonl,.json,text/csv";
                        button type="submit" { "Read file" }
                        span.note role="status" {}
                    }
                    form #import-map data-action="import" data-dataset=(dataset.id) hidden {
                        table { caption { "Where each column goes" } tbody #mapping {} }
                        button type="submit" #import { "Import rows" }
                        span.note role="status" {}
                    }
                }
            }
        }
        @if rows.is_empty() {
            p #empty { "No rows." }
        } @else {
            div.scroll {
                table #dataset-rows {
                    thead { tr {
                        th scope="col" { "Input" } th scope="col" { "Expected" } th scope="col" { "Metadata" } th scope="col" { "Created" }
                        @if writable { th scope="col" { span.hidden { "Actions" } } }
                    } }
                    tbody {
                        @for (n, r) in rows.iter().enumerate() {
                            @let id = r.get("id").and_then(Value::as_str).unwrap_or_default();
                            tr {
                                td.preview { (view::preview(r.get("input").unwrap_or(&Value::Null), 160)) }
                                td.preview { (view::preview(r.get("expected").unwrap_or(&Value::Null), 160)) }
                                td.preview { (view::preview(r.get("metadata").unwrap_or(&Value::Null), 120)) }
                                td.nowrap { (view::time(r.get("created").and_then(Value::as_str).unwrap_or_default())) }
                                @if writable {
                                    td.actions {
                                        @if r.to_string().len() <= MAX_EDITABLE {
                                            details {
                                                summary { "Edit" }
                                                form.edit-row data-action="save-row" data-dataset=(dataset.id) {
                                                    input type="hidden" name="id" value=(id);
                                                    (row_fields(&format!("row{n}"), Some(r)))
                                                    button type="submit" { "Save" }
                                                    span.note role="status" {}
                                                }
                                            }
                                        } @else {
                                            span.muted { "Too large to edit here" }
                                        }
                                        form.delete-row data-action="delete-row" data-dataset=(dataset.id)
                                            data-confirm="Delete this row? It can be restored during the grace period." {
                                            input type="hidden" name="id" value=(id);
                                            button.secondary type="submit" aria-label={ "Delete row " (id) } { "Delete" }
                                            span.note role="status" {}
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        nav.pager aria-label="Pages" {
            @if !cursor.is_empty() { a href=(here) { "Newest" } }
            @if let Some(c) = &next {
                a #next rel="next" href={ (here) "?" (query_string(&[("cursor", c)])) } { "Older rows" }
            }
        }
        @if let Some(a) = &access { (a) }
    };
    let place = Some(Place {
        project: &project.name,
        section: "datasets",
    });
    Ok(document(
        StatusCode::OK,
        &format!("Dataset {}", dataset.name),
        Some((&v, place)),
        body,
    ))
}
