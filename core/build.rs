//! Rebuilds the crate when a migration is added or changed: `sqlx::migrate!` embeds them, and cargo would
//! not otherwise notice a new file in `migrations/`.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
