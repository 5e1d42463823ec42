//! Administration: members and their groups, groups, roles (built-in, and custom ones made
//! and deleted here), grants at organization, project and object level (with a form that
//! grants a role and buttons that revoke, through the ACL API), provider secrets (names only,
//! never values), sign-in settings and connections; and the audit log with filters. Each
//! section is read with the viewer's own permissions: a section they may not read says so
//! instead of failing the page.

use super::view;
use super::{AppState, PageResult, Viewer, document, param, path_part, query_string, viewer};
use crate::extract::{Authed, BaseUrl};
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use holdfast_api::admin::{Acl, AuditQuery, SecretListQuery};
use holdfast_api::sso::{OidcConnection, SamlConnection};
use holdfast_services::ServiceError;
use holdfast_services::admin::{Entity, entity_tag};
use holdfast_services::secrets::SecretKind;
use maud::{Markup, html};
use serde_json::Value;
use std::collections::HashMap;

/// A section's content, or why the viewer may not see it.
fn section<T>(
    found: Result<T, ServiceError>,
    render: impl FnOnce(T) -> Markup,
) -> Result<Markup, ServiceError> {
    match found {
        Ok(x) => Ok(render(x)),
        Err(ServiceError::Forbidden(why)) => Ok(html! { p.muted.refused { "Not shown: " (why) } }),
        Err(e) => Err(e),
    }
}

fn ids_of<'a>(v: &'a Value, key: &str) -> Vec<&'a str> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Names of what grants refer to: members, groups, roles, projects, the organization.
struct Names {
    users: HashMap<String, String>,
    groups: HashMap<String, String>,
    roles: HashMap<String, String>,
    projects: HashMap<String, String>,
    org_id: String,
}

impl Names {
    fn of(
        v: &Viewer,
        users: &Result<Vec<holdfast_api::admin::User>, ServiceError>,
        groups: &Result<Vec<Value>, ServiceError>,
        roles: &Result<Vec<Value>, ServiceError>,
        projects: &[holdfast_services::ProjectRecord],
    ) -> Self {
        let name_map = |list: &Result<Vec<Value>, ServiceError>| -> HashMap<String, String> {
            list.as_ref()
                .map(|l| {
                    l.iter()
                        .map(|x| {
                            (
                                view::str_at(x, "/id").to_owned(),
                                view::str_at(x, "/name").to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        Names {
            users: users
                .as_ref()
                .map(|l| l.iter().map(|u| (u.id.clone(), u.email.clone())).collect())
                .unwrap_or_default(),
            groups: name_map(groups),
            roles: name_map(roles),
            projects: projects
                .iter()
                .map(|p| (p.id.clone(), p.name.clone()))
                .collect(),
            org_id: v.p.org_id.clone(),
        }
    }

    fn target(&self, a: &Acl) -> String {
        match a.object_type.as_str() {
            "organization" if a.object_id == self.org_id => "the whole organization".to_owned(),
            "project" => match self.projects.get(&a.object_id) {
                Some(n) => format!("project {n}"),
                None => format!("project {}", a.object_id),
            },
            "project_log" => match self.projects.get(&a.object_id) {
                Some(n) => format!("logs of project {n}"),
                None => format!("logs of project {}", a.object_id),
            },
            other => format!("{other} {}", a.object_id),
        }
    }

    fn who(&self, a: &Acl) -> String {
        match (&a.user_id, &a.group_id) {
            (Some(u), _) => self.users.get(u).cloned().unwrap_or_else(|| u.clone()),
            (None, Some(g)) => format!(
                "group {}",
                self.groups.get(g).cloned().unwrap_or_else(|| g.clone())
            ),
            _ => String::new(),
        }
    }

    fn what(&self, a: &Acl) -> String {
        let base = match (&a.role_id, &a.permission) {
            (Some(r), _) => format!(
                "role {}",
                self.roles.get(r).cloned().unwrap_or_else(|| r.clone())
            ),
            (None, Some(p)) => format!("permission {p}"),
            _ => String::new(),
        };
        match &a.restrict_object_type {
            Some(t) => format!("{base} (on {t} only)"),
            None => base,
        }
    }
}

pub(crate) async fn page(
    State(s): State<AppState>,
    authed: Authed,
    BaseUrl(base): BaseUrl,
    Path(org): Path<String>,
    req: Request,
) -> PageResult {
    let editing = param(req.uri().query(), "role");
    let v = viewer(&s, authed, &org, base).await?;
    let sv = &s.services;
    let users = sv.list_users(&v.p).await;
    let groups = sv.list_entities(&v.p, Entity::Group).await;
    let roles = sv.list_entities(&v.p, Entity::Role).await;
    let projects = sv.list_projects(&v.p, &Default::default()).await?;
    let names = Names::of(&v, &users, &groups, &roles, &projects);
    let member_groups: HashMap<&str, Vec<&str>> = {
        let mut m: HashMap<&str, Vec<&str>> = HashMap::new();
        for g in groups.iter().flatten() {
            for u in ids_of(g, "member_users") {
                m.entry(u).or_default().push(view::str_at(g, "/name"));
            }
        }
        m
    };
    let acls = sv.list_org_acls(&v.p).await;
    // Reading the organization's grants is an administrator's right (Owners by default):
    // only they are shown the forms that change groups and grants (the API decides anyway).
    let may_grant = acls.is_ok() && roles.is_ok() && groups.is_ok();
    let members = section(users.as_ref().map_err(clone_err), |users| {
        html! {
            @if may_grant {
                form.inline #invite data-action="invite" {
                    div.row {
                        div { label for="invite-email" { "Invite by email" } input #invite-email type="email" name="email" required maxlength="320" autocomplete="off"; }
                        div {
                            label for="invite-group" { "Into group" }
                            select #invite-group name="group" required {
                                @for g in groups.iter().flatten() { option value=(view::str_at(g, "/id")) { (view::str_at(g, "/name")) } }
                            }
                        }
                        button type="submit" { "Invite" }
                        span.note role="status" {}
                    }
                }
                div #sign-in-link hidden {
                    p { "A one-time link for them to set a password (shown once; send it to them yourself):" }
                    p { code {} }
                }
            }
            table #members {
                thead { tr {
                    th scope="col" { "Member" } th scope="col" { "Groups" } th scope="col" { "Since" }
                    @if may_grant { th scope="col" { span.hidden { "Actions" } } }
                } }
                tbody {
                    @for u in users {
                        tr {
                            td { (u.email) @if u.is_service_account { " " span.badge { "service" } } }
                            td { (member_groups.get(u.id.as_str()).map(|g| g.join(", ")).unwrap_or_default()) }
                            td.nowrap { (view::time(&u.created)) }
                            @if may_grant {
                                td.actions {
                                    @if !u.is_service_account {
                                        form.password-link data-action="password-link" data-org=(v.p.org_id) data-user=(u.id) {
                                            button.secondary type="submit" aria-label={ "Make a sign-in link for " (u.email) } { "Sign-in link" }
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
    })?;
    let mut emails: Vec<(&String, &String)> = names.users.iter().collect();
    emails.sort_by(|a, b| a.1.cmp(b.1));
    let groups_html = section(groups.as_ref().map_err(clone_err), |groups| {
        html! {
            @if may_grant {
                // The members the groups' forms suggest, listed once for all of them (a list
                // in each form made the page grow with groups × members).
                datalist #member-emails {
                    @for (id, email) in &emails { option value=(email) data-user=(id) {} }
                }
                form.inline #create-group data-action="create-group" {
                    div.row {
                        div { label for="group-name" { "New group" } input #group-name name="name" required maxlength="200" autocomplete="off"; }
                        div { label for="group-description" { "Description" } input #group-description name="description" maxlength="1000" autocomplete="off"; }
                        button type="submit" { "Create group" }
                        span.note role="status" {}
                    }
                }
            }
            table #groups {
                thead { tr {
                    th scope="col" { "Group" } th scope="col" { "Description" } th scope="col" { "Members" }
                    @if may_grant { th scope="col" { span.hidden { "Actions" } } }
                } }
                tbody {
                    @for g in groups {
                        @let members = ids_of(g, "member_users");
                        @let name = view::str_at(g, "/name");
                        tr {
                            td { (name) }
                            td { (view::str_at(g, "/description")) }
                            td { (members.iter().map(|u| names.users.get(*u).map_or(*u, String::as_str)).collect::<Vec<_>>().join(", ")) }
                            @if may_grant {
                                td.actions {
                                    form.group-member data-action="group-member" data-group=(view::str_at(g, "/id")) {
                                        label.hidden for={ "member-" (view::str_at(g, "/id")) } { "Email of the member to add to or remove from " (name) }
                                        input id={ "member-" (view::str_at(g, "/id")) } name="user" type="email" list="member-emails" required maxlength="320" autocomplete="off";
                                        " " button type="submit" name="change" value="add" aria-label={ "Add to " (name) } { "Add" }
                                        " " button.secondary type="submit" name="change" value="remove" aria-label={ "Remove from " (name) } { "Remove" }
                                        span.note role="status" {}
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    })?;
    let here = format!("/app/{}/admin", path_part(&v.org));
    let roles_html = section(roles.as_ref().map_err(clone_err), |roles| {
        roles_section(&names, roles, may_grant, &here, &editing)
    })?;
    let grants = section(acls, |acls| {
        html! {
            table #grants {
                thead { tr { th scope="col" { "Who" } th scope="col" { "On" } th scope="col" { "What" } th scope="col" { span.hidden { "Actions" } } } }
                tbody {
                    @for a in &acls {
                        tr {
                            td { (names.who(a)) }
                            td { (names.target(a)) }
                            td { (names.what(a)) }
                            td { (revoke(&names, a)) }
                        }
                    }
                }
            }
        }
    })?;
    let grant_form = if may_grant {
        let mut targets = vec![(
            format!("organization:{}", v.p.org_id),
            "the whole organization".to_owned(),
        )];
        targets.extend(
            projects
                .iter()
                .map(|p| (format!("project:{}", p.id), format!("project {}", p.name))),
        );
        grant_form(
            &names,
            &groups.unwrap_or_default(),
            &roles.unwrap_or_default(),
            &targets,
        )
    } else {
        html! {}
    };
    let secrets = section(
        sv.list_secrets(&v.p, SecretKind::AiSecret, &SecretListQuery::default())
            .await,
        |list| {
            html! {
                @if list.is_empty() { p { "No provider secrets." } } @else {
                    table #secrets {
                        thead { tr { th scope="col" { "Name" } th scope="col" { "Type" } th scope="col" { "Updated" } } }
                        tbody {
                            @for x in &list {
                                tr {
                                    td { (view::str_at(x, "/name")) }
                                    td { (view::str_at(x, "/type")) }
                                    td.nowrap { (view::time(x.get("updated_at").or(x.get("created")).and_then(Value::as_str).unwrap_or_default())) }
                                }
                            }
                        }
                    }
                    p.muted { "Secret values are never shown; they are stored encrypted and used only by the proxy." }
                }
            }
        },
    )?;
    let org_id = v.p.org_id.as_str();
    let sign_in = section(sv.sign_in_settings(&v.p).await, |settings| {
        html! {
            p #password-login { "Passwords: " strong { @if settings.password_login { "allowed" } @else { "turned off (identity provider only)" } } }
            @if may_grant {
                form.inline #sign-in-settings data-action="sign-in" data-org=(org_id) {
                    span.check {
                        input #password-allowed type="checkbox" name="password_login" checked[settings.password_login];
                        label for="password-allowed" { "Members may sign in with a password" }
                    }
                    button type="submit" { "Save" }
                    span.note role="status" {}
                }
            }
        }
    })?;
    let remove = |kind: &str, id: &str, name: &str| {
        html! {
            @if may_grant {
                form.remove-connection data-action="remove-connection" data-org=(org_id) data-kind=(kind) data-id=(id)
                    data-confirm={ "Remove the connection " (name) "? No one can sign in with it any more." } {
                    button.secondary type="submit" aria-label={ "Remove " (name) } { "Remove" }
                    span.note role="status" {}
                }
            }
        }
    };
    let connections = match (
        sv.list_oidc(&v.p, &v.base).await,
        sv.list_saml(&v.p, &v.base).await,
    ) {
        (Ok(oidc), Ok(saml)) => html! {
            table #connections {
                caption { "Identity provider connections" }
                thead { tr {
                    th scope="col" { "Kind" } th scope="col" { "Name" } th scope="col" { "Provider" }
                    th scope="col" { "New members from" } th scope="col" { "Groups" }
                    th scope="col" { "To register at the provider" }
                    th scope="col" { span.hidden { "Actions" } }
                } }
                tbody {
                    @for c in listed_connections(&oidc, &saml) {
                        tr {
                            td { (c.shown) } td { strong { (c.name) } }
                            td { (c.provider) }
                            td { (c.domains.join(", ")) }
                            td { (mapped_groups(c.groups)) }
                            td { (c.register.0) " " code { (c.register.1) } }
                            td { (remove(c.kind, c.id, c.name)) }
                        }
                    }
                }
            }
            @if may_grant { (connection_forms(org_id, &oidc, &saml)) }
        },
        (Err(e), _) | (_, Err(e)) => section(Err::<(), _>(e), |_| html! {})?,
    };
    let body = html! {
        h1 { "Administration" }
        nav.sections aria-label="Sections" {
            a href="#members-h" { "Members" } " · " a href="#groups-h" { "Groups" } " · " a href="#roles-h" { "Roles" } " · "
            a href="#grants-h" { "Grants" } " · "
            a href="#secrets-h" { "Provider secrets" } " · " a href="#signin-h" { "Sign-in" } " · "
            a href={ "/app/" (path_part(&v.org)) "/audit" } { "Audit log" }
        }
        h2 #members-h { "Members" } (members)
        h2 #groups-h { "Groups" } (groups_html)
        h2 #roles-h { "Roles" } (roles_html)
        h2 #grants-h { "Grants" } (grant_form) (grants)
        h2 #secrets-h { "Provider secrets" } (secrets)
        h2 #signin-h { "Sign-in" } (sign_in) (connections)
    };
    Ok(document(
        StatusCode::OK,
        "Administration",
        Some((&v, None)),
        body,
    ))
}

/// What a role allows, in words: its permissions, those with the same object types
/// together ("read, update (prompt only)"), and the roles it includes.
fn role_allows(names: &Names, r: &Value) -> String {
    // Each permission with the types it is restricted to (none: every type).
    let mut kinds: Vec<(String, Vec<&str>, bool)> = Vec::new();
    for p in r
        .get("member_permissions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let what = view::str_at(p, "/permission").replace('_', " ");
        let at = match kinds.iter().position(|k| k.0 == what) {
            Some(at) => at,
            None => {
                kinds.push((what, Vec::new(), false));
                kinds.len() - 1
            }
        };
        if let Some(k) = kinds.get_mut(at) {
            match p.get("restrict_object_type").and_then(Value::as_str) {
                Some(kind) => k.1.push(kind),
                None => k.2 = true,
            }
        }
    }
    // Permissions with the same types, together.
    let mut groups: Vec<(Vec<String>, String)> = Vec::new();
    for (what, only, everything) in kinds {
        let on = if everything {
            String::new()
        } else {
            format!(" ({} only)", only.join(", ").replace('_', " "))
        };
        match groups.iter_mut().find(|g| g.1 == on) {
            Some(g) => g.0.push(what),
            None => groups.push((vec![what], on)),
        }
    }
    let mut parts: Vec<String> = groups
        .into_iter()
        .map(|(perms, on)| format!("{}{on}", perms.join(", ")))
        .collect();
    parts.extend(ids_of(r, "member_roles").into_iter().map(|id| {
        format!(
            "what {} allows",
            names.roles.get(id).map_or(id, String::as_str)
        )
    }));
    parts.join("; ")
}

/// A role's permissions by the object type they are restricted to ("" for none), in the
/// order the types first appear.
fn permission_lines(current: Option<&Value>) -> Vec<(&str, Vec<&str>)> {
    let mut lines: Vec<(&str, Vec<&str>)> = Vec::new();
    for p in current
        .and_then(|r| r.get("member_permissions"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let (only, what) = (
            view::str_at(p, "/restrict_object_type"),
            view::str_at(p, "/permission"),
        );
        match lines.iter_mut().find(|l| l.0 == only) {
            Some(l) => l.1.push(what),
            None => lines.push((only, vec![what])),
        }
    }
    lines
}

/// A role form's fields (ids prefixed by `prefix`): name, description, its permissions as
/// lines (an object type they are restricted to, or none, and the permissions on it: one
/// line per type the role names, and one more to add a type), and the roles it includes;
/// filled in from `current` when editing one (`roles` are the roles it may include).
fn role_fields(prefix: &str, roles: &[Value], current: Option<&Value>) -> Markup {
    use holdfast_core::authz::{Kind, Permission};
    let mut lines = permission_lines(current);
    lines.push(("", Vec::new()));
    if lines.len() < 2 {
        lines.push(("", Vec::new()));
    }
    let id = current.map(|r| view::str_at(r, "/id")).unwrap_or_default();
    let includes = current
        .map(|r| ids_of(r, "member_roles"))
        .unwrap_or_default();
    html! {
        div.row {
            div { label for={ (prefix) "-name" } { "Name" } input id={ (prefix) "-name" } name="name" required maxlength="200" autocomplete="off" value=[current.map(|r| view::str_at(r, "/name"))]; }
            div { label for={ (prefix) "-description" } { "Description" } input id={ (prefix) "-description" } name="description" maxlength="1000" autocomplete="off" value=[current.map(|r| view::str_at(r, "/description"))]; }
        }
        @for (n, (only, held)) in lines.iter().enumerate() {
            @let at = format!("{prefix}-{n}");
            fieldset.permissions {
                legend { "Permissions, line " (n + 1) }
                label for={ (at) "-only" } { "On" }
                select id={ (at) "-only" } name="restrict" {
                    option value="" { "everything granted on" }
                    @for k in Kind::ALL { @if k != Kind::Organization { option value=(k.as_str()) selected[k.as_str() == *only] { (k.as_str().replace('_', " ")) " only" } } }
                }
                @for p in Permission::ALL {
                    span.check {
                        input id={ (at) "-" (p.as_str()) } type="checkbox" name="permission" value=(p.as_str()) checked[held.contains(&p.as_str())];
                        label for={ (at) "-" (p.as_str()) } { (p.as_str().replace('_', " ")) }
                    }
                }
            }
        }
        label for={ (prefix) "-includes" } { "Also allows what these roles allow (choose any number)" }
        select id={ (prefix) "-includes" } name="includes" multiple size="4" {
            @for r in roles.iter().filter(|r| view::str_at(r, "/id") != id) {
                @let rid = view::str_at(r, "/id");
                option value=(rid) selected[includes.contains(&rid)] { (view::str_at(r, "/name")) }
            }
        }
    }
}

/// The organization's roles, built-in and custom, with a form that makes a custom role, and
/// for each custom role a link to its edit form and a button that deletes it (for those who
/// may change grants). The edit form, of the role `editing` names (`?role=` on the page), is
/// shown alone: each lists every role it may include, so a form for every role would grow the
/// page with the square of the roles. It carries the role's version, and saving changes the
/// role only if no one else has since.
fn roles_section(
    names: &Names,
    roles: &[Value],
    may_grant: bool,
    here: &str,
    editing: &str,
) -> Markup {
    let custom = |r: &Value| r.get("org_id").is_some_and(|o| !o.is_null());
    let edited = roles
        .iter()
        .find(|r| custom(r) && !editing.is_empty() && view::str_at(r, "/id") == editing);
    html! {
        @if may_grant {
            form.inline #create-role data-action="create-role" {
                h3 { "New role" }
                (role_fields("role", roles, None))
                button type="submit" { "Create role" }
                span.note role="status" {}
            }
        }
        table #roles {
            thead { tr {
                th scope="col" { "Role" } th scope="col" { "Description" } th scope="col" { "Allows" }
                @if may_grant { th scope="col" { span.hidden { "Actions" } } }
            } }
            tbody {
                @for r in roles {
                    @let name = view::str_at(r, "/name");
                    @let id = view::str_at(r, "/id");
                    tr data-role=(id) {
                        td { (name) @if !custom(r) { " " span.badge { "built-in" } } }
                        td { (view::str_at(r, "/description")) }
                        td.allows { (role_allows(names, r)) }
                        @if may_grant {
                            td.actions {
                                @if custom(r) {
                                    a.change-role href={ (here) "?" (query_string(&[("role", id)])) "#edit-role" } aria-label={ "Change role " (name) } { "Change" }
                                    " "
                                    form.delete-role data-action="delete-role" data-role=(id)
                                        data-confirm={ "Delete the role " (name) "? Every grant of it is revoked too." } {
                                        button.secondary type="submit" aria-label={ "Delete role " (name) } { "Delete" }
                                        span.note role="status" {}
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if may_grant && !editing.is_empty() {
            section.panel #edit-role aria-labelledby="edit-role-h" {
                @if let Some(r) = edited {
                    @let id = view::str_at(r, "/id");
                    @let current = serde_json::json!({
                        "member_permissions": r.get("member_permissions").cloned().unwrap_or_default(),
                        "member_roles": r.get("member_roles").cloned().unwrap_or_default(),
                    });
                    h3 #edit-role-h { "Change the role " (view::str_at(r, "/name")) }
                    form data-action="edit-role" data-role=(id) data-current=(current.to_string())
                        data-version=(entity_tag(r)) {
                        (role_fields(&format!("role-{id}"), roles, Some(r)))
                        button type="submit" { "Save role" }
                        " " a href={ (here) "#roles-h" } { "Cancel" }
                        span.note role="status" {}
                    }
                } @else {
                    h3 #edit-role-h { "Change a role" }
                    p { "There is no custom role with the id " code { (editing) } "; it may have been deleted." }
                }
            }
        }
    }
}

fn clone_err(e: &ServiceError) -> ServiceError {
    match e {
        ServiceError::Forbidden(why) => ServiceError::Forbidden(why.clone()),
        other => ServiceError::Internal(other.to_string()),
    }
}

/// A button that revokes a grant (through the ACL API).
fn revoke(names: &Names, a: &Acl) -> Markup {
    html! {
        form.revoke-grant data-action="revoke-grant" data-confirm="Revoke this grant?" {
            input type="hidden" name="id" value=(a.id);
            button.secondary type="submit" aria-label={ "Revoke " (names.what(a)) " of " (names.who(a)) " on " (names.target(a)) } { "Revoke" }
            span.note role="status" {}
        }
    }
}

/// The form that grants a group or a member a role on one of `targets` (`type:id`, label).
fn grant_form(
    names: &Names,
    groups: &[Value],
    roles: &[Value],
    targets: &[(String, String)],
) -> Markup {
    let mut users: Vec<(&String, &String)> = names.users.iter().collect();
    users.sort_by(|a, b| a.1.cmp(b.1));
    html! {
        form.inline #grant data-action="grant" {
            div.row {
                div {
                    label for="grant-who" { "Who" }
                    select #grant-who name="who" required {
                        @for g in groups { option value={ "group:" (view::str_at(g, "/id")) } { "group " (view::str_at(g, "/name")) } }
                        @for (id, email) in &users { option value={ "user:" (id) } { (email) } }
                    }
                }
                div {
                    label for="grant-on" { "On" }
                    select #grant-on name="on" required {
                        @for (value, label) in targets { option value=(value) { (label) } }
                    }
                }
                div {
                    label for="grant-role" { "Role" }
                    select #grant-role name="role" required {
                        option value="" { "Choose a role" }
                        @for r in roles { option value=(view::str_at(r, "/id")) { (view::str_at(r, "/name")) } }
                    }
                }
                button type="submit" { "Grant" }
                span.note role="status" {}
            }
        }
    }
}

/// A connection as the admin page lists it.
struct ConnectionRow<'a> {
    /// `oidc` or `saml` (its API path).
    kind: &'static str,
    shown: &'static str,
    id: &'a str,
    name: &'a str,
    provider: &'a str,
    domains: &'a [String],
    /// The claim or attribute holding a person's groups, and the groups it maps.
    groups: (&'a str, &'a std::collections::BTreeMap<String, String>),
    /// What to register at the provider, and its address.
    register: (&'static str, &'a str),
}

/// A connection's group mapping in words: "`groups`: admins → Engineers, …".
fn mapped_groups((claim, mapping): (&str, &std::collections::BTreeMap<String, String>)) -> String {
    if mapping.is_empty() {
        return "none".into();
    }
    let pairs: Vec<String> = mapping
        .iter()
        .map(|(from, to)| format!("{from} → {to}"))
        .collect();
    format!("{claim}: {}", pairs.join(", "))
}

fn listed_connections<'a>(
    oidc: &'a [OidcConnection],
    saml: &'a [SamlConnection],
) -> Vec<ConnectionRow<'a>> {
    let oidc = oidc.iter().map(|c| ConnectionRow {
        kind: "oidc",
        shown: "OpenID Connect",
        id: &c.id,
        name: &c.name,
        provider: &c.issuer,
        domains: &c.allowed_domains,
        groups: (&c.group_claim, &c.group_mapping),
        register: ("Redirect URI", &c.redirect_uri),
    });
    let saml = saml.iter().map(|c| ConnectionRow {
        kind: "saml",
        shown: "SAML",
        id: &c.id,
        name: &c.name,
        provider: &c.idp_entity_id,
        domains: &c.allowed_domains,
        groups: (&c.group_attribute, &c.group_mapping),
        register: ("Assertion consumer", &c.acs_url),
    });
    oidc.chain(saml).collect()
}

/// A group mapping as the connection forms take it: `provider group = Holdfast group`, one a
/// line.
fn mapping_lines(mapping: &std::collections::BTreeMap<String, String>) -> String {
    mapping
        .iter()
        .map(|(from, to)| format!("{from} = {to}\n"))
        .collect()
}

/// What the two kinds of connection have in common, as the forms show it.
struct Shared<'a> {
    name: &'a str,
    domains: &'a [String],
    claim: &'a str,
    mapping: &'a std::collections::BTreeMap<String, String>,
}

/// A connection form's shared fields (ids prefixed by `prefix`): the name, the email domains
/// whose people may join, the claim or attribute holding groups (`claim` says which), and
/// the mapping; filled in from `current` (name, domains, claim, mapping) when editing.
fn shared_fields(prefix: &str, claim: &str, current: Option<Shared<'_>>) -> (Markup, Markup) {
    let head = html! {
        label for={ (prefix) "-name" } { "Name (on the sign-in button)" }
        input id={ (prefix) "-name" } name="name" required maxlength="200" autocomplete="off" value=[current.as_ref().map(|c| c.name)];
        label for={ (prefix) "-domains" } { "Email domains whose people may join (comma-separated)" }
        input id={ (prefix) "-domains" } name="domains" autocomplete="off" value=[current.as_ref().map(|c| c.domains.join(", "))];
    };
    let groups = html! {
        label for={ (prefix) "-claim" } { (claim) }
        input id={ (prefix) "-claim" } name="claim" autocomplete="off" value=[current.as_ref().map(|c| c.claim)];
        label for={ (prefix) "-mapping" } { "Group mapping, one a line: provider group = Holdfast group (applied at every sign-in)" }
        textarea id={ (prefix) "-mapping" } name="mapping" rows="3" spellcheck="false" { (current.as_ref().map(|c| mapping_lines(c.mapping)).unwrap_or_default()) }
    };
    (head, groups)
}

/// The fields of an OpenID Connect connection, filled in from `current` when editing (the
/// client secret is never shown: left empty, the stored one is kept).
fn oidc_fields(prefix: &str, current: Option<&OidcConnection>) -> Markup {
    let preset = current
        .and_then(|c| serde_json::to_value(c.preset).ok())
        .and_then(|p| p.as_str().map(str::to_owned))
        .unwrap_or_else(|| "custom".into());
    let verified = current.map(|c| {
        if c.require_verified_email {
            "yes"
        } else {
            "no"
        }
    });
    let (head, groups) = shared_fields(
        prefix,
        "The ID token's claim holding groups (empty: groups)",
        current.map(|c| Shared {
            name: &c.name,
            domains: &c.allowed_domains,
            claim: &c.group_claim,
            mapping: &c.group_mapping,
        }),
    );
    html! {
        (head)
        label for={ (prefix) "-preset" } { "Provider" }
        select id={ (prefix) "-preset" } name="preset" {
            @for (value, shown) in [("google", "Google"), ("microsoft", "Microsoft Entra ID"), ("okta", "Okta"), ("custom", "Another OpenID provider")] {
                option value=(value) selected[value == preset] { (shown) }
            }
        }
        label for={ (prefix) "-issuer" } { "Issuer URL (not for Google)" }
        input id={ (prefix) "-issuer" } name="issuer" type="url" autocomplete="off" value=[current.map(|c| c.issuer.as_str())];
        label for={ (prefix) "-client" } { "Client id" }
        input id={ (prefix) "-client" } name="client_id" required autocomplete="off" value=[current.map(|c| c.client_id.as_str())];
        @if current.is_some() {
            label for={ (prefix) "-secret" } { "New client secret (empty: keep the stored one, which is never shown)" }
            input id={ (prefix) "-secret" } name="client_secret" type="password" autocomplete="new-password";
        } @else {
            label for={ (prefix) "-secret" } { "Client secret (stored encrypted, never shown)" }
            input id={ (prefix) "-secret" } name="client_secret" type="password" required autocomplete="new-password";
        }
        label for={ (prefix) "-scopes" } { "Scopes besides openid (space-separated; empty: the provider's defaults)" }
        input id={ (prefix) "-scopes" } name="scopes" autocomplete="off" value=[current.map(|c| c.scopes.join(" "))];
        label for={ (prefix) "-verified" } { "Require the provider to say the email is verified" }
        select id={ (prefix) "-verified" } name="verified" {
            @if current.is_none() { option value="" { "the provider's default (yes, except Microsoft)" } }
            option value="yes" selected[verified == Some("yes")] { "yes" }
            option value="no" selected[verified == Some("no")] { "no" }
        }
        (groups)
    }
}

/// The fields of a SAML connection, filled in from `current` when editing (its metadata
/// fields then start empty: left so, the stored metadata is kept).
fn saml_fields(prefix: &str, current: Option<&SamlConnection>) -> Markup {
    let (head, groups) = shared_fields(
        prefix,
        "The attribute holding groups (empty: groups)",
        current.map(|c| Shared {
            name: &c.name,
            domains: &c.allowed_domains,
            claim: &c.group_attribute,
            mapping: &c.group_mapping,
        }),
    );
    html! {
        (head)
        @if let Some(c) = current {
            p.muted {
                "Its metadata now: " @match &c.idp_metadata_url { Some(url) => { "read from " code { (url) } }, None => { "given as XML" } }
                ". Leave both fields below empty to keep it; give one to read it again."
            }
        }
        label for={ (prefix) "-url" } { "Identity provider metadata URL" }
        input id={ (prefix) "-url" } name="metadata_url" type="url" autocomplete="off";
        label for={ (prefix) "-xml" } { "or its metadata XML" }
        textarea id={ (prefix) "-xml" } name="metadata_xml" rows="4" spellcheck="false" {}
        label for={ (prefix) "-email" } { "The attribute holding the email (empty: the NameID when it is one, else email or mail)" }
        input id={ (prefix) "-email" } name="email_attribute" autocomplete="off" value=[current.and_then(|c| c.email_attribute.as_deref())];
        (groups)
    }
}

/// Forms adding an OpenID Connect or a SAML connection (the server reads the provider's
/// discovery document or metadata when the connection is saved, and names what it refused),
/// and one per connection that changes it in place.
fn connection_forms(org_id: &str, oidc: &[OidcConnection], saml: &[SamlConnection]) -> Markup {
    html! {
        div.tools {
            (connection_panel("Add an OpenID Connect connection", "add-oidc", org_id, None, oidc_fields("oidc", None)))
            (connection_panel("Add a SAML connection", "add-saml", org_id, None, saml_fields("saml", None)))
            @for c in oidc {
                (connection_panel(&format!("Change {}", c.name), "edit-oidc", org_id, Some(&c.id),
                    oidc_fields(&format!("oidc-{}", c.id), Some(c))))
            }
            @for c in saml {
                (connection_panel(&format!("Change {}", c.name), "edit-saml", org_id, Some(&c.id),
                    saml_fields(&format!("saml-{}", c.id), Some(c))))
            }
        }
    }
}

/// A connection form in a panel titled `title`: one that adds a connection (the form's id is
/// its `action`) or, given the connection's `id`, one that changes it.
fn connection_panel(
    title: &str,
    action: &str,
    org_id: &str,
    id: Option<&str>,
    fields: Markup,
) -> Markup {
    html! {
        details.panel {
            summary { (title) }
            form id=[id.is_none().then_some(action)] class=[id.map(|_| "edit-connection")]
                data-action=(action) data-org=(org_id) data-id=[id] {
                (fields)
                button type="submit" { @if id.is_none() { "Add connection" } @else { "Save connection" } }
                span.note role="status" {}
            }
        }
    }
}

/// "Who can see this, and why": the grants on an object, on its project and on the
/// organization that apply to its kind, each with the members it reaches (a group's members
/// by name). `None` when the viewer may not read the grants (only Owners may, by default).
pub(crate) async fn access(
    s: &AppState,
    v: &Viewer,
    (kind, label): (&str, &str),
    object_id: &str,
    project_id: &str,
) -> Result<Option<Markup>, ServiceError> {
    let sv = &s.services;
    let mut grants = Vec::new();
    for (level, id) in [
        ("organization", v.p.org_id.as_str()),
        ("project", project_id),
        (kind, object_id),
    ] {
        match sv.list_acls(&v.p, level, id).await {
            Ok(found) => grants.extend(found),
            Err(ServiceError::Forbidden(_) | ServiceError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    grants.retain(|a| a.restrict_object_type.as_deref().is_none_or(|t| t == kind));
    let users = sv.list_users(&v.p).await;
    let groups = sv.list_entities(&v.p, Entity::Group).await;
    let roles = sv.list_entities(&v.p, Entity::Role).await;
    let projects = sv.list_projects(&v.p, &Default::default()).await?;
    let names = Names::of(v, &users, &groups, &roles, &projects);
    let members: HashMap<&str, Vec<&str>> = groups
        .iter()
        .flatten()
        .map(|g| (view::str_at(g, "/id"), ids_of(g, "member_users")))
        .collect();
    let reached = |a: &Acl| -> String {
        match (&a.user_id, &a.group_id) {
            (Some(u), _) => names.users.get(u).cloned().unwrap_or_else(|| u.clone()),
            (None, Some(g)) => members
                .get(g.as_str())
                .map(|m| {
                    m.iter()
                        .map(|u| names.users.get(*u).map_or(*u, String::as_str))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default(),
            _ => String::new(),
        }
    };
    let here = |a: &Acl| a.object_type == kind && a.object_id == object_id;
    let target = [(format!("{kind}:{object_id}"), format!("this {label} only"))];
    Ok(Some(html! {
        details #access {
            summary { "Who can see this " (label) ", and why" }
            table {
                thead { tr {
                    th scope="col" { "Members" } th scope="col" { "Through" } th scope="col" { "On" } th scope="col" { "Grant" }
                    th scope="col" { span.hidden { "Actions" } }
                } }
                tbody {
                    @for a in &grants {
                        tr {
                            td { (reached(a)) } td { (names.who(a)) }
                            td { @if here(a) { "this " (label) } @else { (names.target(a)) } }
                            td { (names.what(a)) }
                            td { @if here(a) { (revoke(&names, a)) } }
                        }
                    }
                }
            }
            @if let (Ok(groups), Ok(roles)) = (&groups, &roles) {
                h3 { "Grant access to this " (label) " only" }
                (grant_form(&names, groups, roles, &target))
            }
        }
    }))
}

/// The audit log, newest first, filtered by member, action, object and time.
pub(crate) async fn audit(
    State(s): State<AppState>,
    authed: Authed,
    BaseUrl(base): BaseUrl,
    Path(org): Path<String>,
    req: Request,
) -> PageResult {
    let v = viewer(&s, authed, &org, base).await?;
    let q = req.uri().query();
    let some = |name: &str| Some(param(q, name)).filter(|x| !x.trim().is_empty());
    let query = AuditQuery {
        limit: Some(100),
        cursor: some("cursor"),
        actor_id: some("actor_id"),
        key_id: None,
        object_id: some("object_id"),
        action: some("action"),
        since: some("since"),
        until: some("until"),
    };
    let users = s.services.list_users(&v.p).await.unwrap_or_default();
    let emails: HashMap<&str, &str> = users
        .iter()
        .map(|u| (u.id.as_str(), u.email.as_str()))
        .collect();
    let (entries, next, problem) = match s.services.list_audit(&v.p, &query).await {
        Ok((e, n)) => (e, n, None),
        Err(ServiceError::InvalidField { message, .. }) => (Vec::new(), None, Some(message)),
        Err(e) => return Err(e.into()),
    };
    let here = format!("/app/{}/audit", path_part(&v.org));
    let keep: Vec<(&str, String)> = ["actor_id", "object_id", "action", "since", "until"]
        .into_iter()
        .map(|k| (k, param(q, k)))
        .collect();
    let body = html! {
        h1 { "Audit log" }
        form.controls method="get" {
            div.row {
                div {
                    label for="actor" { "Member" }
                    select #actor name="actor_id" {
                        option value="" { "anyone" }
                        @for u in &users { option value=(u.id) selected[query.actor_id.as_deref() == Some(u.id.as_str())] { (u.email) } }
                    }
                }
                div { label for="action" { "Action" } input #action name="action" value=(param(q, "action")) placeholder="login"; }
                div { label for="object" { "Object id" } input #object name="object_id" value=(param(q, "object_id")); }
                div { label for="since" { "Since (RFC 3339)" } input #since name="since" value=(param(q, "since")) placeholder="2026-12-01T00:00:00Z"; }
                div { label for="until" { "Until (RFC 3339)" } input #until name="until" value=(param(q, "until")); }
                button type="submit" #apply { "Apply" }
            }
        }
        @if let Some(p) = &problem { p.error role="alert" #problem { (p) } }
        @if entries.is_empty() { p #empty { "No entries." } } @else {
            div.scroll {
                table #audit {
                    thead { tr { th scope="col" { "Time" } th scope="col" { "Member" } th scope="col" { "Action" } th scope="col" { "Object" } th scope="col" { "Detail" } } }
                    tbody {
                        @for e in &entries {
                            tr {
                                td.nowrap { (view::time(view::str_at(e, "/created"))) }
                                td { (emails.get(view::str_at(e, "/actor_id")).copied().unwrap_or(view::str_at(e, "/actor_id"))) }
                                td { code { (view::str_at(e, "/action")) } }
                                td { (view::str_at(e, "/object_type")) " " code { (view::str_at(e, "/object_id")) } }
                                td.preview { (view::preview(e.get("detail").unwrap_or(&Value::Null), 200)) }
                            }
                        }
                    }
                }
            }
        }
        nav.pager aria-label="Pages" {
            @if let Some(c) = &next {
                @let more: Vec<(&str, &str)> = keep.iter().map(|(k, v)| (*k, v.as_str())).chain([("cursor", c.as_str())]).collect();
                a #next rel="next" href={ (here) "?" (query_string(&more)) } { "Older entries" }
            }
        }
    };
    Ok(document(
        if problem.is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        },
        "Audit log",
        Some((&v, None)),
        body,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_role_says_what_it_allows_grouped_by_object_type() {
        let names = Names {
            users: HashMap::new(),
            groups: HashMap::new(),
            roles: HashMap::from([("r1".to_owned(), "Viewer".to_owned())]),
            projects: HashMap::new(),
            org_id: "o".into(),
        };
        let perm = |p: &str, r: Option<&str>| json!({"permission": p, "restrict_object_type": r});
        let role = json!({"member_permissions": [
            perm("read", Some("experiment")), perm("read", Some("dataset")),
            perm("update", Some("experiment")), perm("update", Some("dataset")),
            perm("read_acls", None), perm("delete", Some("prompt"))],
            "member_roles": ["r1", "gone"]});
        assert_eq!(
            role_allows(&names, &role),
            "read, update (experiment, dataset only); read acls; delete (prompt only); \
             what Viewer allows; what gone allows"
        );
        assert_eq!(role_allows(&names, &json!({})), "");
    }

    #[test]
    fn a_role_form_has_a_line_per_object_type_and_one_to_add() {
        let perm = |p: &str, r: Option<&str>| json!({"permission": p, "restrict_object_type": r});
        let role = json!({"id": "r", "member_permissions": [
            perm("read", Some("prompt")), perm("read", None), perm("update", Some("prompt"))]});
        assert_eq!(
            permission_lines(Some(&role)),
            [("prompt", vec!["read", "update"]), ("", vec!["read"])]
        );
        let form = role_fields("e", &[], Some(&role)).into_string();
        assert_eq!(form.matches("<fieldset").count(), 3, "{form}");
        assert!(form.contains(
            r#"id="e-0-update" type="checkbox" name="permission" value="update" checked"#
        ));
        assert!(
            form.contains(
                r#"id="e-1-read" type="checkbox" name="permission" value="read" checked"#
            )
        );
        assert!(
            !form.contains(
                r#"id="e-2-read" type="checkbox" name="permission" value="read" checked"#
            )
        );
        assert!(form.contains(r#"<option value="prompt" selected>"#));
        // A new role: two empty lines.
        let form = role_fields("n", &[], None).into_string();
        assert_eq!(form.matches("<fieldset").count(), 2);
        assert!(!form.contains("checked") && !form.contains("selected"));
    }

    #[test]
    fn only_the_role_asked_for_gets_an_edit_form_with_its_version() {
        let names = Names {
            users: HashMap::new(),
            groups: HashMap::new(),
            roles: HashMap::new(),
            projects: HashMap::new(),
            org_id: "o".into(),
        };
        let role = |id: &str| {
            json!({"id": id, "org_id": "o", "name": format!("role {id}"),
            "member_permissions": [{"permission": "read", "restrict_object_type": null}]})
        };
        let roles: Vec<Value> = (0..300).map(|i| role(&format!("r{i}"))).collect();
        let page = |editing: &str| {
            roles_section(&names, &roles, true, "/app/o/admin", editing).into_string()
        };
        let listed = page("");
        assert_eq!(listed.matches(r#"class="change-role""#).count(), 300);
        assert!(listed.contains(r#"href="/app/o/admin?role=r299#edit-role""#));
        assert!(!listed.contains("edit-role-h"));
        let edited = page("r299");
        assert_eq!(edited.matches(r#"data-action="edit-role""#).count(), 1);
        let escaped = |text: &str| html! { (text) }.into_string();
        let current = json!({"member_permissions": roles[299]["member_permissions"],
                             "member_roles": null});
        assert!(
            edited.contains(&format!(
                r#"data-role="r299" data-current="{}" data-version="{}""#,
                escaped(&current.to_string()),
                escaped(&entity_tag(&roles[299]))
            )),
            "{edited}"
        );
        // Lists one form's worth of includable roles, not one per role.
        assert!(
            edited.len() < listed.len() * 2,
            "{} {}",
            edited.len(),
            listed.len()
        );
        let gone = page("r999");
        assert!(
            gone.contains("There is no custom role with the id") && !gone.contains("data-version")
        );
    }
}
