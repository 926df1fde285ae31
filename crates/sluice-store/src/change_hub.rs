//! [`ChangeHub`]: the broadcast of committed metadata writes behind
//! [`MetaStore::watch`](crate::MetaStore::watch) for the stores that commit in this process
//! (embedded and in-memory). JetStream watches follow the KV stream instead.
//!
//! A store publishes every applied write after it is committed, in revision order. A watch
//! subscribes *before* it reads its snapshot and notes the bucket's last revision in that
//! snapshot; it then skips changes at or below that revision, so a write committed while
//! the snapshot was read is reported exactly once (in the snapshot, or as a change).

use crate::error::{StoreError, Transient};
use crate::meta::{Bucket, MetaChange, MetaChanges};
use futures_util::StreamExt;
use std::sync::Arc;
use tokio::sync::broadcast::{self, error::RecvError};

/// Changes a watcher may fall behind by before its watch ends with
/// [`Transient::Lagged`].
const CAPACITY: usize = 4096;

type Published = Arc<(Bucket, MetaChange)>;

pub(crate) struct ChangeHub {
    tx: broadcast::Sender<Published>,
}

impl Default for ChangeHub {
    fn default() -> Self {
        ChangeHub {
            tx: broadcast::Sender::new(CAPACITY),
        }
    }
}

impl ChangeHub {
    /// Whether anyone watches (publishers skip building changes otherwise).
    pub(crate) fn watched(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Reports a committed write.
    pub(crate) fn publish(&self, bucket: Bucket, change: MetaChange) {
        // No receiver: nobody to tell.
        let _ = self.tx.send(Arc::new((bucket, change)));
    }

    /// Subscribes; call before reading the snapshot the watch starts from.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Published> {
        self.tx.subscribe()
    }
}

/// The changes of `bucket`'s keys starting with `prefix` whose revision is above `since`
/// (the bucket's last revision in the watch's snapshot).
pub(crate) fn changes(
    rx: broadcast::Receiver<Published>,
    bucket: Bucket,
    prefix: &str,
    since: u64,
) -> MetaChanges {
    let prefix: Arc<str> = Arc::from(prefix);
    futures_util::stream::unfold(Some(rx), move |rx| {
        let prefix = prefix.clone();
        async move {
            let mut rx = rx?;
            let end = |cause| {
                let what = format!("watching {bucket}/{prefix}*");
                Some((Err(StoreError::unavailable(what, cause)), None))
            };
            loop {
                match rx.recv().await {
                    Ok(p) => {
                        let (b, change) = &*p;
                        if *b == bucket
                            && change.revision > since
                            && change.key.starts_with(&*prefix)
                        {
                            return Some((Ok(change.clone()), Some(rx)));
                        }
                    }
                    Err(RecvError::Lagged(n)) => return end(Transient::Lagged(n)),
                    Err(RecvError::Closed) => return end(Transient::Closed),
                }
            }
        }
    })
    .boxed()
}
