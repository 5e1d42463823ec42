//! Who may place members into groups.
//!
//! Guarantee: a caller may put a user (an invited member, an existing one, or a service
//! account) into a group only if it holds `update` on that group, and only if everything the
//! group grants, directly or through the groups that include it, the caller holds too, on the
//! same objects and through the same key. Inviting members therefore never leads further
//! than the inviter already reaches: an `org_member` grant alone cannot reach Owners.

use crate::{Result, ServiceError, Services};
use holdfast_core::authz::{Kind, Permission, Principal, Target};

impl Services {
    /// Refuses (403) placing members into any of `group_ids` unless the rule above holds.
    pub(crate) async fn may_place_in_groups(
        &self,
        principal: &Principal,
        group_ids: &[String],
    ) -> Result<()> {
        let policy = self.policy(principal).await?;
        for group in group_ids {
            let on_group = Target {
                kind: Kind::Group,
                project_id: None,
                object_id: Some(group),
            };
            if !principal.may(&policy, Permission::Update, &on_group) {
                return Err(ServiceError::Forbidden(format!(
                    "placing members in group {group} needs update on that group"
                )));
            }
            for (acl, pairs) in policy.grants_of_group(group) {
                let project = match acl.object_type {
                    Kind::Organization => None,
                    kind if kind == Kind::Project || kind.in_project() => self
                        .acl_object_project(principal, kind, &acl.object_id)
                        .await
                        .ok()
                        .flatten(),
                    _ => None,
                };
                for (permission, restriction) in pairs {
                    let kinds = restriction.map_or(Kind::ALL.to_vec(), |k| vec![k]);
                    for kind in kinds {
                        let target = match acl.object_type {
                            Kind::Organization => Target::org(kind),
                            Kind::Project => Target {
                                kind,
                                project_id: project.as_deref(),
                                object_id: None,
                            },
                            on => Target {
                                kind: on,
                                project_id: project.as_deref(),
                                object_id: Some(&acl.object_id),
                            },
                        };
                        if !principal.may(&policy, permission, &target) {
                            return Err(ServiceError::Forbidden(format!(
                                "group {group} grants {} on {} that this credential does not \
                                 hold; members may only be placed in groups that grant no more \
                                 than the caller holds",
                                permission.as_str(),
                                target.kind.as_str()
                            )));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
