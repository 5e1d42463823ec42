//! Users, the organization, and its members.

use super::Entity;
use crate::{Result, ServiceError, Services, random};
use holdfast_api::admin::{Organization, PatchMembers, PatchOrganization, User};
use holdfast_core::authz::{Capability, Kind, Permission, Principal};
use holdfast_store::UserInfo;
use serde_json::{Value, json};

fn user_json(u: &UserInfo) -> User {
    User {
        id: u.id.clone(),
        email: u.email.clone(),
        given_name: u.given_name.clone(),
        family_name: u.family_name.clone(),
        avatar_url: None,
        created: u.created.clone(),
        is_service_account: u.kind == "service",
    }
}

impl Services {
    // ---- users and the organization ----

    /// Organization metadata (members, keys) is not for ingest-only keys, which read nothing.
    pub(super) fn not_ingest_only(principal: &Principal) -> Result<()> {
        if principal.scope.capability == Capability::Ingest {
            return Err(ServiceError::Forbidden("an ingest key cannot read".into()));
        }
        Ok(())
    }

    pub async fn list_users(&self, principal: &Principal) -> Result<Vec<User>> {
        Self::not_ingest_only(principal)?;
        let lookup = self.lookup(principal)?;
        Ok(self
            .store
            .list_users(&lookup)
            .await?
            .iter()
            .map(user_json)
            .collect())
    }

    pub async fn get_user(&self, principal: &Principal, id: &str) -> Result<User> {
        Self::not_ingest_only(principal)?;
        let lookup = self.lookup(principal)?;
        self.store
            .list_users(&lookup)
            .await?
            .iter()
            .find(|u| u.id == id)
            .map(user_json)
            .ok_or_else(|| ServiceError::NotFound("user".into()))
    }

    pub async fn organization(
        &self,
        principal: &Principal,
        base_url: &str,
    ) -> Result<Organization> {
        let org = self.store.get_org(&self.lookup(principal)?).await?;
        Ok(Organization {
            id: org.id,
            name: org.name,
            api_url: base_url.to_owned(),
            proxy_url: base_url.to_owned(),
            realtime_url: None,
            is_universal_api: true,
            created: org.created,
        })
    }

    pub async fn rename_organization(
        &self,
        principal: &Principal,
        body: &PatchOrganization,
    ) -> Result<()> {
        let name = body
            .name
            .as_deref()
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| ServiceError::field("name", "field `name` is required"))?;
        let pass = self
            .org_grant(principal, Permission::Update, Kind::Organization)
            .await?;
        let before = self.store.get_org(&pass).await?.name;
        self.store.rename_org(&pass, name).await?;
        principal
            .trail
            .change(json!({"organization": {"before": before, "after": name}}));
        Ok(())
    }

    /// `PATCH /v1/organization/members`: invite users by email or id into groups, remove
    /// users by email or id.
    pub async fn patch_members(&self, principal: &Principal, body: &PatchMembers) -> Result<Value> {
        let lookup = self.lookup(principal)?;
        let org = self.store.get_org(&lookup).await?;
        if body.org_id.as_ref().is_some_and(|id| *id != org.id)
            || body.org_name.as_ref().is_some_and(|n| *n != org.name)
        {
            return Err(ServiceError::NotFound("organization".into()));
        }
        let members = self.store.list_users(&lookup).await?;
        let groups = self.store.list_entities(&lookup, Entity::Group).await?;
        let mut added = Vec::new();
        if let Some(invite) = &body.invite_users {
            let pass = self
                .org_grant(principal, Permission::Create, Kind::OrgMember)
                .await?;
            let mut group_ids = invite.group_ids.clone().unwrap_or_default();
            group_ids.extend(invite.group_id.clone());
            let mut names = invite.group_names.clone().unwrap_or_default();
            names.extend(invite.group_name.clone());
            for n in names {
                let g = groups.iter().find(|g| g.name == n).ok_or_else(|| {
                    ServiceError::field("invite_users.group_names", format!("no group named {n:?}"))
                })?;
                group_ids.push(g.id.clone());
            }
            let mut users = Vec::new();
            self.may_place_in_groups(principal, &group_ids).await?;
            for email in invite.emails.iter().flatten().cloned() {
                if !email.contains('@') || email.ends_with("@service-accounts.invalid") {
                    return Err(ServiceError::field(
                        "invite_users.emails",
                        format!("{email:?} is not an email address"),
                    ));
                }
                users.push(UserInfo {
                    id: random::uuid()?,
                    email,
                    kind: "user".into(),
                    given_name: None,
                    family_name: None,
                    created: self.now(),
                });
            }
            for id in invite.ids.iter().flatten() {
                let u = members.iter().find(|m| &m.id == id).ok_or_else(|| {
                    ServiceError::field(
                        "invite_users.ids",
                        format!("no user {id:?} in this organization"),
                    )
                })?;
                users.push(u.clone());
            }
            added = self.store.add_members(&pass, &users, &group_ids).await?;

            principal.trail.change(
                json!({"members_added": added.iter().map(|u| &u.email).collect::<Vec<_>>(),
                                          "into_groups": group_ids}),
            );
        }
        let mut removed = Vec::new();
        if let Some(remove) = &body.remove_users {
            let pass = self
                .org_grant(principal, Permission::Delete, Kind::OrgMember)
                .await?;
            let mut ids = remove.ids.clone().unwrap_or_default();
            for email in remove.emails.iter().flatten() {
                if let Some(u) = members.iter().find(|m| &m.email == email) {
                    ids.push(u.id.clone());
                }
            }
            if ids.contains(&principal.user_id) {
                return Err(ServiceError::bad("you cannot remove yourself"));
            }
            removed = self.store.remove_members(&pass, &ids, &self.now()).await?;
            self.keys.clear_cache();
            principal.trail.change(json!({"members_removed": removed}));
        }
        self.policy_changed(&principal.org_id);
        Ok(
            json!({"status": "success", "org_id": org.id, "send_email_error": null,
                  // Only what the inviter already knows: a user who also belongs to
                  // another organization shows nothing of that account here.
                  "added_users": added.iter().map(|u| json!({"id": u.id, "email": u.email}))
                      .collect::<Vec<_>>(),
                  "removed_user_ids": removed}),
        )
    }
}
