//! Who a request acts for (SPEC §4, tenants sealed): the admin token sees everything; a
//! project token sees and changes only its own project.
//!
//! Routes that name an object by id are guarded here, once, from the path: an object of
//! another project answers 404 exactly as a missing one does, so a tenant cannot even learn
//! which ids exist elsewhere. Lists are filtered and writes checked by the handlers through
//! the [`Scope`] the authentication middleware puts in the request's extensions.

use crate::error::ApiError;
use axum::http::Method;
use sluice_store::catalog::Snapshot;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The admin token: every project.
    Admin,
    /// A project token: only this project.
    Project(String),
}

impl Scope {
    /// Whether objects of `project` are visible.
    pub fn sees(&self, project: &str) -> bool {
        match self {
            Scope::Admin => true,
            Scope::Project(p) => p == project,
        }
    }

    /// The project new objects go to when the request names none.
    pub fn default_project(&self) -> Option<&str> {
        match self {
            Scope::Admin => None,
            Scope::Project(p) => Some(p),
        }
    }

    /// Refuses to create an object in, or move one to, a project this scope does not see.
    pub fn may_write(&self, project: &str) -> Result<(), ApiError> {
        if self.sees(project) {
            return Ok(());
        }
        Err(ApiError {
            field: Some("project".into()),
            ..ApiError::forbidden(format!(
                "a project token cannot create or move anything into project {project}"
            ))
        })
    }

    /// Refuses what only the admin token may do.
    pub fn require_admin(&self, what: &str) -> Result<(), ApiError> {
        match self {
            Scope::Admin => Ok(()),
            Scope::Project(_) => Err(ApiError::forbidden(format!(
                "{what} needs the admin token; a project token cannot do it"
            ))),
        }
    }
}

/// Checks a request's path against its scope before any handler runs.
pub fn guard(scope: &Scope, method: &Method, path: &str, snap: &Snapshot) -> Result<(), ApiError> {
    let Scope::Project(own) = scope else {
        return Ok(());
    };
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["v1", "projects"] if method == Method::POST => scope.require_admin("creating a project"),
        ["v1", "projects", id, rest @ ..] => {
            if id != own {
                return Err(ApiError::not_found(format!("project {id} not found")));
            }
            match rest {
                [] if method == Method::DELETE => scope.require_admin("deleting a project"),
                ["tokens", ..] => scope.require_admin("managing project tokens"),
                _ => Ok(()),
            }
        }
        ["v1", "environments", id, ..] => match snap.environments.get(*id) {
            Some(e) if !scope.sees(&e.project) => {
                Err(ApiError::not_found(format!("environment {id} not found")))
            }
            _ => Ok(()),
        },
        ["v1", "integrations", "status" | "bulk"] => Ok(()),
        ["v1", "integrations", id, ..] => match snap.integrations.get(*id) {
            Some(i) if !scope.sees(&i.project) => {
                Err(ApiError::not_found(format!("integration {id} not found")))
            }
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}
