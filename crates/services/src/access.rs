//! The access service: turns a principal and a request into passes. Every service function
//! reaches tenant data through these helpers, which read the record being opened inside the
//! principal's organization and hand its facts to `holdfast_core::authz`.

use crate::{Result, Services};
use holdfast_core::authz::{self, ObjectPass, OrgPass, Permission, Principal, ProjectPass};
use holdfast_core::object::ObjectType;
use holdfast_store::{ObjectRecord, ProjectRecord};

impl Services {
    pub fn org_pass(&self, principal: &Principal, permission: Permission) -> Result<OrgPass> {
        Ok(authz::org_pass(principal, &principal.org_id, permission)?)
    }

    pub async fn project_pass(
        &self,
        principal: &Principal,
        project_id: &str,
        permission: Permission,
    ) -> Result<(ProjectRecord, ProjectPass)> {
        let org = self.org_pass(principal, permission)?;
        let project = self.store.get_project(&org, project_id).await?;
        let pass = authz::project_pass(&org, &project.org_id, &project.id)?;
        Ok((project, pass))
    }

    /// Opens an experiment, dataset or prompt by id; project logs are opened by project id.
    pub async fn object_pass(
        &self,
        principal: &Principal,
        kind: ObjectType,
        id: &str,
        permission: Permission,
    ) -> Result<(Option<ObjectRecord>, ObjectPass)> {
        if kind == ObjectType::ProjectLogs {
            let (_, project) = self.project_pass(principal, id, permission).await?;
            let pass = authz::object_pass(&project, kind, id, id)?;
            return Ok((None, pass));
        }
        let org = self.org_pass(principal, permission)?;
        let object = self.store.get_object(&org, kind, id).await?;
        let project = self.store.get_project(&org, &object.project_id).await?;
        let project_pass = authz::project_pass(&org, &project.org_id, &project.id)?;
        let pass = authz::object_pass(&project_pass, kind, &object.id, &object.project_id)?;
        Ok((Some(object), pass))
    }
}
