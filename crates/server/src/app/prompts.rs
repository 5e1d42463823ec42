//! Prompts: a project's list, and a prompt's page with its versions (every saved change,
//! newest first), one version's messages and options, and a line diff between two versions.

use super::view;
use super::{
    AppState, PageResult, Place, document, equals, in_project, param, path_part, project_page,
    project_path, query_string,
};
use crate::extract::{Authed, BaseUrl};
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use holdfast_services::ServiceError;
use maud::{Markup, html};
use serde_json::{Value, json};

/// Versions listed (the newest).
const MAX_VERSIONS: usize = 1_000;

pub(crate) async fn list(
    State(s): State<AppState>,
    authed: Authed,
    BaseUrl(base): BaseUrl,
    Path((org, project)): Path<(String, String)>,
) -> PageResult {
    let (v, project) = project_page(&s, authed, base, &org, &project).await?;
    let prompts = s
        .services
        .list_prompts(&v.p, &in_project(&project.id, None), None, None)
        .await?;
    let here = project_path(&v, &project.name, "prompts", None);
    let body = html! {
        h1 { "Prompts" span.muted { " · " (project.name) } }
        @if prompts.is_empty() {
            p { "No prompts yet. Push one with an SDK or create one through the API." }
        } @else {
            table #prompts {
                thead { tr { th scope="col" { "Name" } th scope="col" { "Slug" } th scope="col" { "Model" } th scope="col" { "Description" } } }
                tbody {
                    @for p in &prompts {
                        tr {
                            td { a href={ (here) "/" (path_part(view::str_at(p, "/slug"))) } { (view::str_at(p, "/name")) } }
                            td { code { (view::str_at(p, "/slug")) } }
                            td { (view::str_at(p, "/prompt_data/options/model")) }
                            td { (view::str_at(p, "/description")) }
                        }
                    }
                }
            }
        }
    };
    let place = Some(Place {
        project: &project.name,
        section: "prompts",
    });
    Ok(document(
        StatusCode::OK,
        &format!("Prompts of {}", project.name),
        Some((&v, place)),
        body,
    ))
}

/// What of a prompt version is compared: everything but ids and the version itself.
fn comparable(p: &Value) -> String {
    let mut shown = p.clone();
    if let Some(m) = shown.as_object_mut() {
        for k in [
            "id",
            "_xact_id",
            "project_id",
            "org_id",
            "log_id",
            "created",
        ] {
            m.remove(k);
        }
    }
    serde_json::to_string_pretty(&shown).unwrap_or_default()
}

fn version_view(org: &str, p: &Value) -> Markup {
    let data = p.get("prompt_data").unwrap_or(&Value::Null);
    let messages = data.pointer("/prompt/messages");
    let content = data.pointer("/prompt/content");
    html! {
        dl.facts {
            dt { "Model" } dd { (view::str_at(data, "/options/model")) }
            @if let Some(d) = p.get("description").and_then(Value::as_str).filter(|d| !d.is_empty()) { dt { "Description" } dd { (d) } }
        }
        @if let Some(m) = messages { h3 { "Messages" } (view::value(org, m)) }
        @if let Some(c) = content { h3 { "Prompt" } (view::value(org, c)) }
        @if let Some(o) = data.get("options") { h3 { "Options" } (view::value(org, o)) }
    }
}

pub(crate) async fn page(
    State(s): State<AppState>,
    authed: Authed,
    BaseUrl(base): BaseUrl,
    Path((org, project, slug)): Path<(String, String, String)>,
    req: Request,
) -> PageResult {
    let (v, project) = project_page(&s, authed, base, &org, &project).await?;
    let q = req.uri().query();
    let latest = s
        .services
        .list_prompts(&v.p, &in_project(&project.id, None), Some(&slug), None)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ServiceError::NotFound(format!("prompt {slug:?}")))?;
    let id = view::str_at(&latest, "/id").to_owned();
    let found = s
        .services
        .btql(
            &v.p,
            &json!({"audit_log": true, "query": {
                "select": [{"op": "star"}],
                "from": {"op": "function", "name": {"op": "ident", "name": ["project_prompts"]},
                         "args": [{"op": "literal", "value": project.id}]},
                "filter": equals("id", &id), "limit": MAX_VERSIONS}}),
        )
        .await?;
    let mut versions: Vec<(String, bool)> = found
        .get("data")
        .and_then(Value::as_array)
        .map(|d| {
            d.iter()
                .map(|x| {
                    (
                        view::str_at(x, "/_xact_id").to_owned(),
                        view::str_at(x, "/audit_data/action") == "delete",
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    versions.reverse();
    let wanted = param(q, "version");
    let against = param(q, "against");
    let shown = if wanted.is_empty() {
        latest.clone()
    } else {
        s.services.get_prompt(&v.p, &id, Some(&wanted)).await?
    };
    let shown_version = view::str_at(&shown, "/_xact_id").to_owned();
    let compared = if against.is_empty() {
        None
    } else {
        Some(s.services.get_prompt(&v.p, &id, Some(&against)).await?)
    };
    let here = project_path(&v, &project.name, "prompts", Some(&slug));
    let access = super::admin::access(&s, &v, ("prompt", "prompt"), &id, &project.id).await?;
    let body = html! {
        h1 { "Prompt " (view::str_at(&latest, "/name")) }
        p.muted { "Slug " code { (slug) } " · " (versions.len()) " versions" }
        @if let Some(a) = &access { (a) }
        div.trace {
            section.tree aria-label="Versions" {
                h2 { "Versions" }
                ol.versions {
                    @for (n, (x, deleted)) in versions.iter().enumerate() {
                        li {
                            a href={ (here) "?" (query_string(&[("version", x)])) }
                              aria-current=[(*x == shown_version).then_some("true")] {
                                "Version " (versions.len() - n) @if n == 0 { " (latest)" } @if *deleted { " (deleted)" }
                            }
                            " " code.muted { (x) }
                        }
                    }
                }
                form.controls method="get" {
                    label for="version" { "Compare" }
                    select #version name="version" {
                        @for (n, (x, _)) in versions.iter().enumerate() { option value=(x) selected[*x == shown_version] { "Version " (versions.len() - n) } }
                    }
                    label for="against" { "with" }
                    select #against name="against" {
                        @for (n, (x, _)) in versions.iter().enumerate() { option value=(x) selected[*x == against || (against.is_empty() && n == 1)] { "Version " (versions.len() - n) } }
                    }
                    button type="submit" #compare { "Show changes" }
                }
            }
            section.detail #prompt aria-label="Version" {
                @if let Some(old) = &compared {
                    h2 { "Changes" }
                    (view::diff(&comparable(old), &comparable(&shown)))
                }
                h2 { "This version" }
                (version_view(&v.org, &shown))
            }
        }
    };
    let place = Some(Place {
        project: &project.name,
        section: "prompts",
    });
    Ok(document(
        StatusCode::OK,
        &format!("Prompt {slug}"),
        Some((&v, place)),
        body,
    ))
}
