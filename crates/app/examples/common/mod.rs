//! What the PostgreSQL benchmarks share: a database of their own.

use diesel::prelude::*;

/// A database of its own on a server, dropped at the end.
pub struct Database {
    server_url: String,
    name: String,
    /// Its URL.
    pub url: String,
}

impl Database {
    /// Creates `convosphere_bench_<random>` on the server of `server_url`.
    pub fn create(server_url: &str) -> Self {
        let name = format!("convosphere_bench_{:016x}", rand::random::<u64>());
        let mut conn = PgConnection::establish(server_url).expect("the PostgreSQL URL answers");
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .expect("CREATE DATABASE");
        let base = server_url.rsplit_once('/').map_or(server_url, |(base, _)| base);
        let url = format!("{base}/{name}");
        Self {
            server_url: server_url.to_owned(),
            name,
            url,
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Ok(mut conn) = PgConnection::establish(&self.server_url) {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).execute(&mut conn);
        }
    }
}

/// The median of `samples`, sorted in place.
pub fn median(samples: &mut [std::time::Duration]) -> std::time::Duration {
    samples.sort();
    samples[samples.len() / 2]
}
