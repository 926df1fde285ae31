//! The configuration catalog: projects, environments and integrations, persisted in a
//! [`MetaStore`] and mirrored in memory so that ingest can resolve an SDK key without
//! touching storage. Every change bumps a `watch` channel that the delivery engine
//! follows to start, restart and stop integration tasks.
//!
//! Owns the cross-object rules: an SDK key belongs to exactly one environment; an
//! integration lists only environments of its own project; nothing referenced can be
//! deleted.

mod bulk;

use crate::error::StoreError;
use crate::meta::{Bucket, Expect, MetaStore};
use sluice_core::ValidationError;
use sluice_core::model::{DEFAULT_PROJECT, Environment, Integration, Project, key_digest};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock};
use thiserror::Error;
use tokio::sync::{Mutex, watch};

#[derive(Debug, Error)]
pub enum CatalogError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("invalid {0}")]
    Invalid(#[from] ValidationError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An immutable view of the whole configuration.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub projects: BTreeMap<String, Arc<Project>>,
    pub environments: BTreeMap<String, Arc<Environment>>,
    pub integrations: BTreeMap<String, Arc<Integration>>,
    keys: HashMap<[u8; 32], Arc<Environment>>,
}

impl Snapshot {
    fn build(
        projects: Vec<Project>,
        environments: Vec<Environment>,
        integrations: Vec<Integration>,
    ) -> Snapshot {
        let mut s = Snapshot::default();
        for p in projects {
            s.projects.insert(p.id.clone(), Arc::new(p));
        }
        for e in environments {
            s.environments.insert(e.id.clone(), Arc::new(e));
        }
        for i in integrations {
            s.integrations.insert(i.id.clone(), Arc::new(i));
        }
        s.index_keys();
        s
    }

    /// Rebuilds the SDK-key index from the environments (after a change).
    fn index_keys(&mut self) {
        self.keys.clear();
        for e in self.environments.values() {
            for k in &e.sdk_keys {
                self.keys.insert(key_digest(k), e.clone());
            }
        }
    }

    /// The environment an SDK key identifies.
    pub fn environment_for_key(&self, key: &str) -> Option<&Arc<Environment>> {
        self.keys.get(&key_digest(key))
    }
}

pub struct Catalog {
    meta: Arc<dyn MetaStore>,
    current: RwLock<Arc<Snapshot>>,
    changes: watch::Sender<u64>,
    /// Serializes admin writes so cross-object checks see a stable catalog.
    write_lock: Mutex<()>,
}

fn decode<T: serde::de::DeserializeOwned>(
    bucket: Bucket,
    key: &str,
    raw: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(raw).map_err(|e| StoreError::corrupt(format!("{bucket}/{key}"), e))
}

/// The stored form of a catalog object; an object that cannot be serialized is an error,
/// never empty bytes.
fn encode<T: serde::Serialize>(bucket: Bucket, key: &str, v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::encode(format!("{bucket}/{key}"), e))
}

impl Catalog {
    /// Loads the catalog, creating the `default` project on first start.
    pub async fn load(meta: Arc<dyn MetaStore>) -> Result<Catalog, StoreError> {
        if meta.get(Bucket::Projects, DEFAULT_PROJECT).await?.is_none() {
            let p = Project {
                id: DEFAULT_PROJECT.into(),
                name: "Default".into(),
            };
            match meta
                .put(
                    Bucket::Projects,
                    DEFAULT_PROJECT,
                    encode(Bucket::Projects, DEFAULT_PROJECT, &p)?,
                    Expect::Absent,
                )
                .await
            {
                Ok(_) | Err(StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let snapshot = Self::read_all(meta.as_ref()).await?;
        Ok(Catalog {
            meta,
            current: RwLock::new(Arc::new(snapshot)),
            changes: watch::Sender::new(0),
            write_lock: Mutex::new(()),
        })
    }

    async fn read_all(meta: &dyn MetaStore) -> Result<Snapshot, StoreError> {
        async fn all<T: serde::de::DeserializeOwned>(
            meta: &dyn MetaStore,
            b: Bucket,
        ) -> Result<Vec<T>, StoreError> {
            meta.list(b, "")
                .await?
                .into_iter()
                .map(|(k, v)| decode(b, &k, &v.value))
                .collect()
        }
        Ok(Snapshot::build(
            all(meta, Bucket::Projects).await?,
            all(meta, Bucket::Environments).await?,
            all(meta, Bucket::Integrations).await?,
        ))
    }

    /// Re-reads everything from the store (after another node changed it). Serialized
    /// with this node's writes, so it never installs a snapshot older than one of them.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let _g = self.write_lock.lock().await;
        let s = Self::read_all(self.meta.as_ref()).await?;
        self.publish(s);
        Ok(())
    }

    /// Mirrors changes made through other nodes (SPEC §7): watches the configuration
    /// buckets and reloads on every burst of changes (and after a watch is started again,
    /// so nothing committed while it was down is missed). Runs until the catalog is
    /// dropped by everyone else.
    pub fn follow(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            use futures_util::StreamExt as _;
            const BUCKETS: [Bucket; 3] =
                [Bucket::Projects, Bucket::Environments, Bucket::Integrations];
            loop {
                let Some(me) = weak.upgrade() else { return };
                let mut streams = Vec::new();
                for b in BUCKETS {
                    match me.meta.watch(b, "").await {
                        Ok(w) => streams.push(w.changes),
                        Err(e) => {
                            tracing::warn!(bucket = %b, error = %e, "cannot watch configuration; retrying");
                            break;
                        }
                    }
                }
                if streams.len() == BUCKETS.len() {
                    if let Err(e) = me.reload().await {
                        tracing::warn!(error = %e, "cannot reload configuration");
                    }
                    let mut all = futures_util::stream::select_all(streams);
                    drop(me);
                    // A burst of changes costs one reload: take what is ready, then read.
                    while let Some(first) = all.next().await {
                        let mut failed = first.is_err();
                        while let Some(Some(more)) =
                            futures_util::FutureExt::now_or_never(all.next())
                        {
                            failed |= more.is_err();
                        }
                        let Some(me) = weak.upgrade() else { return };
                        if let Err(e) = me.reload().await {
                            tracing::warn!(error = %e, "cannot reload configuration");
                            failed = true;
                        }
                        if failed {
                            break;
                        }
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        })
    }

    /// Installs `s` as the current snapshot, then signals the change. A poisoned lock is
    /// recovered (a snapshot is replaced whole, so a panicking holder cannot have left it
    /// half-written): the change is always applied before it is signalled.
    fn publish(&self, s: Snapshot) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(s);
        self.changes.send_modify(|v| *v += 1);
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Bumped after every configuration change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub fn meta(&self) -> &Arc<dyn MetaStore> {
        &self.meta
    }

    /// Applies `f` to a copy of the current snapshot and publishes it. The copy shares every
    /// unchanged object (`Arc`s are cloned, never the objects), so a change costs pointer
    /// copies proportional to the catalog, not a deep copy of it.
    async fn commit_change(&self, f: impl FnOnce(&mut Snapshot)) {
        let mut s = (*self.snapshot()).clone();
        f(&mut s);
        s.index_keys();
        self.publish(s);
    }

    // ---- projects ----

    /// Creates (`create`) or replaces an object: the catalog's one write path. Checks
    /// existence against the snapshot, the object's own rules and its cross-object rules,
    /// stores it (compare-and-swap: absent on create), then publishes the new snapshot.
    async fn put<T: CatalogObject>(&self, obj: T, create: bool) -> Result<T, CatalogError> {
        let _g = self.write_lock.lock().await;
        let snap = self.snapshot();
        let exists = T::map(&snap).contains_key(obj.id());
        if create && exists {
            return Err(CatalogError::Conflict(format!(
                "{} {} already exists",
                T::KIND,
                obj.id()
            )));
        }
        if !create && !exists {
            return Err(CatalogError::NotFound(format!("{} {}", T::KIND, obj.id())));
        }
        obj.check(&snap)?;
        let expect = if create { Expect::Absent } else { Expect::Any };
        let bytes = encode(T::BUCKET, obj.id(), &obj)?;
        self.meta
            .put(T::BUCKET, obj.id(), bytes, expect)
            .await
            .map_err(|e| match e {
                StoreError::Conflict { .. } if create => {
                    CatalogError::Conflict(format!("{} {} already exists", T::KIND, obj.id()))
                }
                e => e.into(),
            })?;
        let stored = obj.clone();
        self.commit_change(|s| {
            T::map_mut(s).insert(stored.id().to_owned(), Arc::new(stored));
        })
        .await;
        Ok(obj)
    }

    pub async fn create_project(&self, p: Project) -> Result<Project, CatalogError> {
        self.put(p, true).await
    }

    pub async fn update_project(&self, p: Project) -> Result<Project, CatalogError> {
        self.put(p, false).await
    }

    pub async fn delete_project(&self, id: &str) -> Result<(), CatalogError> {
        let _g = self.write_lock.lock().await;
        let snap = self.snapshot();
        if !snap.projects.contains_key(id) {
            return Err(CatalogError::NotFound(format!("project {id}")));
        }
        if snap.environments.values().any(|e| e.project == id)
            || snap.integrations.values().any(|i| i.project == id)
        {
            return Err(CatalogError::Conflict(format!(
                "project {id} still has environments or integrations; delete them first"
            )));
        }
        self.meta.delete(Bucket::Projects, id, Expect::Any).await?;
        self.commit_change(|s| {
            s.projects.remove(id);
        })
        .await;
        Ok(())
    }

    // ---- environments ----

    fn check_environment(snap: &Snapshot, e: &Environment) -> Result<(), CatalogError> {
        e.validate()?;
        if !snap.projects.contains_key(&e.project) {
            return Err(ValidationError::new(
                "project",
                format!("project {} does not exist", e.project),
            )
            .into());
        }
        if let Some(existing) = snap.environments.get(&e.id)
            && existing.project != e.project
            && snap
                .integrations
                .values()
                .any(|i| i.environments.contains(&e.id))
        {
            return Err(CatalogError::Conflict(format!(
                "environment {} is used by integrations of project {}; it cannot move to another project",
                e.id, existing.project
            )));
        }
        for k in &e.sdk_keys {
            if let Some(owner) = snap.environment_for_key(k)
                && owner.id != e.id
            {
                return Err(CatalogError::Conflict(
                    "an SDK key is already used by another environment".into(),
                ));
            }
        }
        Ok(())
    }

    pub async fn create_environment(&self, e: Environment) -> Result<Environment, CatalogError> {
        self.put(e, true).await
    }

    pub async fn update_environment(&self, e: Environment) -> Result<Environment, CatalogError> {
        self.put(e, false).await
    }

    pub async fn delete_environment(&self, id: &str) -> Result<(), CatalogError> {
        let _g = self.write_lock.lock().await;
        let snap = self.snapshot();
        if !snap.environments.contains_key(id) {
            return Err(CatalogError::NotFound(format!("environment {id}")));
        }
        if let Some(i) = snap
            .integrations
            .values()
            .find(|i| i.environments.iter().any(|e| e == id))
        {
            return Err(CatalogError::Conflict(format!(
                "environment {id} is used by integration {}; remove it there first",
                i.id
            )));
        }
        self.meta
            .delete(Bucket::Environments, id, Expect::Any)
            .await?;
        self.commit_change(|s| {
            s.environments.remove(id);
        })
        .await;
        Ok(())
    }

    // ---- integrations ----

    fn check_integration(snap: &Snapshot, i: &Integration) -> Result<(), CatalogError> {
        i.validate()?;
        if !snap.projects.contains_key(&i.project) {
            return Err(ValidationError::new(
                "project",
                format!("project {} does not exist", i.project),
            )
            .into());
        }
        for e in &i.environments {
            match snap.environments.get(e) {
                None => {
                    return Err(ValidationError::new(
                        "environments",
                        format!("environment {e} does not exist"),
                    )
                    .into());
                }
                Some(env) if env.project != i.project => {
                    return Err(ValidationError::new(
                        "environments",
                        format!(
                            "environment {e} belongs to project {}, not {}",
                            env.project, i.project
                        ),
                    )
                    .into());
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    pub async fn create_integration(&self, i: Integration) -> Result<Integration, CatalogError> {
        self.put(i, true).await
    }

    pub async fn update_integration(&self, i: Integration) -> Result<Integration, CatalogError> {
        self.put(i, false).await
    }

    pub async fn delete_integration(&self, id: &str) -> Result<(), CatalogError> {
        let _g = self.write_lock.lock().await;
        if !self.snapshot().integrations.contains_key(id) {
            return Err(CatalogError::NotFound(format!("integration {id}")));
        }
        self.meta
            .delete(Bucket::Integrations, id, Expect::Any)
            .await?;
        self.commit_change(|s| {
            s.integrations.remove(id);
        })
        .await;
        Ok(())
    }
}

/// What the catalog's one write path needs to know about an object kind.
trait CatalogObject: Clone + serde::Serialize {
    const KIND: &'static str;
    const BUCKET: Bucket;
    fn id(&self) -> &str;
    fn map(s: &Snapshot) -> &BTreeMap<String, Arc<Self>>;
    fn map_mut(s: &mut Snapshot) -> &mut BTreeMap<String, Arc<Self>>;
    /// The object's own validation and its rules against the rest of the catalog.
    fn check(&self, snap: &Snapshot) -> Result<(), CatalogError>;
}

impl CatalogObject for Project {
    const KIND: &'static str = "project";
    const BUCKET: Bucket = Bucket::Projects;
    fn id(&self) -> &str {
        &self.id
    }
    fn map(s: &Snapshot) -> &BTreeMap<String, Arc<Self>> {
        &s.projects
    }
    fn map_mut(s: &mut Snapshot) -> &mut BTreeMap<String, Arc<Self>> {
        &mut s.projects
    }
    fn check(&self, _snap: &Snapshot) -> Result<(), CatalogError> {
        Ok(self.validate()?)
    }
}

impl CatalogObject for Environment {
    const KIND: &'static str = "environment";
    const BUCKET: Bucket = Bucket::Environments;
    fn id(&self) -> &str {
        &self.id
    }
    fn map(s: &Snapshot) -> &BTreeMap<String, Arc<Self>> {
        &s.environments
    }
    fn map_mut(s: &mut Snapshot) -> &mut BTreeMap<String, Arc<Self>> {
        &mut s.environments
    }
    fn check(&self, snap: &Snapshot) -> Result<(), CatalogError> {
        Catalog::check_environment(snap, self)
    }
}

impl CatalogObject for Integration {
    const KIND: &'static str = "integration";
    const BUCKET: Bucket = Bucket::Integrations;
    fn id(&self) -> &str {
        &self.id
    }
    fn map(s: &Snapshot) -> &BTreeMap<String, Arc<Self>> {
        &s.integrations
    }
    fn map_mut(s: &mut Snapshot) -> &mut BTreeMap<String, Arc<Self>> {
        &mut s.integrations
    }
    fn check(&self, snap: &Snapshot) -> Result<(), CatalogError> {
        Catalog::check_integration(snap, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{Fault, MemoryMeta, Op};

    async fn catalog() -> (Arc<MemoryMeta>, Catalog) {
        let meta = Arc::new(MemoryMeta::new());
        let c = Catalog::load(meta.clone()).await.expect("load");
        (meta, c)
    }

    fn env(id: &str, project: &str, key: &str) -> Environment {
        Environment {
            id: id.into(),
            name: id.into(),
            project: project.into(),
            sdk_keys: vec![key.into()],
        }
    }

    fn integration(id: &str, project: &str, envs: &[&str]) -> Integration {
        serde_json::from_value(serde_json::json!({
            "id": id, "name": id, "project": project,
            "url": "https://example.com/hook", "environments": envs,
        }))
        .expect("integration")
    }

    fn project(id: &str) -> Project {
        Project {
            id: id.into(),
            name: id.into(),
        }
    }

    #[tokio::test]
    async fn loading_creates_the_default_project_once() {
        let (meta, c) = catalog().await;
        assert!(c.snapshot().projects.contains_key(DEFAULT_PROJECT));
        let again = Catalog::load(meta).await.expect("load again");
        assert_eq!(again.snapshot().projects.len(), 1);
    }

    #[tokio::test]
    async fn cross_object_rules() {
        let (_m, c) = catalog().await;
        c.create_environment(env("prod", DEFAULT_PROJECT, "sdk-key-1"))
            .await
            .expect("create");
        let snap = c.snapshot();
        assert_eq!(
            snap.environment_for_key("sdk-key-1").map(|e| e.id.as_str()),
            Some("prod")
        );
        assert!(matches!(
            c.create_environment(env("prod", DEFAULT_PROJECT, "sdk-key-9"))
                .await,
            Err(CatalogError::Conflict(_))
        ));
        assert!(matches!(
            c.create_environment(env("stage", DEFAULT_PROJECT, "sdk-key-1"))
                .await,
            Err(CatalogError::Conflict(_)),
        ));
        assert!(matches!(
            c.create_environment(env("x", "nope", "sdk-key-2")).await,
            Err(CatalogError::Invalid(_))
        ));
        c.create_project(project("other")).await.expect("project");
        assert!(matches!(
            c.create_integration(integration("i", "other", &["prod"]))
                .await,
            Err(CatalogError::Invalid(_))
        ));
        c.create_integration(integration("i", DEFAULT_PROJECT, &["prod"]))
            .await
            .expect("integration");
        assert!(matches!(
            c.delete_environment("prod").await,
            Err(CatalogError::Conflict(_))
        ));
        assert!(matches!(
            c.delete_project(DEFAULT_PROJECT).await,
            Err(CatalogError::Conflict(_))
        ));
        assert!(matches!(
            c.update_project(project("missing")).await,
            Err(CatalogError::NotFound(_))
        ));
        c.delete_integration("i").await.expect("delete");
        c.delete_environment("prod").await.expect("delete");
        assert!(c.snapshot().environment_for_key("sdk-key-1").is_none());
    }

    #[tokio::test]
    async fn a_failed_store_write_changes_nothing_and_signals_nothing() {
        let (meta, c) = catalog().await;
        let mut changes = c.subscribe();
        changes.borrow_and_update();
        meta.faults().fail_next(Op::Put, 1, Fault::Fail);
        assert!(matches!(
            c.create_project(project("p")).await,
            Err(CatalogError::Store(StoreError::Unavailable { .. }))
        ));
        assert!(!c.snapshot().projects.contains_key("p"));
        assert!(!changes.has_changed().expect("open"));
        c.create_project(project("p")).await.expect("create");
        assert!(changes.has_changed().expect("open"));
        assert!(c.snapshot().projects.contains_key("p"));
    }

    /// Defect 6: with the snapshot lock poisoned, a change was stored and signalled but
    /// never applied, so the running configuration differed from the stored one.
    #[tokio::test]
    async fn a_poisoned_lock_never_hides_a_signalled_change() {
        let (_m, c) = catalog().await;
        let c = Arc::new(c);
        let holder = c.clone();
        let poisoned = std::thread::spawn(move || {
            let _guard = holder.current.write();
            panic!("a panic while holding the catalog lock (expected by this test)");
        })
        .join();
        assert!(poisoned.is_err() && c.current.is_poisoned());
        let mut changes = c.subscribe();
        changes.borrow_and_update();
        c.create_project(project("after")).await.expect("create");
        assert!(
            changes.has_changed().expect("open"),
            "the change is signalled"
        );
        assert!(
            c.snapshot().projects.contains_key("after"),
            "and applied before it is signalled"
        );
    }

    #[tokio::test]
    async fn reload_applies_and_signals_changes_made_elsewhere() {
        let (meta, c) = catalog().await;
        let mut changes = c.subscribe();
        changes.borrow_and_update();
        let other = Catalog::load(meta).await.expect("second node");
        other
            .create_project(project("remote"))
            .await
            .expect("create");
        assert!(!c.snapshot().projects.contains_key("remote"));
        c.reload().await.expect("reload");
        assert!(changes.has_changed().expect("open"));
        assert!(c.snapshot().projects.contains_key("remote"));
    }

    #[tokio::test]
    async fn undecodable_stored_objects_are_corrupt() {
        let meta = Arc::new(MemoryMeta::new());
        meta.put(
            Bucket::Environments,
            "bad",
            b"{not json".to_vec(),
            Expect::Any,
        )
        .await
        .expect("put");
        match Catalog::load(meta).await {
            Err(StoreError::Corrupt { what, .. }) => assert_eq!(what, "environments/bad"),
            other => panic!("expected corrupt, got {:?}", other.map(|_| ())),
        }
    }

    /// A catalog object that cannot be serialized is an error, never empty stored bytes.
    #[test]
    fn an_unserializable_object_is_an_error() {
        struct Unserializable;
        impl serde::Serialize for Unserializable {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("cannot"))
            }
        }
        match encode(Bucket::Projects, "p", &Unserializable) {
            Err(StoreError::Encode { what, .. }) => assert_eq!(what, "projects/p"),
            other => panic!("expected an encode error, got {other:?}"),
        }
    }
}
