//! The listener: accepts connections on the socket, at most `max_connections` at once, and hands
//! each to a session task; on shutdown it stops accepting and waits for the sessions to end.

use crate::services::Services;
use crate::session;
use std::sync::Arc;
use tokio::net::UnixListener;
use tokio::sync::Semaphore;
use tracing::{error, info};

/// Accepts until shutdown, then waits for every session to finish its in-flight requests.
pub async fn run(listener: UnixListener, services: Services) {
    let limit = Arc::new(Semaphore::new(services.config.daemon.max_connections));
    let mut shutdown = services.shutdown.clone();
    let mut sessions = tokio::task::JoinSet::new();
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = shutdown.wait() => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    error!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.wait() => break,
        };
        let services = services.clone();
        services
            .status
            .connections
            .set(services.status.connections.get() + 1);
        sessions.spawn_local(async move {
            session::serve(stream, services.clone()).await;
            services
                .status
                .connections
                .set(services.status.connections.get() - 1);
            drop(permit);
        });
        while sessions.try_join_next().is_some() {}
    }
    drop(listener);
    while sessions.try_join_next().is_some() {}
    info!(
        sessions = sessions.len(),
        "stopped accepting; finishing in-flight requests"
    );
    while sessions.join_next().await.is_some() {}
}
