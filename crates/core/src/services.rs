//! Every service, built once on the ports: what the binary serves and what tests drive. The
//! HTTP layer holds a `Services` and calls into it; nothing here knows about HTTP.

use std::sync::Arc;

use crate::audit::Audit;
use crate::authz::Directory;
use crate::badges::HubLookupConfig;
use crate::clock::Clock;
use crate::content::Contents;
use crate::error::Result;
use crate::gate::{Gate, GateConfig};
use crate::iam::{Iam, IamOptions};
use crate::identity::Identity;
use crate::metrics::Metrics;
use crate::orgs::Orgs;
use crate::ports::{BadgeLookup, BlobStore, MetaStore, PasswordDirectory, UpstreamRegistry, WorkloadVerifier};
use crate::proxy::{Proxy, ProxyConfig};
use crate::registry::{HostedCache, Registry};
use crate::replica::Replica;
use crate::sessions::Sessions;
use crate::tokens::TokenIssuer;

/// The adapters the services run on.
pub struct Ports {
    pub meta: Arc<dyn MetaStore>,
    pub blobs: Arc<dyn BlobStore>,
    pub upstream: Arc<dyn UpstreamRegistry>,
    pub clock: Arc<dyn Clock>,
    /// Docker Hub's badge lookups (`docker_hub.badge_lookups`) and how they behave; `None`: off.
    pub badge_lookup: Option<(Arc<dyn BadgeLookup>, HubLookupConfig)>,
    /// The directory that checks the passwords of the names it holds (`[auth.ldap]`).
    pub password_directory: Option<Arc<dyn PasswordDirectory>>,
    /// The trusted workload token issuers (`[[auth.workload_issuers]]`).
    pub workload_verifier: Option<Arc<dyn WorkloadVerifier>>,
}

/// How the services are configured.
#[derive(Debug, Clone)]
pub struct Settings {
    pub gate: GateConfig,
    pub proxy: ProxyConfig,
    /// Audit entries older than this many days are pruned (0: kept).
    pub audit_retention_days: i64,
    /// Only the instance administrator creates organizations.
    pub admins_only_create_orgs: bool,
    /// The token audience (and the challenge's `service`).
    pub token_service: String,
    pub token_ttl_secs: i64,
    /// The publisher catalog shipped with the binary.
    pub catalog: policy::Catalog,
    /// Whether an identity provider is configured (an org may then enforce single sign-on).
    pub sso_available: bool,
    /// Bytes of hosted manifests (and as many of blob links) kept in memory (0: none); see
    /// [`HostedCache`].
    pub manifest_cache_bytes: u64,
    /// The workload issuer whose rules name the cluster's service accounts at admission
    /// (`[admission] issuer`); `None`: admission reviews are not answered.
    pub admission_issuer: Option<String>,
    /// The gateway's `host[:port]` as nodes reach it, which admission rewrites images to.
    pub gateway_host: Option<String>,
}

/// The services. The stores are theirs: the HTTP layer reaches data only through a service.
pub struct Services {
    pub(crate) meta: Arc<dyn MetaStore>,
    pub(crate) blobs: Arc<dyn BlobStore>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub audit: Arc<Audit>,
    pub identity: Arc<Identity>,
    pub orgs: Arc<Orgs>,
    pub iam: Arc<Iam>,
    pub registry: Arc<Registry>,
    pub proxy: Arc<Proxy>,
    pub contents: Arc<Contents>,
    pub sessions: Sessions,
    pub sso: Arc<crate::sso::Sso>,
    pub scim: Arc<crate::scim::Scim>,
    pub workloads: Arc<crate::workloads::Workloads>,
    pub admission: Arc<crate::admission::Admission>,
    pub robots: Arc<crate::robots::Robots>,
    pub tokens: Arc<TokenIssuer>,
    pub gate: Gate,
    pub replica: Arc<Replica>,
}

impl Services {
    /// Builds every service and loads what they keep in memory. `signing_keys` are the token
    /// keys, newest (the signing one) first.
    pub async fn start(ports: Ports, settings: Settings, signing_keys: &[Vec<u8>]) -> Result<Services> {
        let Ports { meta, blobs, upstream, clock, badge_lookup, password_directory, workload_verifier } = ports;
        // Read before the first loads: a change made meanwhile is loaded again by `catch_up`.
        let generation = meta.generation().await?;
        let metrics = Arc::new(Metrics::default());
        let audit = Arc::new(Audit::start(meta.clone(), settings.audit_retention_days, clock.clone()));
        let identity =
            Arc::new(Identity::new(meta.clone(), Directory::default(), clock.clone(), audit.clone(), metrics.clone()));
        identity.refresh_directory().await?;
        let manifests = Arc::new(HostedCache::new(settings.manifest_cache_bytes));
        let orgs = Arc::new(Orgs::new(
            meta.clone(),
            identity.clone(),
            audit.clone(),
            settings.admins_only_create_orgs,
            manifests.clone(),
        ));
        let options = IamOptions {
            catalog: settings.catalog,
            sso_available: settings.sso_available,
            badge_lookup: badge_lookup.map(|(lookup, cfg)| (lookup, cfg, metrics.clone())),
            workload_verifier: workload_verifier.clone(),
        };
        let iam = Arc::new(Iam::new(meta.clone(), identity.clone(), orgs.clone(), audit.clone(), options));
        iam.refresh().await?;
        let tokens =
            Arc::new(TokenIssuer::new(signing_keys, "portcullis", &settings.token_service, settings.token_ttl_secs)?);
        let registry =
            Arc::new(Registry::new(meta.clone(), meta.clone(), blobs.clone(), identity.clone(), manifests.clone()));
        let proxy = Arc::new(Proxy::new(
            meta.clone(),
            blobs.clone(),
            upstream,
            identity.clone(),
            metrics.clone(),
            settings.proxy,
        ));
        proxy.reclaim_leases().await?;
        let contents = Arc::new(Contents::new(registry.clone(), proxy.clone(), blobs.clone()));
        let gate = Gate {
            identity: identity.clone(),
            iam: iam.clone(),
            orgs: orgs.clone(),
            contents: contents.clone(),
            audit: audit.clone(),
            tokens: tokens.clone(),
            clock: clock.clone(),
            config: settings.gate,
        };
        let replica = Arc::new(Replica::new(
            meta.clone(),
            identity.clone(),
            iam.clone(),
            tokens.clone(),
            manifests.clone(),
            generation,
        ));
        let sso = Arc::new(crate::sso::Sso::new(meta.clone(), identity.clone(), audit.clone()));
        let workloads = Arc::new(crate::workloads::Workloads::new(
            workload_verifier,
            meta.clone(),
            identity.clone(),
            iam.clone(),
            audit.clone(),
            clock.clone(),
        ));
        if let Some(directory) = password_directory {
            identity.set_password_directory(directory, &sso);
        }
        Ok(Services {
            sessions: Sessions::new(meta.clone(), identity.clone()),
            sso,
            scim: Arc::new(crate::scim::Scim::new(meta.clone(), identity.clone(), audit.clone())),
            robots: Arc::new(crate::robots::Robots::new(
                meta.clone(),
                identity.clone(),
                orgs.clone(),
                audit.clone(),
                clock.clone(),
            )),
            admission: Arc::new(crate::admission::Admission::new(
                iam.clone(),
                gate.clone(),
                workloads.clone(),
                contents.clone(),
                audit.clone(),
                settings.admission_issuer,
                settings.gateway_host,
            )),
            workloads,
            meta,
            blobs,
            clock,
            metrics,
            audit,
            identity,
            orgs,
            iam,
            registry,
            proxy,
            contents,
            tokens,
            gate,
            replica,
        })
    }

    /// Whether the database and the blob store answer, for `/readyz`.
    /// Why the database cannot be reached now (its health check), if it cannot.
    pub fn database_unreachable(&self) -> Option<crate::ports::Outage> {
        self.meta.unreachable()
    }

    /// Waits until the other replicas took in what this one committed (see
    /// [`crate::ports::ClusterStore::settle`]); at once on an embedded database.
    pub async fn settle(&self) -> Result<()> {
        self.meta.settle().await
    }

    /// Whether the database and the blob store answer; the database within a second (a
    /// database that does not answer at all is its health check's to notice).
    pub async fn readiness(&self) -> (Result<()>, Result<()>) {
        let meta = async {
            match tokio::time::timeout(std::time::Duration::from_secs(1), self.meta.ping()).await {
                Ok(r) => r,
                Err(_) => Err(crate::Error::Unavailable("the database did not answer within a second".into())),
            }
        };
        tokio::join!(meta, self.blobs.ping())
    }

    /// Latency and failures of each storage backend by operation (Prometheus text).
    pub fn backend_stats(&self) -> String {
        crate::metrics::BackendStats::render(&[self.meta.stats(), self.blobs.stats()])
    }

    /// Drops the in-memory state of idle uploads, then purges uploads untouched for
    /// [`crate::purge::UPLOAD_MAX_AGE_SECS`] (idempotent: replicas may all do it); how many.
    pub async fn purge_uploads(&self) -> Result<usize> {
        self.registry.drop_idle_uploads();
        let now = self.clock.now();
        crate::purge::purge_uploads(self.meta.as_ref(), self.blobs.as_ref(), now, crate::purge::UPLOAD_MAX_AGE_SECS)
            .await
    }
}
