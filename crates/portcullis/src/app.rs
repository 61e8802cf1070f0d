//! Wiring: open the stores in the data directory, build the services, bootstrap the first
//! administrator, and serve HTTP (or HTTPS with rustls) until SIGINT/SIGTERM, then drain.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use portcullis_core::clock::SystemClock;
use portcullis_core::gate::GateConfig;
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
        return Ok(keys.into_iter().map(|(_, k)| k).collect());
    }
    let key = match std::fs::read(data_dir.join("keys/token-signing-ed25519.pk8")) {
        Ok(k) => k,
        Err(_) => generate_signing_key()?,
    };
    meta.add_signing_key(&portcullis_core::tokens::key_id(&key)?, &key, portcullis_core::clock::system_now()).await?;
    // Replicas starting together may each have added one: all agree on the newest.
    Ok(meta.signing_keys().await?.into_iter().map(|(_, k)| k).collect())
}

fn init_logging(config: &Config) {
    let filter = EnvFilter::try_new(&config.log.level).unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only for a person at a terminal, never into a file or a journal.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = if config.log.format == "json" { b.json().try_init() } else { b.try_init() };
}

/// Builds the application state from a configuration.
pub async fn build(config: &Config) -> anyhow::Result<Arc<AppState>> {
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
    let ports = Ports {
        upstream: Arc::new(upstream::Client::new(config.upstreams()?, settings)?),
        meta: stores.meta,
        blobs: stores.blobs,
        clock: Arc::new(SystemClock),
    };
    let keys = signing_keys(ports.meta.as_ref(), &config.data_dir).await?;
    let settings = portcullis_core::services::Settings {
        gate: GateConfig { allowed_orgs: config.auth.allowed_orgs.clone(), proxy_anonymous: p.allow_anonymous },
        proxy: portcullis_core::proxy::ProxyConfig { tag_ttl_secs: p.tag_ttl_secs, cache_max_bytes: p.cache_max_bytes },
        audit_retention_days: config.audit.retention_days,
        admins_only_create_orgs: config.auth.org_creation == "admins",
        token_service: config.auth.service.clone(),
        token_ttl_secs: config.auth.token_ttl_secs,
        catalog: portcullis_core::iam::builtin_catalog(),
    };
    let core = Services::start(ports, settings, &keys).await?;
    if let Some(generated) = core.identity.bootstrap_admin(config.admin_password()?.as_deref()).await? {
        eprintln!("portcullis: created the instance administrator `admin` with password {generated} (shown once)");
    }
    Ok(Arc::new(AppState { core, public_url: config.public_url.clone(), tls: config.tls.cert.is_some() }))
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
        state.registry.drop_idle_uploads();
        let purged = portcullis_core::purge::purge_uploads(
            state.meta.as_ref(),
            state.blobs.as_ref(),
            state.clock.now(),
            portcullis_core::purge::UPLOAD_MAX_AGE_SECS,
        )
        .await;
        match purged {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "abandoned uploads purged"),
            Err(e) => tracing::error!(error = %e, "cannot purge abandoned uploads"),
        }
    }
}

pub async fn serve(config: Config) -> anyhow::Result<()> {
    init_logging(&config);
    let state = build(&config).await?;
    tokio::spawn(state.replica.clone().follow());
    tokio::spawn(purge_uploads_hourly(state.clone()));
    let app = portcullis_http::router(state).into_make_service_with_connect_info::<SocketAddr>();
    let addr: SocketAddr = config.listen.parse()?;
    if let (Some(cert), Some(key)) = (&config.tls.cert, &config.tls.key) {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
            .await
            .context("cannot load the TLS certificate or key")?;
        let handle = axum_server::Handle::new();
        let h = handle.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            h.graceful_shutdown(Some(Duration::from_secs(30)));
        });
        // TCP_NODELAY under TLS as without: small responses must not wait for the peer's ACK.
        let acceptor =
            axum_server::tls_rustls::RustlsAcceptor::new(tls).acceptor(axum_server::accept::NoDelayAcceptor::new());
        let mut server = axum_server::bind(addr).acceptor(acceptor).handle(handle);
        server.http_builder().http1().keep_alive(true);
        eprintln!("portcullis: listening on https://{addr}");
        server.serve(app).await?;
    } else {
        use axum::serve::ListenerExt;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?
            .tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
        eprintln!("portcullis: listening on http://{addr}");
        axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await?;
    }
    Ok(())
}
