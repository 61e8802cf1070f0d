//! `portcullis backup` and `portcullis restore` for an embedded instance (the work is
//! `store::backup`'s). A PostgreSQL + S3 instance is backed up with the database's and the
//! bucket's own tools (pg_dump, bucket versioning), as the README says; `fsck` checks the pair.

use std::path::Path;

use anyhow::bail;

use crate::config::Config;

fn embedded_only(config: &Config, what: &str) -> anyhow::Result<()> {
    if config.database.url()?.is_some() || config.s3.config()?.is_some() {
        bail!(
            "{what} works on an embedded instance (SQLite and a data directory); for PostgreSQL and S3 use pg_dump \
             and the bucket's versioning (README, \"Backup and restore\"), then `portcullis fsck` after a restore"
        );
    }
    Ok(())
}

pub async fn backup(config: &Config, to: &Path, copy: bool) -> anyhow::Result<()> {
    embedded_only(config, "backup")?;
    let now = portcullis_core::clock::system_now();
    let taken = store::backup::backup(&config.data_dir, to, copy, env!("BUILD_VERSION"), now).await?;
    println!(
        "backed up {} to {}: the database and {} blobs ({} bytes, {} hard-linked)",
        config.data_dir.display(),
        to.display(),
        taken.blobs,
        taken.bytes,
        taken.linked
    );
    Ok(())
}

pub async fn restore(config: &Config, from: &Path) -> anyhow::Result<()> {
    embedded_only(config, "restore")?;
    let m = store::backup::restore(from, &config.data_dir).await?;
    println!(
        "restored the backup taken by portcullis {} (schema {}) into {}: the database and {} blobs, every one verified",
        m.portcullis,
        m.schema_version,
        config.data_dir.display(),
        m.blobs.len()
    );
    Ok(())
}
