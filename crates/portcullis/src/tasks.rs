//! Offline maintenance on a data directory: `fsck` (scrub blobs against their digests) and
//! `admin reset-password`.

use std::io::{BufRead, IsTerminal};
use std::path::Path;

use anyhow::{Context, bail};
use oci::digest::Hasher;
use portcullis_core::authz::Directory;
use portcullis_core::identity::Identity;
use portcullis_core::ports::{BlobStore, ContentStore};

use crate::app::open_stores;
use crate::config::Config;

/// Reads a whole blob and hashes it: (bytes read, digest).
async fn scan(blobs: &dyn BlobStore, digest: &oci::Digest) -> portcullis_core::Result<(u64, oci::Digest)> {
    let stored =
        blobs.stat(digest).await?.ok_or_else(|| portcullis_core::Error::NotFound("content is missing".into()))?;
    let mut h = Hasher::new(digest.algorithm());
    let mut n = 0u64;
    let mut s = blobs.read(digest, 0, stored).await?;
    while let Some(b) = futures_util::StreamExt::next(&mut s).await {
        let b = b.map_err(portcullis_core::Error::from)?;
        n += b.len() as u64;
        h.update(&b);
    }
    Ok((n, h.finish()))
}

/// Verifies every recorded blob. Exit status is non-zero when a bad or missing blob is found.
pub async fn fsck(config: &Config, quarantine: bool) -> anyhow::Result<()> {
    let stores = open_stores(config).await?;
    let recorded = stores.meta.list_blobs().await?;
    let total = recorded.len();
    let (mut bad, mut missing) = (0usize, 0usize);
    for (i, portcullis_core::model::BlobRow { digest: d, size }) in recorded.iter().enumerate() {
        let result = scan(stores.blobs.as_ref(), d).await;
        let problem = match result {
            Ok((n, got)) if n == *size && &got == d => None,
            Ok((n, got)) => Some(format!("content is {n} bytes with digest {got}")),
            Err(_) => {
                missing += 1;
                Some("content is missing".to_owned())
            }
        };
        if let Some(p) = problem {
            bad += 1;
            println!("BAD {d}: {p}");
            if quarantine {
                let _ = stores.blobs.quarantine(d).await;
                stores.meta.forget_blob(d).await?;
                println!("    quarantined and forgotten");
            }
        }
        if (i + 1) % 100 == 0 || i + 1 == total {
            eprintln!("fsck: {}/{total} blobs checked", i + 1);
        }
    }
    let on_disk = stores.blobs.list().await?;
    let known: std::collections::HashSet<String> = recorded.iter().map(|r| r.digest.to_string()).collect();
    let unrecorded = on_disk.iter().filter(|d| !known.contains(*d)).count();
    println!("fsck: {total} blobs checked, {bad} bad ({missing} missing), {unrecorded} stored but unreferenced");
    if bad > 0 && !quarantine {
        bail!("{bad} bad blobs; run `portcullis fsck --quarantine` to stop serving them");
    }
    Ok(())
}

/// `migrate-data`: the embedded instance at `from` into PostgreSQL at `to` (and S3).
pub async fn migrate_data(config: &Config, from: &Path, to: &str, blobs_to: Option<&str>) -> anyhow::Result<()> {
    let db = from.join("meta.db");
    anyhow::ensure!(db.exists(), "{} holds no portcullis database", from.display());
    let src = store::SqliteMeta::open(&db).await.context("cannot open the source database")?;
    // Older data directories keep the token key in a file: make it part of the data moved.
    crate::app::signing_keys(&src, from).await?;
    let dst = store::PgMeta::open(to, 4).await.context("cannot open the destination database")?;
    let tables = store::copy::copy_metadata(&src, &dst, |t, n| eprint!("\rmigrate-data: {t}: {n} rows     ")).await?;
    eprintln!();
    let mut mismatched = Vec::new();
    for (table, s, d) in &tables {
        println!("{table}: {s} rows, {d} at the destination");
        if s != d {
            mismatched.push(table.clone());
        }
    }
    anyhow::ensure!(
        mismatched.is_empty(),
        "row counts differ in {}: migrate into an empty database (do not start portcullis on it first)",
        mismatched.join(", ")
    );
    for (table, why) in store::copy::NOT_COPIED {
        println!("{table}: not moved ({why})");
    }
    if let Some(target) = blobs_to {
        let bucket = target.strip_prefix("s3://").filter(|b| !b.is_empty() && !b.contains('/'));
        let bucket = bucket.with_context(|| format!("--blobs-to {target:?}: give s3://<bucket>"))?;
        let s3 = crate::config::S3 { bucket: bucket.to_owned(), ..config.s3.clone() };
        let c = s3.config()?.context("the s3 settings are missing")?;
        let to = store::S3Blobs::open(&c)?;
        let source = store::FsBlobs::open(from)?;
        let recorded = src.list_blobs().await?;
        let total = recorded.len();
        let (copied, present, bytes) = store::copy::copy_blobs(&recorded, &source, &to, |i, b| {
            eprint!("\rmigrate-data: blobs {i}/{total}, {} MiB copied     ", b >> 20)
        })
        .await?;
        eprintln!();
        println!("blobs: {copied} copied and verified ({bytes} bytes), {present} already there, {total} recorded");
    }
    println!("migrate-data: done. Start portcullis with database.url (and s3.*) set to the destination.");
    Ok(())
}

/// Adds a new token signing key; running replicas switch to it when they see the change.
pub async fn rotate_key(config: &Config) -> anyhow::Result<()> {
    let stores = open_stores(config).await?;
    crate::app::signing_keys(stores.meta.as_ref(), &config.data_dir).await?;
    let key = portcullis_core::tokens::generate_signing_key()?;
    let kid = portcullis_core::tokens::key_id(&key)?;
    // A second later than any key made now, so that it is the newest.
    stores.meta.add_signing_key(&kid, &key, portcullis_core::clock::system_now() + 1).await?;
    println!("new token signing key {kid}");
    Ok(())
}

/// Sets a password without a running server.
pub async fn reset_password(config: &Config, username: &str) -> anyhow::Result<()> {
    if std::io::stdin().is_terminal() {
        eprintln!("new password for {username}:");
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("cannot read the password")?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    let stores = open_stores(config).await?;
    let clock: std::sync::Arc<dyn portcullis_core::clock::Clock> =
        std::sync::Arc::new(portcullis_core::clock::SystemClock);
    let audit = std::sync::Arc::new(portcullis_core::audit::Audit::start(stores.meta.clone(), 0, clock.clone()));
    let metrics = std::sync::Arc::new(portcullis_core::metrics::Metrics::default());
    let identity = Identity::new(stores.meta.clone(), Directory::default(), clock, audit, metrics);
    identity.reset_password(username, &password).await?;
    println!("password of {username} changed");
    Ok(())
}

/// Garbage collection: evicts cached upstream blobs beyond the budget, then deletes blobs no
/// repository links and no manifest references, stored files the database does not know, and
/// uploads untouched for `uploads_older_than` seconds.
pub async fn gc(config: &Config, max_bytes: Option<u64>, uploads_older_than: i64) -> anyhow::Result<()> {
    let stores = open_stores(config).await?;
    let purged = portcullis_core::purge::purge_uploads(
        stores.meta.as_ref(),
        stores.blobs.as_ref(),
        portcullis_core::clock::system_now(),
        uploads_older_than,
    )
    .await?;
    println!("gc: {purged} abandoned uploads purged");
    let budget = max_bytes.unwrap_or(config.proxy.cache_max_bytes);
    if budget > 0 {
        let n = portcullis_core::proxy::evict(
            stores.meta.as_ref(),
            stores.meta.as_ref(),
            stores.blobs.as_ref(),
            budget,
            |_| false,
        )
        .await?;
        println!("gc: evicted {n} cached blobs to fit {budget} bytes");
    }
    let unreferenced = stores.meta.unreferenced_blobs().await?;
    let total = unreferenced.len();
    for (i, d) in unreferenced.iter().enumerate() {
        stores.meta.forget_blob(d).await?;
        stores.blobs.delete(d).await?;
        if (i + 1) % 100 == 0 || i + 1 == total {
            eprintln!("gc: {}/{total} unreferenced blobs deleted", i + 1);
        }
    }
    let known: std::collections::HashSet<String> =
        stores.meta.list_blobs().await?.into_iter().map(|b| b.digest.to_string()).collect();
    let mut orphans = 0;
    for d in stores.blobs.list().await? {
        if !known.contains(&d)
            && let Ok(digest) = d.parse()
        {
            stores.blobs.delete(&digest).await?;
            orphans += 1;
        }
    }
    println!("gc: {total} unreferenced blobs and {orphans} unrecorded files deleted");
    Ok(())
}
