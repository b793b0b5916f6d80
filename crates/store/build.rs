//! Rebuilds the crate when a migration is added: `embed_migrations!` reads
//! the directories at compile time, and cargo does not watch them otherwise.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations/shared");
    println!("cargo:rerun-if-changed=../../migrations/sqlite");
    println!("cargo:rerun-if-changed=../../migrations/postgres");
}
