//! Creating many integrations in one call (`POST /v1/integrations/bulk`): each one is checked
//! exactly as a single create is (its own rules, its project's environments, an id not yet
//! taken — nor taken earlier in the same call), the accepted ones are stored concurrently (the
//! embedded store folds them into a few group commits; JetStream pipelines them) and the
//! snapshot is published **once** for all of them. Results are per item, in input order: one
//! item's refusal or failed write never changes another's.

use super::{Catalog, CatalogError, encode};
use crate::error::StoreError;
use crate::meta::{Bucket, Expect};
use sluice_core::model::Integration;
use std::collections::HashSet;
use std::sync::Arc;

impl Catalog {
    /// Whether `i` could be created now (id free, project and environments as required) —
    /// a check against the current snapshot, before work that should not be done for an
    /// integration the catalog would refuse; [`Catalog::create_integrations`] checks again.
    pub fn check_new_integration(&self, i: &Integration) -> Result<(), CatalogError> {
        let snap = self.snapshot();
        if snap.integrations.contains_key(&i.id) {
            return Err(already_exists(&i.id));
        }
        Catalog::check_integration(&snap, i)
    }

    /// Creates every integration of `items` that passes the checks of
    /// [`Catalog::create_integration`]; the answer has one result per item, in order.
    pub async fn create_integrations(
        &self,
        items: Vec<Integration>,
    ) -> Vec<Result<Integration, CatalogError>> {
        let _g = self.write_lock.lock().await;
        let snap = self.snapshot();
        let mut ids = HashSet::new();
        let checked: Vec<Result<Integration, CatalogError>> = items
            .into_iter()
            .map(|i| {
                if snap.integrations.contains_key(&i.id) || !ids.insert(i.id.clone()) {
                    return Err(already_exists(&i.id));
                }
                Catalog::check_integration(&snap, &i)?;
                Ok(i)
            })
            .collect();
        let writes = checked.into_iter().map(|r| async move {
            let i = r?;
            let bytes = encode(Bucket::Integrations, &i.id, &i)?;
            match self
                .meta
                .put(Bucket::Integrations, &i.id, bytes, Expect::Absent)
                .await
            {
                Ok(_) => Ok(i),
                Err(StoreError::Conflict { .. }) => Err(already_exists(&i.id)),
                Err(e) => Err(e.into()),
            }
        });
        let results = futures_util::future::join_all(writes).await;
        let stored: Vec<Arc<Integration>> = results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|i| Arc::new(i.clone()))
            .collect();
        if !stored.is_empty() {
            self.commit_change(|s| {
                for i in stored {
                    s.integrations.insert(i.id.clone(), i);
                }
            })
            .await;
        }
        results
    }
}

fn already_exists(id: &str) -> CatalogError {
    CatalogError::Conflict(format!("integration {id} already exists"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{Fault, MemoryMeta, Op};
    use sluice_core::model::{DEFAULT_PROJECT, Environment};

    fn integration(id: &str, envs: &[&str]) -> Integration {
        serde_json::from_value(serde_json::json!({
            "id": id, "name": id, "project": DEFAULT_PROJECT,
            "url": "https://example.com/hook", "environments": envs,
        }))
        .expect("integration")
    }

    async fn catalog() -> (Arc<MemoryMeta>, Catalog) {
        let meta = Arc::new(MemoryMeta::new());
        let c = Catalog::load(meta.clone()).await.expect("load");
        c.create_environment(Environment {
            id: "prod".into(),
            name: "prod".into(),
            project: DEFAULT_PROJECT.into(),
            sdk_keys: vec!["sdk-key-1".into()],
        })
        .await
        .expect("environment");
        (meta, c)
    }

    #[tokio::test]
    async fn each_item_is_checked_as_a_single_create_and_answered_in_order() {
        let (meta, c) = catalog().await;
        c.create_integration(integration("taken", &["prod"]))
            .await
            .expect("create");
        let mut changes = c.subscribe();
        changes.borrow_and_update();
        let results = c
            .create_integrations(vec![
                integration("a", &["prod"]),
                integration("taken", &["prod"]),
                integration("b", &["missing-env"]),
                integration("a", &["prod"]),
                integration("c", &["prod"]),
            ])
            .await;
        let ids: Vec<Result<&str, &CatalogError>> = results
            .iter()
            .map(|r| r.as_ref().map(|i| i.id.as_str()))
            .collect();
        assert!(matches!(ids[0], Ok("a")));
        assert!(matches!(ids[1], Err(CatalogError::Conflict(_))));
        assert!(matches!(ids[2], Err(CatalogError::Invalid(_))));
        assert!(
            matches!(ids[3], Err(CatalogError::Conflict(_))),
            "an id repeated within one call is created once"
        );
        assert!(matches!(ids[4], Ok("c")));
        let snap = c.snapshot();
        assert!(snap.integrations.contains_key("a") && snap.integrations.contains_key("c"));
        assert!(!snap.integrations.contains_key("b"));
        assert!(changes.has_changed().expect("open"));
        // Stored, not only mirrored: a fresh catalog over the same store sees them.
        let again = Catalog::load(meta).await.expect("load");
        assert_eq!(again.snapshot().integrations.len(), 3);
    }

    #[tokio::test]
    async fn a_failed_write_fails_its_item_only() {
        let (meta, c) = catalog().await;
        meta.faults().fail_next(Op::Put, 1, Fault::Fail);
        let results = c
            .create_integrations(vec![
                integration("x", &["prod"]),
                integration("y", &["prod"]),
            ])
            .await;
        let failed: Vec<bool> = results.iter().map(Result::is_err).collect();
        assert_eq!(failed.iter().filter(|f| **f).count(), 1, "{results:?}");
        assert!(
            results
                .iter()
                .any(|r| matches!(r, Err(CatalogError::Store(StoreError::Unavailable { .. }))))
        );
        let snap = c.snapshot();
        assert_eq!(
            snap.integrations.len(),
            1,
            "only the stored one is published"
        );
    }

    #[tokio::test]
    async fn nothing_to_create_publishes_nothing() {
        let (_m, c) = catalog().await;
        let mut changes = c.subscribe();
        changes.borrow_and_update();
        let results = c
            .create_integrations(vec![integration("z", &["nope"])])
            .await;
        assert!(results[0].is_err());
        assert!(!changes.has_changed().expect("open"));
    }
}
