//! The migration histories, compiled in. A migration whose SQL both
//! backends run as written stands once, in `migrations/shared`; one that
//! needs each backend's own dialect (auto-increment ids, `SET NOT NULL`,
//! `DROP CONSTRAINT`, storage options) stands in `migrations/sqlite` and `migrations/postgres`
//! under the same version. A backend's history is its own folder and the
//! shared one, in version order: the versions, and so what a database
//! records as applied, are those of one folder per backend before.

use diesel::backend::Backend;
use diesel::migration::{Migration, MigrationSource};
use diesel_migrations::{embed_migrations, EmbeddedMigrations};

const SHARED: EmbeddedMigrations = embed_migrations!("../../migrations/shared");

/// SQLite's history: `migrations/shared` and `migrations/sqlite`.
pub(crate) const SQLITE: History = History(embed_migrations!("../../migrations/sqlite"));
/// PostgreSQL's history: `migrations/shared` and `migrations/postgres`.
pub(crate) const POSTGRES: History = History(embed_migrations!("../../migrations/postgres"));

/// The shared migrations and one backend's own.
pub(crate) struct History(EmbeddedMigrations);

impl<DB: Backend> MigrationSource<DB> for History {
    fn migrations(&self) -> diesel::migration::Result<Vec<Box<dyn Migration<DB>>>> {
        let mut all = MigrationSource::<DB>::migrations(&SHARED)?;
        all.extend(MigrationSource::<DB>::migrations(&self.0)?);
        all.sort_by(|a, b| a.name().version().cmp(&b.name().version()));
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::pg::Pg;
    use diesel::sqlite::Sqlite;

    fn versions<DB: Backend>(history: &History) -> Vec<String> {
        MigrationSource::<DB>::migrations(history)
            .unwrap()
            .iter()
            .map(|m| m.name().version().to_string())
            .collect()
    }

    #[test]
    fn each_backend_runs_every_version_once_in_order() {
        let sqlite = versions::<Sqlite>(&SQLITE);
        let postgres = versions::<Pg>(&POSTGRES);
        // The same versions on both backends: one schema.
        assert_eq!(sqlite, postgres);
        // A version in the shared folder and a backend's own would run one
        // of the two only: none is.
        let mut distinct = sqlite.clone();
        distinct.dedup();
        assert_eq!(distinct, sqlite);
        let mut sorted = sqlite.clone();
        sorted.sort();
        assert_eq!(sorted, sqlite);
        let folders = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations/sqlite"))
            .unwrap()
            .count()
            + std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations/shared"))
                .unwrap()
                .count();
        assert_eq!(sqlite.len(), folders);
        assert_eq!(sqlite.first().map(String::as_str), Some("20250101000000"));
    }
}
