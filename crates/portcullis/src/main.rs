//! The `portcullis` binary: command line, configuration loading, wiring of stores, services
//! and the HTTP server. Nothing here decides anything about images or access.

mod app;
mod client_config;
mod config;
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
    /// Delete unreferenced blobs and evict cached upstream blobs beyond the budget.
    Gc {
        /// Cache budget in bytes (default: proxy.cache_max_bytes).
        #[arg(long)]
        max_bytes: Option<u64>,
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
    /// Administration that works offline on the data directory.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
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
            Command::Gc { max_bytes } => tasks::gc(&config, max_bytes).await,
            Command::ClientConfig { gateway, orgs, registries, out } => client_config::generate(
                &client_config::Options { gateway: &gateway, orgs: &orgs, registries: &registries },
                &out,
            ),
            Command::Admin { command: AdminCommand::ResetPassword { username } } => {
                tasks::reset_password(&config, &username).await
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
