//! Rows whose content an agent or plain SQL wrote may not decode (a JSONB value nested beyond
//! serde_json's 128 levels, a NULL where the daemon writes none): they are read with `try_get`,
//! never `Row::get` (which panics), and one that does not decode is reported
//! ([`ikigai_actors::store::undecodable`]), then skipped or dead-lettered by its store.

use tokio_postgres::Row;

pub(crate) use ikigai_actors::store::undecodable::report;

/// Splits `rows` into what `decode` reads and the rows it cannot, with why.
pub(crate) fn split<T>(
    rows: &[Row],
    decode: impl Fn(&Row) -> Result<T, tokio_postgres::Error>,
) -> (Vec<T>, Vec<(&Row, tokio_postgres::Error)>) {
    let mut good = Vec::with_capacity(rows.len());
    let mut bad = Vec::new();
    for row in rows {
        match decode(row) {
            Ok(t) => good.push(t),
            Err(e) => bad.push((row, e)),
        }
    }
    (good, bad)
}

/// A column that does not decode: the same row will not decode on a retry.
pub(crate) fn undecodable(e: tokio_postgres::Error) -> ikigai_actors::store::StoreError {
    ikigai_actors::store::StoreError::Undecodable(e.to_string())
}

/// The text of column 0 (an id of every table read here), for reports.
pub(crate) fn id_of(row: &Row) -> String {
    match row.try_get::<_, uuid::Uuid>(0) {
        Ok(id) => id.to_string(),
        Err(_) => row.try_get::<_, String>(0).unwrap_or_else(|_| "?".into()),
    }
}
