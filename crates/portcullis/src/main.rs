//! The `portcullis` binary: command line, configuration loading, wiring of stores, services
//! and the HTTP server. Nothing here decides anything about images or access.

mod app;
mod cli_api;
mod client_config;
mod config;
mod publishers_sync;
mod serve;
mod tasks;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{Config, Flags};

#[derive(Parser)]
#[command(name = "portcullis", version, about = "Container registry gateway with Image Access Management")]
struct Cli {
    /// TOML configuration file.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Data directory (database, blobs, signing key).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the registry.
    Serve {
        /// Address to listen on, e.g. 127.0.0.1:5000.
        #[arg(long)]
        listen: Option<String>,
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
    },
    /// Copy an embedded instance (SQLite and filesystem) to PostgreSQL, and its blobs to S3 (with
    /// the `s3` settings of the configuration), verifying row counts and digests. Safe to run
    /// again after an interruption: what is there already is kept.
    MigrateData {
        /// The data directory of the embedded instance (stop its server first).
        #[arg(long)]
        from: PathBuf,
        /// postgres://user:password@host:5432/db of an empty database.
        #[arg(long)]
        to: String,
        /// s3://bucket to move the blobs to (else they stay in the data directory).
        #[arg(long)]
        blobs_to: Option<String>,
    },
    /// Delete unreferenced blobs, evict cached upstream blobs beyond the budget and purge
    /// abandoned uploads.
    Gc {
        /// Cache budget in bytes (default: proxy.cache_max_bytes).
        #[arg(long)]
        max_bytes: Option<u64>,
        /// Purge uploads not written to for this many seconds (default: a day).
        #[arg(long, default_value_t = portcullis_core::purge::UPLOAD_MAX_AGE_SECS)]
        uploads_older_than: i64,
    },
    /// Write client configuration that sends pulls through the gateway (docker, containerd,
    /// podman, k3s, Docker Desktop registry.json).
    ClientConfig {
        /// The gateway's URL, e.g. https://gw.example.com.
        #[arg(long)]
        gateway: String,
        /// Organizations Docker Desktop requires sign-in to (allowedOrgs).
        #[arg(long = "org")]
        orgs: Vec<String>,
        /// Registries to route through the gateway besides Docker Hub.
        #[arg(long = "registry")]
        registries: Vec<String>,
        /// Output directory.
        #[arg(long, default_value = "portcullis-client-config")]
        out: PathBuf,
    },
    /// Organization settings, exceptions and audit log, through the API of a running server.
    Org {
        #[command(subcommand)]
        command: OrgCommand,
    },
    /// Can USER pull IMAGE? The decision and its trace, from a running server.
    Check { org: String, user: String, image: String },
    /// The publisher catalog of a running server.
    Publishers {
        #[command(subcommand)]
        command: PublishersCommand,
    },
    /// Administration that works offline on the data directory.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
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
    /// The org's audit log, newest first.
    Audit {
        org: String,
        #[arg(long)]
        decision: Option<String>,
        #[arg(long)]
        actor: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

#[derive(Subcommand)]
enum SettingsCommand {
    Get {
        org: String,
    },
    /// Replace the settings with a JSON document (Docker Hub's shape plus ours).
    Set {
        org: String,
        json: String,
    },
    /// Which recent pulls the JSON settings would deny.
    Preview {
        org: String,
        json: String,
    },
}

#[derive(Subcommand)]
enum ExceptionsCommand {
    List {
        org: String,
    },
    Add {
        org: String,
        /// docker.io/owner/app or docker.io/owner/*
        pattern: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        digest: Option<String>,
        #[arg(long)]
        team: Option<String>,
        /// Unix seconds.
        #[arg(long)]
        expires_at: Option<i64>,
    },
    Delete {
        org: String,
        id: i64,
    },
}

#[derive(Subcommand)]
enum PublishersCommand {
    List,
    /// Set a Docker Hub namespace's badge: verified_publisher, open_source or none.
    Set {
        namespace: String,
        badge: String,
    },
    /// Remove an override.
    Unset {
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
    /// Print the effective configuration (secrets masked) and exit non-zero when it is invalid.
    Check,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Set a user's password, read from standard input.
    ResetPassword { username: String },
    /// Make a new token signing key; every replica signs with it within a second, and tokens
    /// signed with older keys stay valid until they expire.
    RotateKey,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let listen = match &cli.command {
        Command::Serve { listen } => listen.clone(),
        _ => None,
    };
    let flags = Flags { listen, data_dir: cli.data_dir.clone() };
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
            Command::Serve { .. } => app::serve(config).await,
            Command::Config { command: ConfigCommand::Check } => {
                print!("{}", toml::to_string(&config)?);
                Ok(())
            }
            Command::Fsck { quarantine } => tasks::fsck(&config, quarantine).await,
            Command::Gc { max_bytes, uploads_older_than } => tasks::gc(&config, max_bytes, uploads_older_than).await,
            Command::MigrateData { from, to, blobs_to } => {
                tasks::migrate_data(&config, &from, &to, blobs_to.as_deref()).await
            }
            Command::ClientConfig { gateway, orgs, registries, out } => client_config::generate(
                &client_config::Options { gateway: &gateway, orgs: &orgs, registries: &registries },
                &out,
            ),
            Command::Admin { command: AdminCommand::ResetPassword { username } } => {
                tasks::reset_password(&config, &username).await
            }
            Command::Admin { command: AdminCommand::RotateKey } => tasks::rotate_key(&config).await,
            Command::Org { command } => org_command(&cli_api::Api::new(&config)?, command).await,
            Command::Check { org, user, image } => {
                let path =
                    format!("/api/v1/orgs/{org}/check?user={}&image={}", cli_api::enc(&user), cli_api::enc(&image));
                let v = cli_api::Api::new(&config)?.call("GET", &path, None).await?;
                if v["effect"] == "deny" {
                    anyhow::bail!("denied: {}", v["message"].as_str().unwrap_or_default());
                }
                Ok(())
            }
            Command::Publishers { command } => {
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
        Err(e) => {
            eprintln!("portcullis: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn org_command(api: &cli_api::Api, command: OrgCommand) -> anyhow::Result<()> {
    let json = |s: &str| serde_json::from_str::<serde_json::Value>(s).map_err(|e| anyhow::anyhow!("invalid JSON: {e}"));
    match command {
        OrgCommand::Settings { command: SettingsCommand::Get { org } } => api.call("GET", &format!("/api/v1/orgs/{org}/settings"), None).await,
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
