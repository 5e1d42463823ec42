//! Built-in groups of a new organization, and the operator's commands.

use crate::{Result, ServiceError, Services, random};
use holdfast_core::authz::{BUILTIN_GROUPS, KeyScope, Kind, Subject, SystemPass};
use holdfast_store::{AclRecord, EntityRecord, UserInfo};
use secrecy::SecretString;
use serde_json::json;

impl Services {
    // ---- bootstrap and the operator CLI ----

    /// Gives an organization its built-in groups (idempotent); `owners` join Owners.
    pub async fn ensure_builtin_groups(&self, org_id: &str, owners: &[String]) -> Result<()> {
        let now = self.now();
        let mut groups = Vec::new();
        for (name, role, description) in BUILTIN_GROUPS {
            let id = random::uuid()?;
            let acl = AclRecord {
                id: random::uuid()?,
                org_id: org_id.to_owned(),
                object_type: Kind::Organization,
                object_id: org_id.to_owned(),
                subject: Subject::Group(id.clone()),
                permission: None,
                role_id: Some(role.to_owned()),
                restrict_object_type: None,
                created: now.clone(),
            };
            let group = EntityRecord {
                id,
                org_id: org_id.to_owned(),
                name: name.to_owned(),
                description: Some(description.to_owned()),
                user_id: None,
                created: now.clone(),
                members: Vec::new(),
                includes: Vec::new(),
            };
            groups.push((group, acl));
        }
        self.store
            .ensure_builtin_groups(
                &SystemPass::new("creating an organization's built-in groups"),
                org_id,
                &groups,
                owners,
            )
            .await?;
        self.policy_changed(org_id);
        Ok(())
    }

    /// Upgrades organizations made before access control: each gets its built-in groups, and
    /// its members (who all had full access) join Owners.
    pub async fn upgrade_access_control(&self) -> Result<()> {
        let why = SystemPass::new("upgrading organizations to access control");
        for (org, members) in self.store.orgs_without_groups(&why).await? {
            self.ensure_builtin_groups(&org, &members).await?;
        }
        Ok(())
    }

    /// `holdfast user create`: adds a user to an organization and a group, and returns a new
    /// key for them.
    /// Adds a user (created if new) to a group of an organization; (org id, user id).
    async fn add_user_cli(
        &self,
        org_name: &str,
        email: &str,
        group: &str,
    ) -> Result<(String, String)> {
        if !email.contains('@') {
            return Err(ServiceError::bad(format!(
                "{email:?} is not an email address"
            )));
        }
        let why = SystemPass::new("operator adds a user");
        let org = self
            .store
            .find_org_by_name(&why, org_name)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("organization {org_name:?}")))?;
        let new_user = UserInfo {
            id: random::uuid()?,
            email: email.to_owned(),
            kind: "user".into(),
            given_name: None,
            family_name: None,
            created: self.now(),
        };
        let user = self
            .store
            .add_member_as_operator(&why, &org.id, &new_user, group)
            .await?;
        self.policy_changed(&org.id);
        Ok((org.id, user))
    }

    /// `holdfast user invite`: adds the user to the group (created if new) and makes a
    /// one-time link to set their password (`reset`: a reset link, for a member who has one);
    /// returns the link's token and when it expires.
    pub async fn invite_user_cli(
        &self,
        org_name: &str,
        email: &str,
        group: &str,
        reset: bool,
    ) -> Result<(SecretString, String)> {
        let (org_id, user) = self.add_user_cli(org_name, email.trim(), group).await?;
        let kind = if reset {
            crate::accounts::LinkKind::Reset
        } else {
            crate::accounts::LinkKind::Invite
        };
        self.make_account_link(&org_id, &user, kind).await
    }

    /// `holdfast user create`: adds the user to the group and makes them an API key.
    pub async fn create_user_cli(
        &self,
        org_name: &str,
        email: &str,
        group: &str,
    ) -> Result<SecretString> {
        let why = SystemPass::new("operator adds a user");
        let (org_id, user) = self.add_user_cli(org_name, email, group).await?;
        let key = self
            .keys
            .mint(&org_id, &user, "cli key", None, &KeyScope::default())?;
        self.store.insert_api_key(&why, &key.record).await?;
        self.audit
            .record_durable(holdfast_store::NewAuditEntry {
                at: self.now(),
                org_id: Some(org_id.clone()),
                actor_id: None,
                key_id: None,
                action: "cli user create".into(),
                object_type: Some("org_member".into()),
                object_id: Some(user),
                detail: json!({"email": email, "group": group, "key_created": key.record.id}),
            })
            .await?;
        Ok(key.token)
    }
}
