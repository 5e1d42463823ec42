//! API keys: the keys the viewer may see (their own; every member's for an Owner), with their
//! requests per day; creating one (its secret shown once, by the page's script, from the
//! API's answer) and revoking one. Both go through the API's key endpoints.

use super::view;
use super::{AppState, PageResult, document, viewer};
use crate::extract::{Authed, BaseUrl};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use maud::html;

/// Keys whose daily usage is shown (the newest).
const WITH_USAGE: usize = 50;
/// Days of use shown per key (its most recent days with requests).
const USAGE_DAYS: i64 = 7;

pub(crate) async fn page(
    State(s): State<AppState>,
    authed: Authed,
    BaseUrl(base): BaseUrl,
    Path(org): Path<String>,
) -> PageResult {
    let v = viewer(&s, authed, &org, base).await?;
    let keys = s
        .services
        .list_keys_with_usage(&v.p, WITH_USAGE, USAGE_DAYS)
        .await?;
    let body = html! {
        h1 { "API keys" }
        form.inline #create-key data-action="create-key" {
            label for="key-name" { "Name of a new key" }
            input #key-name name="name" required maxlength="200" autocomplete="off";
            button type="submit" { "Create key" }
            span.note role="status" {}
        }
        div #new-key.panel role="region" aria-label="New key" hidden {
            p { strong { "Your new key, shown only once:" } }
            p { code {} }
        }
        // Replaced from a fresh copy of the page once a key is made (see the page's script).
        div #key-list { @if keys.is_empty() {
            p #empty { "No keys." }
        } @else {
            table #keys {
                thead { tr {
                    th scope="col" { "Name" } th scope="col" { "Key" } th scope="col" { "Member" }
                    th scope="col" { "Created" } th scope="col" { "Last used" } th scope="col" { "Requests per day" }
                    th scope="col" { span.hidden { "Actions" } }
                } }
                tbody {
                    @for k in &keys {
                        tr class=[k.revoked_at.is_some().then_some("revoked")] {
                            td { (k.name) }
                            td { code { (k.preview_name) } }
                            td { (k.user_email.as_deref().unwrap_or("")) }
                            td.nowrap { (view::time(&k.created)) }
                            td.nowrap { (k.last_used_at.as_deref().map(view::time).unwrap_or_default()) }
                            td {
                                @match &k.usage {
                                    Some(days) if !days.is_empty() => {
                                        ul.usage { @for d in days { li { (d.day) ": " (d.requests) } } }
                                    }
                                    Some(_) => span.muted { "none" },
                                    None => span.muted { "not shown" },
                                }
                            }
                            td {
                                @if let Some(at) = &k.revoked_at {
                                    span.muted { "revoked " (view::time(at)) }
                                } @else {
                                    form.revoke-key data-action="revoke-key" data-confirm={ "Revoke the key " (k.name) "? Clients using it stop working at once." } {
                                        input type="hidden" name="id" value=(k.id);
                                        button.secondary type="submit" aria-label={ "Revoke " (k.name) } { "Revoke" }
                                        span.note role="status" {}
                                    }
                                }
                            }
                        }
                    }
                }
            }
        } }
    };
    Ok(document(StatusCode::OK, "API keys", Some((&v, None)), body))
}
