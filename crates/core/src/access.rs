//! Who may do what, per project: verbs, the roles that bundle them, and a caller's resolved
//! rights.
//!
//! A caller is resolved once (per token, or per OIDC token and its groups) into a [`Principal`]:
//! the verbs it holds in each project, as a small bitset per project ordinal. A check is then
//! one lookup, whatever the number of projects or groups, and a list is filtered by the set of
//! projects a verb is held in (`Principal::projects_with`), intersected inside the index.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// What an action needs. `promote`, `approve` and `rollback` are apart from `edit`: a person
/// who writes a change need not be one who may promote or approve it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verb {
    /// Read objects, lists, status, history.
    View,
    /// Create, change and delete objects.
    Edit,
    /// Target clusters with a bundle (use a grant to another project's clusters).
    Deploy,
    /// Move a revision to the next stage of a pipeline, or promote a held one.
    Promote,
    /// Approve a gate, a cluster's registration or another person's break-glass request.
    Approve,
    /// Undo or abort a rollout.
    Rollback,
    /// Pause and resume rollouts.
    Pause,
    /// Tokens, grants, roles and projects' own settings.
    Admin,
    /// Ask for an elevated role for a while (a different person approves).
    BreakGlass,
}

impl Verb {
    pub const ALL: [Verb; 9] = [
        Verb::View,
        Verb::Edit,
        Verb::Deploy,
        Verb::Promote,
        Verb::Approve,
        Verb::Rollback,
        Verb::Pause,
        Verb::Admin,
        Verb::BreakGlass,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verb::View => "view",
            Verb::Edit => "edit",
            Verb::Deploy => "deploy",
            Verb::Promote => "promote",
            Verb::Approve => "approve",
            Verb::Rollback => "rollback",
            Verb::Pause => "pause",
            Verb::Admin => "admin",
            Verb::BreakGlass => "break-glass",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of verbs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Verbs(u16);

impl Verbs {
    pub const NONE: Verbs = Verbs(0);

    pub fn of(verbs: &[Verb]) -> Verbs {
        Verbs(verbs.iter().fold(0, |bits, verb| bits | verb.bit()))
    }

    pub fn contains(self, verb: Verb) -> bool {
        self.0 & verb.bit() != 0
    }

    pub fn union(self, other: Verbs) -> Verbs {
        Verbs(self.0 | other.0)
    }

    pub fn iter(self) -> impl Iterator<Item = Verb> {
        Verb::ALL
            .into_iter()
            .filter(move |verb| self.contains(*verb))
    }
}

/// The roles a binding gives, in a project (or, for `fleet-admin`, everywhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Reads everything in the project.
    Viewer,
    /// Day-to-day work: writes and deploys, pauses and rolls back, may ask for break-glass.
    /// Neither promotes nor approves.
    Operator,
    /// Everything in the project, approvals and its tokens included.
    Admin,
    /// Everything in every project, and the fleet itself (clusters, projects, grants).
    FleetAdmin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Operator, Role::Admin, Role::FleetAdmin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
            Role::FleetAdmin => "fleet-admin",
        }
    }

    /// A role as written (`viewer`, `operator`, `admin`, `fleet-admin`), or the list of roles.
    pub fn parse(text: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
                format!("unknown role {text:?}: use one of {}", names.join(", "))
            })
    }

    pub fn verbs(self) -> Verbs {
        match self {
            Role::Viewer => Verbs::of(&[Verb::View]),
            Role::Operator => Verbs::of(&[
                Verb::View,
                Verb::Edit,
                Verb::Deploy,
                Verb::Rollback,
                Verb::Pause,
                Verb::BreakGlass,
            ]),
            Role::Admin | Role::FleetAdmin => Verbs::of(&Verb::ALL),
        }
    }
}

/// Project ordinal in the server's index.
pub type ProjectId = u32;

/// A caller's rights, resolved once: verbs per project, or everything (`fleet-admin`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Principal {
    /// `token/NAME`, `oidc/SUBJECT`, `admin`: who the audit trail names.
    pub subject: String,
    pub fleet_admin: bool,
    projects: HashMap<ProjectId, Verbs>,
}

impl Principal {
    pub fn new(subject: impl Into<String>) -> Principal {
        Principal {
            subject: subject.into(),
            ..Principal::default()
        }
    }

    pub fn fleet_admin(subject: impl Into<String>) -> Principal {
        Principal {
            subject: subject.into(),
            fleet_admin: true,
            projects: HashMap::new(),
        }
    }

    /// Adds a role in a project (roles add up). `fleet-admin` makes the caller a fleet admin.
    pub fn bind(&mut self, project: ProjectId, role: Role) {
        if role == Role::FleetAdmin {
            self.fleet_admin = true;
            return;
        }
        let verbs = self.projects.entry(project).or_default();
        *verbs = verbs.union(role.verbs());
    }

    /// Whether the caller may do `verb` in `project`. O(1).
    pub fn allows(&self, project: ProjectId, verb: Verb) -> bool {
        self.fleet_admin
            || self
                .projects
                .get(&project)
                .is_some_and(|verbs| verbs.contains(verb))
    }

    /// The projects the caller holds `verb` in (`None`: every project, a fleet admin).
    pub fn projects_with(&self, verb: Verb) -> Option<impl Iterator<Item = ProjectId> + '_> {
        (!self.fleet_admin).then(|| {
            self.projects
                .iter()
                .filter(move |(_, verbs)| verbs.contains(verb))
                .map(|(&project, _)| project)
        })
    }
}

/// Role bindings by the name a caller comes with (a token's own name, an OIDC subject or one of
/// its groups): which role, in which project. Resolving a caller costs its groups' bindings,
/// once per token; checks afterwards cost nothing more.
#[derive(Debug, Clone, Default)]
pub struct Bindings {
    by_name: HashMap<String, Vec<(ProjectId, Role)>>,
}

impl Bindings {
    pub fn bind(&mut self, name: impl Into<String>, project: ProjectId, role: Role) {
        self.by_name
            .entry(name.into())
            .or_default()
            .push((project, role));
    }

    /// The principal for `subject` coming with `groups`.
    pub fn resolve<'a>(
        &self,
        subject: &'a str,
        groups: impl IntoIterator<Item = &'a str>,
    ) -> Principal {
        let mut principal = Principal::new(subject);
        for name in std::iter::once(subject).chain(groups) {
            for &(project, role) in self.by_name.get(name).map_or(&[][..], Vec::as_slice) {
                principal.bind(project, role);
            }
        }
        principal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_viewer_may_only_view() {
        let mut viewer = Principal::new("token/auditor");
        viewer.bind(1, Role::Viewer);
        for verb in Verb::ALL {
            assert_eq!(viewer.allows(1, verb), verb == Verb::View, "{verb:?}");
        }
    }

    #[test]
    fn promote_approve_and_admin_are_apart_from_edit() {
        let operator = Role::Operator.verbs();
        assert!(operator.contains(Verb::Edit) && operator.contains(Verb::Rollback));
        for verb in [Verb::Promote, Verb::Approve, Verb::Admin] {
            assert!(!operator.contains(verb), "an operator may not {verb:?}");
        }
        assert_eq!(Role::Admin.verbs().iter().count(), Verb::ALL.len());
    }

    #[test]
    fn rights_in_one_project_give_nothing_in_another() {
        let mut operator = Principal::new("token/team-a");
        operator.bind(1, Role::Operator);
        assert!(operator.allows(1, Verb::Edit));
        for verb in Verb::ALL {
            assert!(!operator.allows(2, verb), "{verb:?} in project 2");
        }
        let seen: Vec<ProjectId> = operator.projects_with(Verb::View).unwrap().collect();
        assert_eq!(seen, vec![1]);
    }

    #[test]
    fn a_fleet_admin_may_do_everything_everywhere() {
        let admin = Principal::fleet_admin("admin");
        assert!(Verb::ALL.iter().all(|&verb| admin.allows(12_345, verb)));
        assert!(
            admin.projects_with(Verb::Edit).is_none(),
            "no project filter"
        );
    }

    #[test]
    fn roles_from_several_groups_add_up() {
        let mut bindings = Bindings::default();
        bindings.bind("payments-devs", 7, Role::Operator);
        bindings.bind("payments-leads", 7, Role::Admin);
        bindings.bind("auditors", 9, Role::Viewer);
        bindings.bind("platform", 0, Role::FleetAdmin);
        let dev = bindings.resolve("oidc/alice", ["payments-devs", "auditors"]);
        assert!(dev.allows(7, Verb::Deploy) && !dev.allows(7, Verb::Approve));
        assert!(dev.allows(9, Verb::View) && !dev.allows(9, Verb::Edit));
        let lead = bindings.resolve("oidc/bob", ["payments-devs", "payments-leads"]);
        assert!(lead.allows(7, Verb::Approve));
        let nobody = bindings.resolve("oidc/eve", ["unknown-group"]);
        assert!(Verb::ALL.iter().all(|&verb| !nobody.allows(7, verb)));
        assert!(bindings.resolve("oidc/root", ["platform"]).fleet_admin);
    }

    #[test]
    fn roles_parse_as_written_and_say_which_exist() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Ok(role));
        }
        let error = Role::parse("superuser").unwrap_err();
        assert!(
            error.contains("viewer, operator, admin, fleet-admin"),
            "{error}"
        );
    }
}
