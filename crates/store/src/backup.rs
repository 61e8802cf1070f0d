//! Backup and restore of an embedded instance (SQLite and filesystem). A backup is a directory:
//! a consistent snapshot of the database taken online (`VACUUM INTO`: the server keeps serving
//! and accepting pushes), every blob that snapshot references (hard-linked when on the same
//! filesystem, else copied) and, written last, `backup.json` with the digest of the database
//! file and the digest and size of every blob. Restore verifies every byte against that list
//! into a staging directory and only then moves it into place, so a damaged or incomplete backup
//! never becomes a data directory.

use std::fs::{File, Permissions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use portcullis_core::error::{Error, Result};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

use crate::sql::db;

/// The file that lists a backup's contents; its presence marks a complete backup.
pub const MANIFEST: &str = "backup.json";
const DATABASE: &str = "meta.db";
const FORMAT: u32 = 1;

/// What `backup.json` holds.
#[derive(Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// The portcullis that took it.
    pub portcullis: String,
    pub created_at: i64,
    /// The database's newest applied migration.
    pub schema_version: i64,
    pub database: Entry,
    pub blobs: Vec<Entry>,
}

/// One file of a backup: its digest and size.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub struct Entry {
    pub digest: String,
    pub size: u64,
}

/// How a backup's blobs were stored.
#[derive(Default, Debug)]
pub struct Taken {
    pub blobs: usize,
    pub bytes: u64,
    pub linked: usize,
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::Invalid(msg.into())
}

fn io(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let p = path.display().to_string();
    let what = what.to_owned();
    move |e| Error::storage_from(format!("{what} {p}"), e)
}

/// A blob's path below a data or backup directory, from its validated digest.
fn blob_path(root: &Path, digest: &str) -> Result<PathBuf> {
    let d: oci::Digest = digest.parse().map_err(|_| invalid(format!("invalid digest {digest:?} in the backup")))?;
    Ok(root.join("blobs").join(d.algorithm().as_str()).join(&d.hex()[..2]).join(d.hex()))
}

/// A directory that does not exist or is empty (a backup or restore never overwrites).
fn require_empty(dir: &Path, role: &str) -> Result<()> {
    match std::fs::read_dir(dir).map(|mut entries| entries.next().is_some()) {
        Ok(true) => Err(invalid(format!("{role} {} is not empty; nothing was written", dir.display()))),
        Ok(false) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("cannot read", dir)(e)),
    }
}

/// Creates `dir` readable by its owner only: a backup holds secrets.
fn private_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io("cannot create", dir))?;
    std::fs::set_permissions(dir, Permissions::from_mode(0o700)).map_err(io("cannot protect", dir))
}

/// Streams `src` into `dest` (when given), returning its digest with `algo` and its size.
fn hash_file(src: &Path, algo: oci::Algorithm, mut dest: Option<&mut File>) -> Result<(String, u64)> {
    let mut f = File::open(src).map_err(io("cannot open", src))?;
    let mut h = oci::digest::Hasher::new(algo);
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io("cannot read", src))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        if let Some(d) = dest.as_deref_mut() {
            d.write_all(&buf[..n]).map_err(|e| Error::storage_from("cannot write", e))?;
        }
        size += n as u64;
    }
    if let Some(d) = dest {
        d.sync_all().map_err(|e| Error::storage_from("cannot sync", e))?;
    }
    Ok((h.finish().to_string(), size))
}

async fn sqlite(path: &Path, read_only: bool) -> Result<sqlx::SqlitePool> {
    let opts = SqliteConnectOptions::from_str("sqlite://")
        .map_err(db)?
        .filename(path)
        .read_only(read_only)
        .busy_timeout(std::time::Duration::from_secs(30));
    SqlitePoolOptions::new().max_connections(1).connect_with(opts).await.map_err(db)
}

/// The blobs a database references and its schema version.
async fn contents(path: &Path) -> Result<(Vec<Entry>, i64)> {
    let pool = sqlite(path, true).await?;
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT digest, size FROM blobs ORDER BY digest").fetch_all(&pool).await.map_err(db)?;
    let (version,): (i64,) =
        sqlx::query_as("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetch_one(&pool).await.map_err(db)?;
    pool.close().await;
    Ok((rows.into_iter().map(|(digest, size)| Entry { digest, size: size.max(0) as u64 }).collect(), version))
}

/// Takes a backup of the embedded instance in `data_dir` into `to` (absent or empty) while it
/// may be serving. `copy` copies blobs even where a hard link would do.
pub async fn backup(data_dir: &Path, to: &Path, copy: bool, version: &str, now: i64) -> Result<Taken> {
    let live = data_dir.join(DATABASE);
    if !live.is_file() {
        return Err(invalid(format!(
            "{} has no database ({DATABASE}): not an embedded data directory",
            data_dir.display()
        )));
    }
    require_empty(to, "the backup directory")?;
    private_dir(to)?;
    let snapshot = to.join(DATABASE);
    let pool = sqlite(&live, false).await?;
    sqlx::query("VACUUM INTO ?").bind(snapshot.to_string_lossy().as_ref()).execute(&pool).await.map_err(db)?;
    pool.close().await;
    // It holds password hashes and the token signing keys.
    std::fs::set_permissions(&snapshot, Permissions::from_mode(0o600)).map_err(io("cannot protect", &snapshot))?;
    let (blobs, schema_version) = contents(&snapshot).await?;
    let (data_dir, to_dir, version) = (data_dir.to_owned(), to.to_owned(), version.to_owned());
    tokio::task::spawn_blocking(move || {
        let mut taken = Taken::default();
        for b in &blobs {
            let (src, dest) = (blob_path(&data_dir, &b.digest)?, blob_path(&to_dir, &b.digest)?);
            let len = std::fs::metadata(&src).map_err(io("a blob the database lists is missing:", &src))?.len();
            if len != b.size {
                return Err(invalid(format!(
                    "blob {} is {len} bytes on disk but {} in the database: run `portcullis fsck` first",
                    b.digest, b.size
                )));
            }
            let parent = dest.parent().expect("blob paths have a parent");
            std::fs::create_dir_all(parent).map_err(io("cannot create", parent))?;
            if !copy && std::fs::hard_link(&src, &dest).is_ok() {
                taken.linked += 1;
            } else {
                let mut out = File::create(&dest).map_err(io("cannot create", &dest))?;
                let algo = b.digest.parse::<oci::Digest>().map_err(|_| invalid("invalid digest"))?.algorithm();
                let (digest, _) = hash_file(&src, algo, Some(&mut out))?;
                if digest != b.digest {
                    return Err(invalid(format!(
                        "blob {} is damaged in the data directory: run `portcullis fsck`",
                        b.digest
                    )));
                }
            }
            taken.blobs += 1;
            taken.bytes += b.size;
        }
        let (digest, size) = hash_file(&to_dir.join(DATABASE), oci::Algorithm::Sha256, None)?;
        let manifest = Manifest {
            format: FORMAT,
            portcullis: version,
            created_at: now,
            schema_version,
            database: Entry { digest, size },
            blobs,
        };
        let tmp = to_dir.join(format!("{MANIFEST}.tmp"));
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::storage_from("", e))?;
        let mut f = File::create(&tmp).map_err(io("cannot create", &tmp))?;
        f.write_all(&json).and_then(|_| f.sync_all()).map_err(io("cannot write", &tmp))?;
        std::fs::rename(&tmp, to_dir.join(MANIFEST)).map_err(io("cannot write", &tmp))?;
        Ok(taken)
    })
    .await
    .map_err(|e| Error::storage_from("", e))?
}

/// Restores the backup in `from` into `data_dir` (absent or empty): every file is verified
/// against `backup.json` in a staging directory beside `data_dir`, the database is checked and
/// migrated to this portcullis's schema, and only then is the staging directory moved into place.
pub async fn restore(from: &Path, data_dir: &Path) -> Result<Manifest> {
    require_empty(data_dir, "the data directory")?;
    let text = std::fs::read(from.join(MANIFEST))
        .map_err(|e| invalid(format!("{} has no readable {MANIFEST} ({e}): not a complete backup", from.display())))?;
    let manifest: Manifest =
        serde_json::from_slice(&text).map_err(|e| invalid(format!("{MANIFEST} is damaged: {e}")))?;
    if manifest.format != FORMAT {
        return Err(invalid(format!("backup format {} is not one this portcullis reads ({FORMAT})", manifest.format)));
    }
    let name = data_dir.file_name().ok_or_else(|| invalid("the data directory needs a name"))?;
    let parent = match data_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(io("cannot create", &parent))?;
    let staging = parent.join(format!(".{}.restoring", name.to_string_lossy()));
    let _ = std::fs::remove_dir_all(&staging);
    private_dir(&staging)?;
    let result = stage(from, &staging, manifest).await;
    match result {
        Ok(m) => {
            let _ = std::fs::remove_dir(data_dir);
            std::fs::rename(&staging, data_dir).map_err(io("cannot move the restored data into", data_dir))?;
            Ok(m)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

async fn stage(from: &Path, staging: &Path, manifest: Manifest) -> Result<Manifest> {
    let (src, dst) = (from.to_owned(), staging.to_owned());
    let manifest = tokio::task::spawn_blocking(move || {
        let copy_verified = |rel_src: PathBuf, rel_dst: PathBuf, want: &Entry, what: &str| -> Result<()> {
            let parent = rel_dst.parent().expect("paths in a backup have a parent");
            std::fs::create_dir_all(parent).map_err(io("cannot create", parent))?;
            let algo =
                want.digest.parse::<oci::Digest>().map_err(|_| invalid("invalid digest in the backup"))?.algorithm();
            let mut out = File::create(&rel_dst).map_err(io("cannot create", &rel_dst))?;
            let (digest, size) = hash_file(&rel_src, algo, Some(&mut out))
                .map_err(|e| invalid(format!("{what} cannot be read from the backup: {e}")))?;
            if digest != want.digest || size != want.size {
                return Err(invalid(format!(
                    "{what} is damaged in the backup: {size} bytes with digest {digest}, expected {} bytes with {}; \
                     nothing was restored",
                    want.size, want.digest
                )));
            }
            Ok(())
        };
        copy_verified(src.join(DATABASE), dst.join(DATABASE), &manifest.database, "the database")?;
        std::fs::set_permissions(dst.join(DATABASE), Permissions::from_mode(0o600))
            .map_err(io("cannot protect", &dst.join(DATABASE)))?;
        for b in &manifest.blobs {
            copy_verified(blob_path(&src, &b.digest)?, blob_path(&dst, &b.digest)?, b, &format!("blob {}", b.digest))?;
        }
        Ok::<_, Error>(manifest)
    })
    .await
    .map_err(|e| Error::storage_from("", e))??;
    let db_path = staging.join(DATABASE);
    let pool = sqlite(&db_path, true).await?;
    let (check,): (String,) = sqlx::query_as("PRAGMA integrity_check").fetch_one(&pool).await.map_err(db)?;
    pool.close().await;
    if check != "ok" {
        return Err(invalid(format!("the backup's database fails SQLite's integrity check: {check}")));
    }
    let (listed, _) = contents(&db_path).await?;
    if listed != manifest.blobs {
        return Err(invalid(format!(
            "{MANIFEST} does not list the blobs its database references; nothing was restored"
        )));
    }
    // Brings an older backup's schema up to this portcullis's (refusing a newer one).
    crate::SqliteMeta::open(&db_path).await?;
    Ok(manifest)
}
