//! Authorization decisions and the passes that prove them.
//!
//! Guarantee: tenant data in the store can only be reached with a pass, and a pass can only be
//! made here. A pass names the organization (and project, and object) it opens and the
//! permission that was checked; the store scopes every query by the pass's ids, so a pass for
//! one organization can never read another's rows.
//!
//! Resolution rule (for now): an authenticated principal acts for its user inside the one
//! organization its key belongs to, with every permission there; anything in another
//! organization is denied. A project pass needs an organization pass for the project's
//! organization; an object pass needs a project pass for the object's project.
//!
//! Intentional bypasses (bootstrap, authentication itself, background jobs) use
//! [`SystemPass::new`], which names its reason.

use crate::object::ObjectType;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    Create,
    Read,
    Update,
    Delete,
}

impl Permission {
    pub fn writes(self) -> bool {
        !matches!(self, Self::Read)
    }
}

/// Who is asking: a user inside an organization, authenticated by an API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: String,
    pub org_id: String,
    pub key_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("access denied")]
pub struct Denied;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgPass {
    org_id: String,
    user_id: String,
    permission: Permission,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectPass {
    org: OrgPass,
    project_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectPass {
    project: ProjectPass,
    object_type: ObjectType,
    object_id: String,
}

/// A deliberate bypass of the permission model, with the reason written at the call site.
#[derive(Debug, Clone, Copy)]
pub struct SystemPass {
    reason: &'static str,
}

impl SystemPass {
    pub fn new(reason: &'static str) -> Self {
        Self { reason }
    }
    pub fn reason(&self) -> &'static str {
        self.reason
    }
}

impl OrgPass {
    pub fn org_id(&self) -> &str {
        &self.org_id
    }
    pub fn user_id(&self) -> &str {
        &self.user_id
    }
    pub fn permission(&self) -> Permission {
        self.permission
    }
}

impl ProjectPass {
    pub fn org(&self) -> &OrgPass {
        &self.org
    }
    pub fn org_id(&self) -> &str {
        &self.org.org_id
    }
    pub fn project_id(&self) -> &str {
        &self.project_id
    }
    pub fn permission(&self) -> Permission {
        self.org.permission
    }
}

impl ObjectPass {
    pub fn project(&self) -> &ProjectPass {
        &self.project
    }
    pub fn org_id(&self) -> &str {
        &self.project.org.org_id
    }
    pub fn project_id(&self) -> &str {
        &self.project.project_id
    }
    pub fn object_type(&self) -> ObjectType {
        self.object_type
    }
    pub fn object_id(&self) -> &str {
        &self.object_id
    }
    pub fn permission(&self) -> Permission {
        self.project.org.permission
    }
}

/// Checks `permission` on the organization `org_id` for `principal`.
pub fn org_pass(
    principal: &Principal,
    org_id: &str,
    permission: Permission,
) -> Result<OrgPass, Denied> {
    if principal.org_id != org_id {
        return Err(Denied);
    }
    Ok(OrgPass {
        org_id: org_id.to_owned(),
        user_id: principal.user_id.clone(),
        permission,
    })
}

/// Opens a project, given the facts read from the project record.
pub fn project_pass(
    org: &OrgPass,
    project_org_id: &str,
    project_id: &str,
) -> Result<ProjectPass, Denied> {
    if org.org_id != project_org_id {
        return Err(Denied);
    }
    Ok(ProjectPass {
        org: org.clone(),
        project_id: project_id.to_owned(),
    })
}

/// Opens an object inside a project, given the facts read from the object record. Project
/// logs are the project itself.
pub fn object_pass(
    project: &ProjectPass,
    object_type: ObjectType,
    object_id: &str,
    object_project_id: &str,
) -> Result<ObjectPass, Denied> {
    if project.project_id != object_project_id {
        return Err(Denied);
    }
    if object_type == ObjectType::ProjectLogs && object_id != project.project_id {
        return Err(Denied);
    }
    Ok(ObjectPass {
        project: project.clone(),
        object_type,
        object_id: object_id.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Permission::*;

    fn alice() -> Principal {
        Principal {
            user_id: "u1".into(),
            org_id: "org-a".into(),
            key_id: "k1".into(),
        }
    }

    #[test]
    fn decisions_table() {
        // (principal's org, requested org, project's org, object's project, allowed)
        let cases = [
            ("org-a", "org-a", "org-a", "p1", true),
            ("org-a", "org-b", "org-b", "p1", false),
            ("org-a", "org-a", "org-b", "p1", false),
            ("org-a", "org-a", "org-a", "p2", false),
        ];
        for (i, (porg, org, project_org, object_project, allowed)) in cases.into_iter().enumerate()
        {
            let principal = Principal {
                org_id: porg.into(),
                ..alice()
            };
            for perm in [Create, Read, Update, Delete] {
                let got = org_pass(&principal, org, perm)
                    .and_then(|o| project_pass(&o, project_org, "p1"))
                    .and_then(|p| object_pass(&p, ObjectType::Dataset, "d1", object_project));
                assert_eq!(got.is_ok(), allowed, "case {i} {perm:?}");
                if let Ok(pass) = got {
                    assert_eq!(pass.permission(), perm);
                    assert_eq!(pass.org_id(), "org-a");
                }
            }
        }
    }

    #[test]
    fn project_logs_pass_is_the_project_itself() {
        let org = org_pass(&alice(), "org-a", Read).unwrap();
        let p = project_pass(&org, "org-a", "p1").unwrap();
        assert!(object_pass(&p, ObjectType::ProjectLogs, "p1", "p1").is_ok());
        assert!(object_pass(&p, ObjectType::ProjectLogs, "p2", "p1").is_err());
    }
}
