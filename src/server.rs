//! The listener: accepts every connection and hands each to a session task, with its place in
//! the admission pool (`admission.rs`); on shutdown it stops accepting and waits for the
//! sessions to end.

use crate::admission::Admission;
use crate::services::Services;
use crate::session;
use tokio::net::UnixListener;
use tracing::{error, info, warn};

/// Accepts until shutdown, then waits for every session to finish its in-flight requests.
pub async fn run(listener: UnixListener, services: Services) {
    let daemon = &services.config.daemon;
    raise_open_files_limit(daemon.max_connections + daemon.max_unauthenticated);
    let admission = Admission::new(daemon.max_unauthenticated, daemon.max_connections);
    let mut shutdown = services.shutdown.clone();
    let mut sessions = tokio::task::JoinSet::new();
    loop {
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
        let ticket = admission.admit();
        let admission = admission.clone();
        services
            .status
            .connections
            .set(services.status.connections.get() + 1);
        sessions.spawn_local(async move {
            session::serve(stream, services.clone(), admission, ticket).await;
            services
                .status
                .connections
                .set(services.status.connections.get() - 1);
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

/// Raises the soft limit of open files to the hard limit when the connection limits (and some
/// room for the database and agents) need more than the soft one.
fn raise_open_files_limit(connections: usize) {
    let needed = connections as u64 + 256;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 || limit.rlim_cur >= needed {
            return;
        }
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur < needed {
            warn!(
                open_files = limit.rlim_cur,
                needed, "the open files limit is below what the connection limits need"
            );
        }
    }
}
