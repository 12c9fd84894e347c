//! Where the test suites, the benches and `ikigai-testbed` create their scratch databases: one
//! server (`$IKIGAI_TEST_DATABASE_URL`, key=value form with `dbname=postgres`; default: the local
//! server's Unix socket as the current user) and each database's URL on it.

/// The server scratch databases are created on.
pub fn server_url() -> String {
    std::env::var("IKIGAI_TEST_DATABASE_URL").unwrap_or_else(|_| {
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        format!("host=/var/run/postgresql user={user} dbname=postgres")
    })
}

/// The URL (key=value form) of database `name` on `server`.
pub fn database_url(server: &str, name: &str) -> String {
    format!("{} dbname={name}", server.replace("dbname=postgres", ""))
}
