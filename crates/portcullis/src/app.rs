//! Wiring: open the stores in the data directory, build the services, bootstrap the first
//! administrator, and serve HTTP (or HTTPS with rustls) until SIGINT/SIGTERM, then drain.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use portcullis_core::clock::SystemClock;
use portcullis_core::gate::GateConfig;
use portcullis_core::identity::Bootstrap;
use portcullis_core::ports::{BlobStore, MetaStore};
use portcullis_core::services::{Ports, Services};
use portcullis_core::tokens::generate_signing_key;
use portcullis_http::AppState;
use store::{FsBlobs, PgMeta, S3Blobs, SqliteMeta};
use tracing_subscriber::EnvFilter;

use crate::config::Config;

/// The configured stores: metadata in PostgreSQL (`database.url`) or SQLite in the data
/// directory; blobs in an S3 bucket (`s3.bucket`) or the data directory.
pub struct Stores {
    pub meta: Arc<dyn MetaStore>,
    pub blobs: Arc<dyn BlobStore>,
}

pub async fn open_stores(config: &Config) -> anyhow::Result<Stores> {
    let data_dir = &config.data_dir;
    std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
    let meta: Arc<dyn MetaStore> = match config.database.url()? {
        Some(url) => Arc::new(
            PgMeta::open(&url, config.database.max_connections).await.context("cannot open the PostgreSQL database")?,
        ),
        None => Arc::new(SqliteMeta::open(&data_dir.join("meta.db")).await.context("cannot open the database")?),
    };
    let blobs: Arc<dyn BlobStore> = match config.s3.config()? {
        Some(c) => Arc::new(S3Blobs::open(&c).context("cannot open the S3 blob store")?),
        None => Arc::new(FsBlobs::open(data_dir).context("cannot open the blob store")?),
    };
    Ok(Stores { meta, blobs })
}

/// The token signing keys, newest first, from the database (shared by replicas). On first
/// start the key of an older data directory (`keys/token-signing-ed25519.pk8`) is imported, so
/// its tokens stay valid, or a new key is made.
pub async fn signing_keys(meta: &dyn MetaStore, data_dir: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let keys = meta.signing_keys().await?;
    if !keys.is_empty() {
        return Ok(keys.into_iter().map(|k| k.pkcs8).collect());
    }
    let key = match std::fs::read(data_dir.join("keys/token-signing-ed25519.pk8")) {
        Ok(k) => k,
        Err(_) => generate_signing_key()?,
    };
    meta.add_signing_key(&portcullis_core::tokens::key_id(&key)?, &key, portcullis_core::clock::system_now()).await?;
    // Replicas starting together may each have added one: all agree on the newest.
    Ok(meta.signing_keys().await?.into_iter().map(|k| k.pkcs8).collect())
}

/// Changes the log level of a running server.
type LogLevel = tracing_subscriber::reload::Handle<EnvFilter, tracing_subscriber::Registry>;

fn init_logging(config: &Config) -> LogLevel {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = EnvFilter::try_new(&config.log.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    // Colour only for a person at a terminal, never into a file or a journal.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    let logs = tracing_subscriber::registry().with(filter);
    let _ = if config.log.format == crate::config::LogFormat::Json {
        logs.with(fmt.json()).try_init()
    } else {
        logs.with(fmt).try_init()
    };
    handle
}

/// Hosted manifests kept in memory: thousands of typical manifests (a few KiB each), and as many
/// bytes of blob links.
const MANIFEST_CACHE_BYTES: u64 = 32 << 20;

/// The data directory's lasting node name (`node-id`, made on first use), which only the
/// process holding the directory's lock may use.
fn node_id(_lock: &DataDirLock, dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let id = uuid::Uuid::new_v4().to_string();
    std::fs::write(&path, &id).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(id)
}

/// Builds the application state from a configuration; `lock` is the data directory's, held by
/// this process when the configuration uses the directory.
pub async fn build(config: &Config, lock: Option<&DataDirLock>) -> anyhow::Result<Arc<AppState>> {
    let stores = open_stores(config).await?;
    let p = &config.proxy;
    let settings = upstream::Settings {
        open: config.upstreams_open,
        concurrency: p.concurrency,
        connect_timeout: Duration::from_secs(p.connect_timeout_secs),
        header_timeout: Duration::from_secs(p.read_timeout_secs),
        read_timeout: Duration::from_secs(p.read_timeout_secs),
        retries: p.retries,
    };
    let hub = &config.docker_hub;
    let badge_lookup: Option<(Arc<dyn portcullis_core::ports::BadgeLookup>, _)> = match hub.badge_lookups {
        true => Some((
            Arc::new(upstream::hub::HubApi::new(&hub.api_url, Duration::from_secs(10))?),
            portcullis_core::badges::HubLookupConfig {
                positive_ttl_secs: hub.badge_ttl_secs,
                negative_ttl_secs: hub.no_badge_ttl_secs,
                retry_secs: hub.retry_secs,
                wait_ms: hub.lookup_wait_ms,
            },
        )),
        false => None,
    };
    let password_directory: Option<Arc<dyn portcullis_core::ports::PasswordDirectory>> = match &config.auth.ldap {
        Some(l) => Some(Arc::new(idp::ldap::Ldap::new(l.settings()?).map_err(|e| anyhow::anyhow!("auth.ldap: {e}"))?)),
        None => None,
    };
    let ports = Ports {
        upstream: Arc::new(upstream::Client::new(config.upstreams()?, settings)?),
        meta: stores.meta,
        blobs: stores.blobs,
        clock: Arc::new(SystemClock),
        badge_lookup,
        password_directory,
        workload_verifier: Some(config.auth.workload_verifier()?),
    };
    let admission = config.admission.resolved(&config.auth, config.public_url.as_deref())?;
    let admission_token = admission.token.clone();
    let keys = signing_keys(ports.meta.as_ref(), &config.data_dir).await?;
    let settings = portcullis_core::services::Settings {
        gate: GateConfig { allowed_orgs: config.auth.allowed_orgs.clone(), proxy_anonymous: p.allow_anonymous },
        proxy: portcullis_core::proxy::ProxyConfig {
            tag_ttl_secs: p.tag_ttl_secs,
            cache_max_bytes: p.cache_max_bytes,
            node: lock.map(|l| node_id(l, &config.data_dir)).transpose()?,
        },
        audit_retention_days: config.audit.retention_days,
        admins_only_create_orgs: config.auth.org_creation == crate::config::OrgCreation::Admins,
        token_service: config.auth.service.clone(),
        token_ttl_secs: config.auth.token_ttl_secs,
        catalog: portcullis_core::iam::builtin_catalog(),
        sso_available: config.auth.oidc.is_some() || config.auth.ldap.is_some(),
        manifest_cache_bytes: MANIFEST_CACHE_BYTES,
        admission_issuer: admission.issuer,
        gateway_host: admission.gateway,
    };
    let core = Services::start(ports, settings, &keys).await?;
    let oidc = match &config.auth.oidc {
        Some(o) => Some(Arc::new(
            idp::oidc::Oidc::new(o.settings(config.public_url.as_deref())?)
                .map_err(|e| anyhow::anyhow!("auth.oidc: {e}"))?,
        )),
        None => None,
    };
    Ok(Arc::new(AppState {
        core,
        public_url: config.public_url.clone(),
        tls: config.tls.cert.is_some(),
        trusted_proxies: config.http.trusted_proxies()?,
        oidc,
        oidc_name: config.auth.oidc.as_ref().map(|o| o.name()).unwrap_or_default(),
        admission_token,
        outage_grace: std::time::Duration::from_secs(config.database.outage_grace_secs),
    }))
}

/// Creates the first administrator on a new data directory — only once the server can serve,
/// so that a generated password is never printed by a start that then fails — and says so
/// when a configured password is ignored because users exist already.
async fn bootstrap(state: &AppState, config: &Config) -> anyhow::Result<()> {
    let password = config.admin_password()?;
    match state.identity.bootstrap_admin(password.as_deref()).await? {
        Bootstrap::Created { generated: Some(generated) } => {
            eprintln!("portcullis: created the instance administrator `admin` with password {generated} (shown once)")
        }
        Bootstrap::Created { generated: None } => tracing::info!("created the instance administrator `admin`"),
        Bootstrap::HadUsers if password.is_some() => tracing::warn!(
            "admin_password (PORTCULLIS_ADMIN_PASSWORD) is ignored: this data directory has users already, and the \
             setting only sets the first administrator's password on a new one. Change a password with \
             `portcullis admin reset-password admin` or in the console"
        ),
        Bootstrap::HadUsers => {}
    }
    Ok(())
}

/// Holds the data directory for this process; released when dropped (or the process ends).
pub struct DataDirLock {
    _file: std::fs::File,
}

/// Takes the data directory for this process, and checks that it can be written: a second
/// server on the same directory is refused naming the process that holds it.
pub fn lock_data_dir(dir: &Path) -> anyhow::Result<DataDirLock> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    let probe = dir.join(format!(".write-test-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .and_then(|_| std::fs::remove_file(&probe))
        .with_context(|| {
            format!(
                "cannot write to the data directory {}: the server keeps its database and blobs there; check its owner and permissions",
                dir.display()
            )
        })?;
    let path = dir.join("portcullis.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {
            use std::io::Write;
            file.set_len(0)?;
            write!(file, "{}", std::process::id())?;
            file.flush()?;
            Ok(DataDirLock { _file: file })
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let pid = std::fs::read_to_string(&path).unwrap_or_default();
            anyhow::bail!(
                "the data directory {} is in use by another portcullis (PID {}): stop it first, or give this one its own --data-dir",
                dir.display(),
                pid.trim()
            )
        }
        Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: draining requests");
}

/// Purges uploads untouched for a day, once an hour (idempotent: replicas may all do it), and
/// drops the in-memory state of idle ones.
async fn purge_uploads_hourly(state: Arc<AppState>) {
    let mut every = tokio::time::interval(Duration::from_secs(3600));
    loop {
        every.tick().await;
        match state.purge_uploads().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "abandoned uploads purged"),
            Err(e) => tracing::error!(error = %e, "cannot purge abandoned uploads"),
        }
    }
}

/// Gives memory freed after a burst (transfer buffers, argon2's 19 MiB blocks) back to the
/// system every ten seconds: glibc keeps freed heap in its arenas otherwise, and an idle server
/// would stay at its peak. `malloc_trim` leaves the allocator's fast paths and its dynamic mmap
/// threshold alone (setting `M_TRIM_THRESHOLD` would not: it doubled the CPU of a blob GET).
async fn return_freed_memory() {
    let mut every = tokio::time::interval(Duration::from_secs(10));
    loop {
        every.tick().await;
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only releases free memory of the allocator's own arenas.
        let _ = tokio::task::spawn_blocking(|| unsafe { libc::malloc_trim(0) }).await;
    }
}

/// Whether the configuration keeps anything in the data directory (SQLite or blobs).
fn uses_data_dir(config: &Config) -> anyhow::Result<bool> {
    Ok(config.database.url()?.is_none() || config.s3.config()?.is_none())
}

/// Reads the configuration again (for SIGHUP).
pub type Reload = Box<dyn Fn() -> anyhow::Result<Config> + Send + Sync>;

pub async fn serve(config: Config, reload: Reload) -> anyhow::Result<()> {
    let log_level = init_logging(&config);
    crate::serve::raise_open_files_limit();
    let lock = if uses_data_dir(&config)? { Some(lock_data_dir(&config.data_dir)?) } else { None };
    let state = build(&config, lock.as_ref()).await?;
    // Everything that can fail before serving, before the first administrator is created.
    let addr = config.listen_addr()?;
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    let tls = match (&config.tls.cert, &config.tls.key) {
        (Some(cert), Some(key)) => Some(Arc::new(
            crate::serve::TlsFiles::open(cert.clone(), key.clone())
                .context("cannot load the TLS certificate or key")?,
        )),
        _ => None,
    };
    bootstrap(&state, &config).await?;
    tokio::spawn(state.replica.clone().follow());
    tokio::spawn(purge_uploads_hourly(state.clone()));
    tokio::spawn(return_freed_memory());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        crate::systemd::notify("STOPPING=1");
        let _ = stop.send(true);
    });
    tokio::spawn(reload_on_sighup(reload, log_level, tls.clone()));
    let h = &config.http;
    let limits = crate::serve::Limits {
        max_connections: h.max_connections,
        header_timeout: Duration::from_secs(h.header_timeout_secs),
        idle_timeout: Duration::from_secs(h.idle_timeout_secs),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    eprintln!("portcullis: listening on {scheme}://{}", listener.local_addr()?);
    let app = portcullis_http::router(state);
    crate::systemd::notify("READY=1");
    crate::serve::run(listener, tls, app, limits, stopped, Duration::from_secs(h.drain_secs)).await
}

/// On SIGHUP, reloads what is safe to change without a restart: the log level (`log.level`,
/// from the configuration read again) and the TLS certificate and key (renewed files at the
/// configured paths). Anything else in the configuration needs a restart; a configuration that
/// no longer loads changes nothing.
async fn reload_on_sighup(reload: Reload, log_level: LogLevel, tls: Option<Arc<crate::serve::TlsFiles>>) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else { return };
    while hup.recv().await.is_some() {
        crate::systemd::notify("RELOADING=1");
        match reload() {
            Ok(config) => match EnvFilter::try_new(&config.log.level) {
                Ok(f) => match log_level.reload(f) {
                    Ok(()) => tracing::info!(level = %config.log.level, "log level reloaded"),
                    Err(e) => tracing::error!(error = %e, "cannot change the log level"),
                },
                Err(e) => tracing::error!(error = %e, "log.level is invalid; keeping the current level"),
            },
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "the configuration does not load; nothing reloaded from it")
            }
        }
        if let Some(tls) = &tls {
            match tls.reload() {
                Ok(()) => tracing::info!("TLS certificate reloaded"),
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "cannot reload the TLS certificate; keeping the current one")
                }
            }
        }
        crate::systemd::notify("READY=1");
    }
}
