//! Table tests for the resolution algorithm.

use super::*;
use Permission::*;

const ORG: &str = "org";

fn acl(kind: Kind, id: &str, subject: Subject, grant: Grant, restrict: Option<Kind>) -> Acl {
    Acl {
        object_type: kind,
        object_id: id.into(),
        subject,
        grant,
        restrict_object_type: restrict,
    }
}
fn user(u: &str) -> Subject {
    Subject::User(u.into())
}
fn group(g: &str) -> Subject {
    Subject::Group(g.into())
}
fn role(r: &str) -> Grant {
    Grant::Role(r.into())
}

/// Built-in groups as every organization gets them, plus a nested group and custom roles.
fn policy(extra: Vec<Acl>) -> Policy {
    let mut groups = HashMap::new();
    let g = |users: &[&str], subgroups: &[&str]| GroupDef {
        member_users: users.iter().map(|s| s.to_string()).collect(),
        member_groups: subgroups.iter().map(|s| s.to_string()).collect(),
    };
    groups.insert("owners".into(), g(&["olga"], &[]));
    groups.insert("engineers".into(), g(&["erin"], &["contractors"]));
    groups.insert("viewers".into(), g(&["vic"], &[]));
    groups.insert("contractors".into(), g(&["carl"], &["interns"]));
    groups.insert("interns".into(), g(&["ivy"], &[]));
    // A cycle must not loop.
    groups.insert("loop-a".into(), g(&["lou"], &["loop-b"]));
    groups.insert("loop-b".into(), g(&[], &["loop-a"]));
    let mut roles = HashMap::new();
    roles.insert(
        "reader".to_string(),
        RoleDef {
            member_permissions: vec![(Read, None)],
            member_roles: vec![],
        },
    );
    roles.insert(
        "editor".to_string(),
        RoleDef {
            member_permissions: vec![(Update, Some(Kind::Dataset))],
            member_roles: vec!["reader".into(), "editor".into()],
        },
    );
    let mut acls = vec![
        acl(
            Kind::Organization,
            ORG,
            group("owners"),
            role(OWNER_ROLE_ID),
            None,
        ),
        acl(
            Kind::Organization,
            ORG,
            group("engineers"),
            role(ENGINEER_ROLE_ID),
            None,
        ),
        acl(
            Kind::Organization,
            ORG,
            group("viewers"),
            role(VIEWER_ROLE_ID),
            None,
        ),
    ];
    acls.extend(extra);
    Policy::new(ORG, groups, roles, acls)
}

fn targets() -> Vec<(&'static str, Target<'static>)> {
    vec![
        ("org:project", Target::org(Kind::Project)),
        ("org:group", Target::org(Kind::Group)),
        ("org:org_member", Target::org(Kind::OrgMember)),
        ("org:audit", Target::org(Kind::OrgAuditLogs)),
        ("org:ai_secret", Target::org(Kind::AiSecret)),
        ("p1", Target::project(Kind::Project, "p1")),
        ("p1:new-exp", Target::project(Kind::Experiment, "p1")),
        ("p1/e1", Target::object(Kind::Experiment, "p1", "e1")),
        ("p1/d1", Target::object(Kind::Dataset, "p1", "d1")),
        ("p1/logs", Target::object(Kind::ProjectLog, "p1", "p1")),
        ("p2/e2", Target::object(Kind::Experiment, "p2", "e2")),
    ]
}

/// `expect` lists, per target in `targets()` order, the permissions allowed as letters:
/// c r u d for create/read/update/delete and A for all four *_acls permissions.
fn check(policy: &Policy, who: &str, expect: [&str; 11]) {
    for ((name, target), want) in targets().into_iter().zip(expect) {
        for p in Permission::ALL {
            let letter = match p {
                Create => 'c',
                Read => 'r',
                Update => 'u',
                Delete => 'd',
                _ => 'A',
            };
            let allowed = policy.allows(who, p, &target);
            assert_eq!(
                allowed,
                want.contains(letter),
                "{who} {p:?} on {name}: expected {want:?}"
            );
        }
    }
}

#[test]
fn builtin_roles_by_level() {
    let p = policy(vec![]);
    let all = "crudA";
    check(&p, "olga", [all; 11]);
    let eng = "crud";
    check(
        &p,
        "erin",
        [eng, "", "", "", "", eng, eng, eng, eng, eng, eng],
    );
    check(
        &p,
        "vic",
        ["r", "", "", "", "", "r", "r", "r", "r", "r", "r"],
    );
    // Not in any group: deny by default.
    check(&p, "nobody", [""; 11]);
}

#[test]
fn nested_groups_inherit_and_cycles_end() {
    let p = policy(vec![acl(
        Kind::Organization,
        ORG,
        group("loop-b"),
        Grant::Permission(Read),
        Some(Kind::Dataset),
    )]);
    let eng = "crud";
    // carl is in contractors, which engineers includes; ivy is two levels down.
    for who in ["carl", "ivy"] {
        check(&p, who, [eng, "", "", "", "", eng, eng, eng, eng, eng, eng]);
    }
    check(&p, "lou", ["", "", "", "", "", "", "", "", "r", "", ""]);
}

#[test]
fn grants_at_project_and_object_level() {
    let p = policy(vec![
        acl(Kind::Project, "p1", user("pat"), role("reader"), None),
        acl(
            Kind::Experiment,
            "e1",
            user("eve"),
            Grant::Permission(Update),
            None,
        ),
        acl(
            Kind::ProjectLog,
            "p1",
            user("lena"),
            Grant::Permission(Create),
            None,
        ),
        acl(Kind::Project, "p1", user("dan"), role("editor"), None),
    ]);
    // pat reads p1 and everything in it, nothing in p2 or at org level.
    check(&p, "pat", ["", "", "", "", "", "r", "r", "r", "r", "r", ""]);
    // eve updates e1 only; a grant on an object does not reach its siblings or its project.
    check(&p, "eve", ["", "", "", "", "", "", "", "u", "", "", ""]);
    check(&p, "lena", ["", "", "", "", "", "", "", "", "", "c", ""]);
    // editor = update datasets + (included) reader; the self-inclusion is harmless.
    check(
        &p,
        "dan",
        ["", "", "", "", "", "r", "r", "r", "ru", "r", ""],
    );
}

#[test]
fn restrict_object_type() {
    let p = policy(vec![
        acl(
            Kind::Organization,
            ORG,
            user("rita"),
            Grant::Permission(Read),
            Some(Kind::Experiment),
        ),
        acl(
            Kind::Project,
            "p1",
            user("rita"),
            Grant::Permission(Create),
            Some(Kind::Experiment),
        ),
    ]);
    check(
        &p,
        "rita",
        ["", "", "", "", "", "", "cr", "cr", "", "", "r"],
    );
}

#[test]
fn key_scope_narrows_never_widens() {
    let p = policy(vec![]);
    let principal = |user: &str, projects: Option<Vec<&str>>, capability| Principal {
        user_id: user.into(),
        org_id: ORG.into(),
        key_id: "k".into(),
        expires_at: None,
        trail: Trail::default(),
        scope: KeyScope {
            projects: projects.map(|v| v.into_iter().map(String::from).collect()),
            capability,
        },
    };
    let may = |pr: &Principal, perm, t: Target<'_>| pr.may(&p, perm, &t);
    let exp = Target::object(Kind::Experiment, "p1", "e1");
    let logs = Target::object(Kind::ProjectLog, "p1", "p1");
    // An ingest key writes rows and registers objects, and reads nothing.
    let ingest = principal("olga", None, Capability::Ingest);
    assert!(may(&ingest, Update, logs));
    assert!(may(&ingest, Create, Target::org(Kind::Project)));
    assert!(may(
        &ingest,
        Create,
        Target::project(Kind::Experiment, "p1")
    ));
    for perm in [Read, Delete, ReadAcls, CreateAcls] {
        assert!(!may(&ingest, perm, exp), "{perm:?}");
    }
    assert!(!may(&ingest, Create, Target::org(Kind::Group)));
    // A read key reads.
    let read = principal("olga", None, Capability::Read);
    assert!(may(&read, Read, exp));
    assert!(!may(&read, Update, logs));
    // A project-limited key stays in its projects and off organization-level targets.
    let limited = principal("olga", Some(vec!["p1"]), Capability::Full);
    assert!(may(&limited, Delete, exp));
    assert!(!may(
        &limited,
        Read,
        Target::object(Kind::Experiment, "p2", "e2")
    ));
    assert!(!may(&limited, Create, Target::org(Kind::Project)));
    assert!(!may(&limited, Read, Target::org(Kind::OrgAuditLogs)));
    // The key never exceeds its user: a viewer's full key cannot write.
    let viewer = principal("vic", None, Capability::Full);
    assert!(!may(&viewer, Update, logs));
    // And never crosses organizations.
    let foreign = Principal {
        org_id: "other".into(),
        ..principal("olga", None, Capability::Full)
    };
    assert!(!may(&foreign, Read, exp));
}

#[test]
fn passes_check_the_record_facts() {
    let p = policy(vec![]);
    let olga = Principal {
        user_id: "olga".into(),
        org_id: ORG.into(),
        key_id: "k".into(),
        scope: KeyScope::default(),
        expires_at: None,
        trail: Trail::default(),
    };
    let facts = |org, project, ty, id| ObjectFacts {
        org_id: org,
        project_id: project,
        object_type: ty,
        object_id: id,
    };
    assert!(object_pass(&olga, &p, Read, facts(ORG, "p1", ObjectType::Dataset, "d1")).is_ok());
    assert!(
        object_pass(
            &olga,
            &p,
            Read,
            facts("other", "p1", ObjectType::Dataset, "d1")
        )
        .is_err()
    );
    // Project logs are the project itself.
    assert!(
        object_pass(
            &olga,
            &p,
            Read,
            facts(ORG, "p1", ObjectType::ProjectLogs, "p1")
        )
        .is_ok()
    );
    assert!(
        object_pass(
            &olga,
            &p,
            Read,
            facts(ORG, "p1", ObjectType::ProjectLogs, "p2")
        )
        .is_err()
    );
    assert!(project_pass(&olga, &p, Read, Kind::Project, "other", "p1").is_err());
    let pass = org_grant(&olga, &p, Create, Kind::Project);
    assert_eq!(pass.map(|x| x.grant()), Ok(Some((Create, Kind::Project))));
    let vic = Principal {
        user_id: "vic".into(),
        ..olga.clone()
    };
    assert!(org_grant(&vic, &p, Create, Kind::Project).is_err());
    assert!(org_grant(&vic, &p, Read, Kind::OrgAuditLogs).is_err());
    // Every decision is on the principal's trail, allowed or not.
    let (trail, more) = vic.trail.snapshot();
    assert_eq!(more, 0);
    assert!(trail.contains(&Access {
        kind: Kind::OrgAuditLogs,
        id: None,
        permission: Read,
        allowed: false
    }));
}

/// A list filtered by reach loses nothing the decision allows: every allowed target lies in
/// the reach, and a user with no grant reaches nothing.
#[test]
fn reach_covers_every_allowed_target() {
    let p = policy(vec![
        acl(Kind::Project, "p1", user("pat"), role("reader"), None),
        acl(
            Kind::Experiment,
            "e2",
            user("pat"),
            Grant::Permission(Read),
            None,
        ),
        acl(
            Kind::Dataset,
            "d9",
            user("dora"),
            Grant::Permission(Read),
            None,
        ),
        acl(
            Kind::Project,
            "p2",
            group("interns"),
            role("reader"),
            Some(Kind::Dataset),
        ),
    ]);
    let mut objects = Vec::new();
    for project in ["p1", "p2", "p3"] {
        for (kind, id) in [
            (Kind::Experiment, "e1"),
            (Kind::Experiment, "e2"),
            (Kind::Dataset, "d1"),
            (Kind::Dataset, "d9"),
            (Kind::Prompt, "f1"),
        ] {
            objects.push((kind, project, id));
        }
    }
    for who in [
        "olga", "erin", "vic", "carl", "ivy", "pat", "dora", "nobody",
    ] {
        for kind in [Kind::Project, Kind::Experiment, Kind::Dataset, Kind::Prompt] {
            let reach = p.reach(who, Read, kind);
            for project in ["p1", "p2", "p3"] {
                if kind == Kind::Project && p.allows(who, Read, &Target::project(kind, project)) {
                    assert!(
                        reach.everywhere || reach.projects.contains(project),
                        "{who} reads {project} outside {reach:?}"
                    );
                }
            }
            for (k, project, id) in &objects {
                if *k == kind && p.allows(who, Read, &Target::object(kind, project, id)) {
                    assert!(
                        reach.everywhere
                            || reach.projects.contains(*project)
                            || reach.objects.contains(*id),
                        "{who} reads {kind:?} {project}/{id} outside {reach:?}"
                    );
                }
            }
        }
    }
    // Narrow where the grants are narrow.
    let pat = p.reach("pat", Read, Kind::Experiment);
    assert!(!pat.everywhere);
    assert_eq!(pat.projects, BTreeSet::from(["p1".to_string()]));
    assert_eq!(pat.objects, BTreeSet::from(["e2".to_string()]));
    assert!(p.reach("nobody", Read, Kind::Experiment).nowhere());
    assert!(p.reach("dora", Read, Kind::Experiment).nowhere());
    assert!(p.reach("vic", Read, Kind::Dataset).everywhere);
    // The interns' grant is restricted to datasets.
    assert!(p.reach("ivy", Read, Kind::Dataset).projects.contains("p2"));
    assert!(
        !p.reach("ivy", Read, Kind::Experiment)
            .projects
            .contains("p2")
    );
}
