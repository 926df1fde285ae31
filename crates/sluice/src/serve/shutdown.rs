//! A graceful shutdown with a time limit: once shutdown starts, in-flight requests get
//! `grace` to finish; responses still streaming then (a long export to a slow client) are
//! cut — their bodies end with an error, so the client sees a truncated transfer, never a
//! complete-looking one — and the server stops.

use axum::body::{Body, HttpBody as _};
use axum::response::Response;
use futures_util::StreamExt as _;
use std::future::Future;
use std::time::Duration;
use tokio::sync::{oneshot, watch};

/// How long the server may take to stop once responses were cut (connections reading a
/// slow request body); then it is left behind.
const AFTER_CUT: Duration = Duration::from_secs(2);

/// Runs `serve` (axum's graceful serve future) to its end, but once `stopping` fires,
/// for at most `grace` before setting `cut` and waiting [`AFTER_CUT`] more.
pub(super) async fn serve_with_grace(
    serve: impl Future<Output = std::io::Result<()>>,
    stopping: oneshot::Receiver<()>,
    grace: Duration,
    cut: &watch::Sender<bool>,
) {
    let mut serve = std::pin::pin!(serve);
    let grace_over = async {
        if stopping.await.is_err() {
            // Never stopping (the serve future ended first).
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        r = &mut serve => return report(r),
        () = grace_over => {}
    }
    tracing::warn!(
        ?grace,
        "requests still running after the shutdown grace period; cutting them"
    );
    cut.send_replace(true);
    match tokio::time::timeout(AFTER_CUT, &mut serve).await {
        Ok(r) => report(r),
        Err(_) => tracing::warn!("connections still open after cutting responses; stopping anyway"),
    }
}

fn report(r: std::io::Result<()>) {
    if let Err(e) = r {
        tracing::error!(error = %e, "server error");
    }
}

/// `resp` with a body that fails once `cut` is set. Bodies of known size (every answer
/// but a streamed export) are left alone: they are sent at once.
pub(super) fn cut_body_on(cut: watch::Receiver<bool>, resp: Response) -> Response {
    if resp.body().size_hint().exact().is_some() {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let chunks =
        futures_util::stream::unfold(Some((body.into_data_stream(), cut)), |state| async move {
            let (mut data, mut cut) = state?;
            let item = tokio::select! {
                biased;
                _ = cut.wait_for(|c| *c) => None,
                item = data.next() => Some(item?),
            };
            Some(match item {
                None => (Err(std::io::Error::other("server shutting down")), None),
                Some(item) => (item.map_err(std::io::Error::other), Some((data, cut))),
            })
        });
    Response::from_parts(parts, Body::from_stream(chunks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn serving_past_the_grace_period_is_cut_then_abandoned() {
        let (stop_tx, stop_rx) = oneshot::channel();
        let (cut_tx, mut cut_rx) = watch::channel(false);
        let start = tokio::time::Instant::now();
        let serve = std::future::pending::<std::io::Result<()>>();
        let run = serve_with_grace(serve, stop_rx, Duration::from_secs(10), &cut_tx);
        let _ = stop_tx.send(());
        run.await;
        assert!(*cut_rx.borrow_and_update(), "responses were cut");
        assert_eq!(start.elapsed(), Duration::from_secs(10) + AFTER_CUT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_that_stops_in_time_is_not_cut() {
        let (stop_tx, stop_rx) = oneshot::channel();
        let (cut_tx, cut_rx) = watch::channel(false);
        let serve = async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Ok(())
        };
        let _ = stop_tx.send(());
        serve_with_grace(serve, stop_rx, Duration::from_secs(10), &cut_tx).await;
        assert!(!*cut_rx.borrow());
    }

    #[tokio::test]
    async fn a_streamed_body_fails_once_cut_and_a_sized_one_is_kept() {
        let (cut_tx, cut_rx) = watch::channel(false);
        let sized = cut_body_on(cut_rx.clone(), Response::new(Body::from("done")));
        assert_eq!(sized.body().size_hint().exact(), Some(4));
        let endless = futures_util::stream::repeat_with(|| {
            Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b"x"))
        });
        let resp = cut_body_on(cut_rx, Response::new(Body::from_stream(endless)));
        let mut data = resp.into_body().into_data_stream();
        assert!(data.next().await.is_some_and(|c| c.is_ok()));
        cut_tx.send_replace(true);
        let mut ended_with_error = false;
        while let Some(chunk) = data.next().await {
            if chunk.is_err() {
                ended_with_error = true;
            }
        }
        assert!(ended_with_error, "a cut body ends with an error");
    }
}
