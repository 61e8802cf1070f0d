//! The `portcullis` binary: command line, configuration loading, wiring of stores, services
//! and the HTTP server. Nothing here decides anything about images or access.

mod app;
mod backup;
mod cli_api;
mod client_config;
mod config;
mod credential_provider;
mod doctor;
mod health;
mod login;
mod publishers_sync;
mod serve;
mod systemd;
mod tasks;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, Flags};

#[derive(Parser)]
#[command(name = "portcullis", version = env!("BUILD_VERSION"), about = "Container registry gateway with Image Access Management")]
struct Cli {
    /// TOML configuration file (settings also come from PORTCULLIS_* variables).
    #[arg(long, global = true, value_name = "FILE", env = "PORTCULLIS_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// Where the commands that talk to a running server (login, org, check, publishers) send
/// their requests, and as whom: flags of those commands only.
#[derive(Args, Clone, Default)]
struct Client {
    /// The server to talk to; default: the one `portcullis login` saved, else this
    /// configuration's own listen address.
    #[arg(long, global = true, value_name = "URL")]
    server: Option<String>,
    /// The user to sign in as (password or access token from `portcullis login` or
    /// PORTCULLIS_CLIENT__PASSWORD).
    #[arg(long, global = true, value_name = "NAME")]
    username: Option<String>,
}

/// Where the database and blobs live.
#[derive(Args, Clone, Default)]
struct DataDir {
    /// Data directory (database, blobs); default ./portcullis-data.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the registry.
    Serve {
        /// Address to listen on: 127.0.0.1:5000, [::1]:5000, 0.0.0.0:5000 or localhost:5000.
        #[arg(long, value_name = "HOST:PORT")]
        listen: Option<String>,
        #[command(flatten)]
        data: DataDir,
    },
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Verify every stored blob against its digest.
    Fsck {
        /// Move bad blobs aside and forget them, so they are never served.
        #[arg(long)]
        quarantine: bool,
        #[command(flatten)]
        data: DataDir,
    },
    /// Back up an embedded instance while it serves: a consistent snapshot of the database, the
    /// blobs it references (hard-linked where possible) and a list of their digests.
    Backup {
        /// The backup directory (must not exist or be empty).
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        /// Copy blobs even where a hard link would do (for a backup on another disk's mount, a
        /// copy is made anyway).
        #[arg(long)]
        copy: bool,
        #[command(flatten)]
        data: DataDir,
    },
    /// Restore a backup into a new data directory: every file is verified against the backup's
    /// list before anything is put in place, and the database is upgraded to this version.
    Restore {
        /// The backup directory.
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        #[command(flatten)]
        data: DataDir,
    },
    /// Copy an embedded instance (SQLite and filesystem) to PostgreSQL, and its blobs to S3 (with
    /// the `s3` settings of the configuration), verifying row counts and digests. Safe to run
    /// again after an interruption: what is there already is kept.
    MigrateData {
        /// The data directory of the embedded instance (stop its server first).
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// postgres://user:password@host:5432/db of an empty database.
        #[arg(long, value_name = "URL")]
        to: String,
        /// s3://bucket to move the blobs to (else they stay in the data directory).
        #[arg(long, value_name = "URL")]
        blobs_to: Option<String>,
    },
    /// Delete unreferenced blobs, evict cached upstream blobs beyond the budget and purge
    /// abandoned uploads.
    Gc {
        /// Cache budget in bytes (default: proxy.cache_max_bytes).
        #[arg(long, value_name = "BYTES")]
        max_bytes: Option<u64>,
        /// Purge uploads not written to for this many seconds (default: a day).
        #[arg(long, value_name = "SECS", default_value_t = portcullis_core::purge::UPLOAD_MAX_AGE_SECS)]
        uploads_older_than: i64,
        #[command(flatten)]
        data: DataDir,
    },
    /// Write client configuration that sends pulls through the gateway (docker, containerd,
    /// podman, k3s, Docker Desktop), with a README saying where each file goes.
    ClientConfig {
        /// The gateway's URL, e.g. https://gw.example.com.
        #[arg(long, value_name = "URL")]
        gateway: String,
        /// Organizations Docker Desktop requires sign-in to (allowedOrgs); repeat for several.
        #[arg(long = "org", value_name = "ORG")]
        orgs: Vec<String>,
        /// Registries to route through the gateway besides Docker Hub; repeat for several.
        #[arg(long = "registry", value_name = "HOST")]
        registries: Vec<String>,
        /// The audience of the pods' service-account tokens: the gateway's auth.service.
        #[arg(long, value_name = "NAME", default_value = "portcullis")]
        audience: String,
        /// Output directory.
        #[arg(long, value_name = "DIR", default_value = "portcullis-client-config")]
        out: PathBuf,
    },
    /// The kubelet's image credential provider (credentialprovider.kubelet.k8s.io/v1): reads a
    /// CredentialProviderRequest with the pod's service account token on standard input, signs
    /// it in at the gateway and answers with it as the credentials of every registry the node
    /// sends through the gateway, so the pod pulls as its own service account.
    CredentialProvider {
        /// The gateway's URL, e.g. https://gw.example.com.
        #[arg(long, value_name = "URL")]
        gateway: String,
        /// Registries the node sends through the gateway besides Docker Hub; repeat for several.
        #[arg(long = "registry", value_name = "HOST")]
        registries: Vec<String>,
        /// The longest the kubelet may cache the credentials (never beyond the token's life).
        #[arg(long, value_name = "SECS", default_value_t = 300)]
        max_cache_secs: i64,
        /// A CA certificate (PEM) to trust for the gateway, besides the system's.
        #[arg(long, value_name = "FILE")]
        ca: Option<PathBuf>,
    },
    /// Check this node: report every way an image pull can go around the gateway (containerd,
    /// podman/buildah/skopeo/CRI-O, dockerd, docker credentials), with the fix for each. Exit
    /// status 0 only when none is found.
    Doctor {
        /// The gateway's URL, e.g. https://gw.example.com.
        #[arg(long, value_name = "URL")]
        gateway: String,
        /// Registries that must go through the gateway besides Docker Hub; repeat for several.
        #[arg(long = "registry", value_name = "HOST")]
        registries: Vec<String>,
        /// Read the configuration under this directory instead of / (a node's image, a fixture).
        #[arg(long, value_name = "DIR", default_value = "/")]
        root: PathBuf,
        /// The home directory whose .docker/config.json is read (default: $HOME).
        #[arg(long, value_name = "DIR")]
        home: Option<PathBuf>,
        /// Also ask the gateway's /v2/ and each real registry's over the network.
        #[arg(long)]
        probe: bool,
        /// With --probe: a registry URL to try directly instead of the registries' own; repeat
        /// for several.
        #[arg(long, value_name = "URL")]
        direct: Vec<String>,
        /// Print the report as JSON (for fleet tools).
        #[arg(long)]
        json: bool,
    },
    /// Ask a server's /healthz (exit 0 only on 200): the container image's HEALTHCHECK.
    Health {
        /// The server's URL (default: this configuration's own listen address).
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
    /// Sign in to a server for the API commands: checks the password (or access token, read
    /// from standard input or a prompt) and saves it, readable only by you.
    Login {
        /// Read the password or token from standard input without prompting.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        client: Client,
    },
    /// Forget the credentials `login` saved.
    Logout,
    /// Organization settings, exceptions and audit log, through the API of a running server.
    Org {
        #[command(subcommand)]
        command: OrgCommand,
        #[command(flatten)]
        client: Client,
    },
    /// Can USER pull IMAGE? Asks the server's gate, as a pull would: one line with the answer,
    /// then each step (exit status 1 when denied).
    Check {
        /// The organization whose owners (or members, for themselves) may ask.
        org: String,
        /// The user who would pull.
        user: String,
        /// The image as a client names it: alpine, someone/app:1, ghcr.io/o/a@sha256:…
        image: String,
        /// Print the whole answer as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: Client,
    },
    /// The publisher catalog of a running server.
    Publishers {
        #[command(subcommand)]
        command: PublishersCommand,
        #[command(flatten)]
        client: Client,
    },
    /// Administration that works offline on the data directory.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
        #[command(flatten)]
        data: DataDir,
    },
}

#[derive(Subcommand)]
enum OrgCommand {
    /// Image Access Management settings.
    Settings {
        #[command(subcommand)]
        command: SettingsCommand,
    },
    /// Exceptions (repository allowlist).
    Exceptions {
        #[command(subcommand)]
        command: ExceptionsCommand,
    },
    /// Signature requirements: which images must be signed by which keys.
    Signatures {
        #[command(subcommand)]
        command: SignaturesCommand,
    },
    /// The org's audit log, newest first.
    Audit {
        /// The organization.
        org: String,
        /// Only pulls with this decision: allowed, denied or would_deny.
        #[arg(long)]
        decision: Option<String>,
        /// Only entries by this user.
        #[arg(long)]
        actor: Option<String>,
        /// At most this many entries.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

#[derive(Subcommand)]
enum SettingsCommand {
    /// Show the settings.
    Get {
        /// The organization.
        org: String,
    },
    /// Change the settings the JSON document names (Docker Hub's shape plus ours); the rest
    /// stay as they are.
    Set {
        /// The organization.
        org: String,
        /// The change, such as '{"restricted_images":{"enabled":true}}'.
        json: String,
    },
    /// Which recent pulls the change would deny.
    Preview {
        /// The organization.
        org: String,
        /// The change, as for `set`.
        json: String,
    },
}

#[derive(Subcommand)]
enum ExceptionsCommand {
    /// List the exceptions.
    List {
        /// The organization.
        org: String,
    },
    /// Allow a repository (or all of a namespace's) despite the category rules.
    Add {
        /// The organization.
        org: String,
        /// docker.io/owner/app or docker.io/owner/*
        pattern: String,
        /// Why (shown to owners and in the audit log).
        #[arg(long)]
        reason: String,
        /// Only this manifest digest (and what it references).
        #[arg(long)]
        digest: Option<String>,
        /// Only for members of this team.
        #[arg(long)]
        team: Option<String>,
        /// Unix seconds after which it no longer applies.
        #[arg(long)]
        expires_at: Option<i64>,
    },
    /// Remove an exception.
    Delete {
        /// The organization.
        org: String,
        /// The exception's id (see `list`).
        id: i64,
    },
}

#[derive(Subcommand)]
enum SignaturesCommand {
    /// List the rules, numbered.
    List {
        /// The organization.
        org: String,
    },
    /// Require a signature by one of the given keys on the images named.
    Add {
        /// The organization.
        org: String,
        #[arg(help = images_help())]
        images: String,
        /// A PEM public key file (cosign.pub), ECDSA P-256 or Ed25519; repeat for more.
        #[arg(long = "key", required = true, value_name = "FILE")]
        keys: Vec<std::path::PathBuf>,
        /// The docker-reference the signed payload must name (exact or prefix/*).
        #[arg(long)]
        identity: Option<String>,
        /// Serve unsigned images with a warning instead of refusing them.
        #[arg(long)]
        dry_run: bool,
    },
    /// Remove rule N (see `list`).
    Remove {
        /// The organization.
        org: String,
        /// The rule's number.
        n: usize,
    },
}

#[derive(Subcommand)]
enum PublishersCommand {
    /// The effective catalog (shipped list and overrides).
    List,
    /// Set a Docker Hub namespace's badge: verified_publisher, open_source or none.
    Set {
        /// A Docker Hub namespace.
        namespace: String,
        /// verified_publisher, open_source or none.
        badge: String,
    },
    /// Remove an override.
    Unset {
        /// A Docker Hub namespace.
        namespace: String,
    },
    /// Read badges from Docker Hub's search API and store them (as overrides).
    Sync {
        /// Base URL of the search API.
        #[arg(long, default_value = "https://hub.docker.com")]
        url: String,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration (secrets masked) and what it means; exit non-zero when
    /// it is invalid.
    Check {
        #[command(flatten)]
        data: DataDir,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Set a user's password, read from standard input.
    ResetPassword {
        /// The user.
        username: String,
    },
    /// Make a new token signing key; every replica signs with it within a second, and tokens
    /// signed with older keys stay valid until they expire.
    RotateKey,
}

fn main() -> std::process::ExitCode {
    // A command whose output is piped into `head` ends quietly when the reader goes, as Unix tools
    // do (Rust ignores SIGPIPE, so `println!` would panic on the closed pipe). The server keeps it
    // ignored: a client closing its connection must never end the process.
    // SAFETY: `signal` only sets this process's disposition, before any other thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    if matches!(cli.command, Command::Serve { .. }) {
        // SAFETY: as above.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    }
    let (listen, data_dir) = match &cli.command {
        Command::Serve { listen, data } => (listen.clone(), data.data_dir.clone()),
        Command::Fsck { data, .. }
        | Command::Backup { data, .. }
        | Command::Restore { data, .. }
        | Command::Gc { data, .. }
        | Command::Admin { data, .. }
        | Command::Config { command: ConfigCommand::Check { data } } => (None, data.data_dir.clone()),
        _ => (None, None),
    };
    let client = match &cli.command {
        Command::Login { client, .. }
        | Command::Org { client, .. }
        | Command::Check { client, .. }
        | Command::Publishers { client, .. } => client.clone(),
        _ => Client::default(),
    };
    let flags = Flags::new(listen, data_dir, client.server, client.username);
    let config_file = cli.config.clone();
    let config = match Config::load(cli.config.as_deref(), &flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("portcullis: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("portcullis: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Serve { .. } => {
                let reload = move || Config::load(config_file.as_deref(), &flags);
                app::serve(config, Box::new(reload)).await
            }
            Command::Config { command: ConfigCommand::Check { .. } } => {
                print!("{}", config.explained()?);
                Ok(())
            }
            Command::Fsck { quarantine, .. } => tasks::fsck(&config, quarantine).await,
            Command::Backup { to, copy, .. } => backup::backup(&config, &to, copy).await,
            Command::Restore { from, .. } => backup::restore(&config, &from).await,
            Command::Gc { max_bytes, uploads_older_than, .. } => {
                tasks::gc(&config, max_bytes, uploads_older_than).await
            }
            Command::MigrateData { from, to, blobs_to } => {
                tasks::migrate_data(&config, &from, &to, blobs_to.as_deref()).await
            }
            Command::ClientConfig { gateway, orgs, registries, audience, out } => client_config::generate(
                &client_config::Options {
                    gateway: &gateway,
                    orgs: &orgs,
                    registries: &registries,
                    audience: &audience,
                },
                &out,
            ),
            Command::CredentialProvider { gateway, registries, max_cache_secs, ca } => {
                let o = credential_provider::Options { gateway, registries, max_cache_secs, ca };
                credential_provider::run(&o, std::io::stdin()).await
            }
            Command::Doctor { gateway, registries, root, home, probe, direct, json } => {
                let home = home.or_else(|| std::env::var_os("HOME").map(PathBuf::from));
                doctor::run(&doctor::Options { gateway, registries, root, home, probe, direct, json }).await
            }
            Command::Health { url } => health::check(&config, url).await,
            Command::Login { password_stdin, .. } => login::login(&config, password_stdin).await,
            Command::Logout => login::logout(),
            Command::Admin { command: AdminCommand::ResetPassword { username }, .. } => {
                tasks::reset_password(&config, &username).await
            }
            Command::Admin { command: AdminCommand::RotateKey, .. } => tasks::rotate_key(&config).await,
            Command::Org { command, .. } => org_command(&cli_api::Api::new(&config)?, command).await,
            Command::Check { org, user, image, json, .. } => {
                let path =
                    format!("/api/v1/orgs/{org}/check?user={}&image={}", cli_api::enc(&user), cli_api::enc(&image));
                let v = cli_api::Api::new(&config)?.quiet("GET", &path, None).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else {
                    print!("{}", cli_api::explain_check(&v, &image));
                }
                if v["effect"] == "deny" {
                    return Err(anyhow::Error::new(cli_api::Denied));
                }
                Ok(())
            }
            Command::Publishers { command, .. } => {
                let api = cli_api::Api::new(&config)?;
                match command {
                    PublishersCommand::List => api.call("GET", "/api/v1/publishers", None).await,
                    PublishersCommand::Set { namespace, badge } => {
                        let body = serde_json::json!({ "badge": badge });
                        api.call("PUT", &format!("/api/v1/publishers/{namespace}"), Some(body)).await
                    }
                    PublishersCommand::Unset { namespace } => {
                        api.call("DELETE", &format!("/api/v1/publishers/{namespace}"), None).await
                    }
                    PublishersCommand::Sync { url } => {
                        publishers_sync::sync(&api, &url).await.map(|_| serde_json::Value::Null)
                    }
                }
                .map(|_| ())
            }
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.is::<cli_api::Denied>() || e.is::<doctor::BypassFound>() => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("portcullis: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The help of a signature rule's images: the categories from the policy's table.
fn images_help() -> String {
    let keys: Vec<&str> = policy::Category::ALL.iter().map(|c| c.key).collect();
    format!("A category ({}), a repository pattern (docker.io/library/*) or *", keys.join(", "))
}

async fn org_command(api: &cli_api::Api, command: OrgCommand) -> anyhow::Result<()> {
    let json = |s: &str| serde_json::from_str::<serde_json::Value>(s).map_err(|e| anyhow::anyhow!("invalid JSON: {e}"));
    match command {
        OrgCommand::Settings { command: SettingsCommand::Get { org } } => {
            api.call("GET", &format!("/api/v1/orgs/{org}/settings"), None).await
        }
        OrgCommand::Settings { command: SettingsCommand::Set { org, json: j } } => {
            api.call("PUT", &format!("/api/v1/orgs/{org}/settings"), Some(json(&j)?)).await
        }
        OrgCommand::Settings { command: SettingsCommand::Preview { org, json: j } } => {
            api.call("POST", &format!("/api/v1/orgs/{org}/settings/preview"), Some(json(&j)?)).await
        }
        OrgCommand::Exceptions { command: ExceptionsCommand::List { org } } => {
            api.call("GET", &format!("/api/v1/orgs/{org}/exceptions"), None).await
        }
        OrgCommand::Exceptions { command: ExceptionsCommand::Add { org, pattern, reason, digest, team, expires_at } } => {
            let body = serde_json::json!({ "pattern": pattern, "reason": reason, "digest": digest, "team": team, "expires_at": expires_at });
            api.call("POST", &format!("/api/v1/orgs/{org}/exceptions"), Some(body)).await
        }
        OrgCommand::Exceptions { command: ExceptionsCommand::Delete { org, id } } => {
            api.call("DELETE", &format!("/api/v1/orgs/{org}/exceptions/{id}"), None).await
        }
        OrgCommand::Signatures { command } => signatures_command(api, command).await,
        OrgCommand::Audit { org, decision, actor, limit } => {
            let mut q = format!("limit={limit}");
            if let Some(d) = decision {
                q.push_str(&format!("&decision={}", cli_api::enc(&d)));
            }
            if let Some(a) = actor {
                q.push_str(&format!("&actor={}", cli_api::enc(&a)));
            }
            api.call("GET", &format!("/api/v1/orgs/{org}/audit?{q}"), None).await
        }
    }
    .map(|_| ())
}

/// Signature rules through the settings API: read the rules, change the list, write it back.
async fn signatures_command(api: &cli_api::Api, command: SignaturesCommand) -> anyhow::Result<serde_json::Value> {
    let org = match &command {
        SignaturesCommand::List { org }
        | SignaturesCommand::Add { org, .. }
        | SignaturesCommand::Remove { org, .. } => org.clone(),
    };
    let path = format!("/api/v1/orgs/{org}/settings");
    let settings = api.quiet("GET", &path, None).await?;
    let mut rules = settings["signatures"]["rules"].as_array().cloned().unwrap_or_default();
    match command {
        SignaturesCommand::List { .. } => {
            let numbered: Vec<_> =
                rules.iter().enumerate().map(|(i, r)| serde_json::json!({"n": i + 1, "rule": r})).collect();
            let numbered = serde_json::Value::Array(numbered);
            println!("{}", serde_json::to_string_pretty(&numbered)?);
            return Ok(numbered);
        }
        SignaturesCommand::Add { images, keys, identity, dry_run, .. } => {
            let keys = keys
                .iter()
                .map(|k| std::fs::read_to_string(k).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", k.display())))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let mode = if dry_run { "dry_run" } else { "enforce" };
            rules.push(serde_json::json!({ "images": images, "keys": keys, "identity": identity, "mode": mode }));
        }
        SignaturesCommand::Remove { n, .. } => {
            if n == 0 || n > rules.len() {
                anyhow::bail!("{org} has no signature rule {n} (it has {})", rules.len());
            }
            rules.remove(n - 1);
        }
    }
    let body = serde_json::json!({ "signatures": { "rules": rules } });
    let saved = api.quiet("PUT", &path, Some(body)).await?;
    println!("{}", serde_json::to_string_pretty(&saved["signatures"])?);
    Ok(saved)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every command, argument and flag says what it is for.
    #[test]
    fn everything_has_help() {
        fn walk(c: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in c.get_arguments() {
                let id = a.get_id().as_str();
                if !matches!(id, "help" | "version") && a.get_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in c.get_subcommands() {
                if sub.get_name() != "help" && sub.get_about().is_none() {
                    missing.push(format!("{path} {}", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = vec![];
        walk(&super::Cli::command(), "portcullis", &mut missing);
        assert!(missing.is_empty(), "without help: {missing:?}");
        super::Cli::command().debug_assert();
    }
}
