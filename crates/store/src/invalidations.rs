//! [`InvalidationFeed`] for [`Store`]. The rows are appended by the writes
//! themselves, through [`Dialect::append_invalidations`](crate::connection::Dialect::append_invalidations).

use crate::connection::with_conn;
use crate::models::InvalidationRow;
use crate::schema::invalidations;
use crate::Store;
use convosphere_domain::ports::{Invalidation, InvalidationFeed};
use convosphere_domain::InfraError;
use diesel::dsl::max;
use diesel::prelude::*;

/// The most rows one [`InvalidationFeed::invalidations_since`] returns; a
/// reader further behind gets the rest on its next calls.
pub const INVALIDATIONS_PER_READ: i64 = 10_000;

impl InvalidationFeed for Store {
    async fn invalidations_since(&self, cursor: i64) -> Result<(i64, Vec<Invalidation>), InfraError> {
        let rows = with_conn!(self, |conn| {
            Ok(invalidations::table
                .filter(invalidations::id.gt(cursor))
                .order(invalidations::id.asc())
                .limit(INVALIDATIONS_PER_READ)
                .select(InvalidationRow::as_select())
                .load(conn)?)
        })?;
        let next = rows.last().map_or(cursor, |row| row.id);
        let invalidations = rows
            .into_iter()
            .map(Invalidation::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((next, invalidations))
    }

    async fn latest_invalidation(&self) -> Result<i64, InfraError> {
        let latest = with_conn!(self, |conn| {
            Ok(invalidations::table
                .select(max(invalidations::id))
                .first::<Option<i64>>(conn)?)
        })?;
        Ok(latest.unwrap_or(0))
    }
}
