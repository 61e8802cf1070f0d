//! `portcullis login` and `logout`: the API commands' credentials, checked against the server
//! and saved in the user's configuration directory (`$XDG_CONFIG_HOME/portcullis/login.toml`,
//! else `~/.config/portcullis/login.toml`), readable only by the user; configuration loading
//! reads them under everything else.

use std::io::{BufRead, IsTerminal, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use anyhow::Context;

use crate::config::{ClientSettings, Config, Secret};

/// Where `login` saves the credentials, when there is a home to save them in.
pub fn saved_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("portcullis").join("login.toml"))
}

/// The password or token: a line of standard input, or typed at a prompt without echo.
fn read_secret(prompt: &str, from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("cannot read the password from standard input")?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_owned());
    }
    rpassword::prompt_password(prompt).context("cannot read the password")
}

pub async fn login(config: &Config, from_stdin: bool) -> anyhow::Result<()> {
    let server = config.client_server();
    let username = config.client.username.clone();
    let password = read_secret(&format!("Password or access token for {username} at {server}: "), from_stdin)?;
    if password.is_empty() {
        anyhow::bail!("no password given");
    }
    let mut checked = config.clone();
    checked.client =
        ClientSettings { server: server.clone(), username: username.clone(), password: Some(Secret(password)) };
    let me = crate::cli_api::Api::new(&checked)?.quiet("GET", "/api/v1/me", None).await?;
    let file = saved_file().context("no home directory to save the credentials in (set HOME or XDG_CONFIG_HOME)")?;
    let dir = file.parent().context("no directory for the credentials")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let body = toml::to_string(&SavedLogin {
        client: SavedClient {
            server: &server,
            username: &username,
            password: &checked.client.password.as_ref().map(|p| p.0.clone()).unwrap_or_default(),
        },
    })?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&file)
        .with_context(|| format!("cannot write {}", file.display()))?;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?;
    f.write_all(body.as_bytes())?;
    let admin = if me["admin"] == true { " (instance administrator)" } else { "" };
    println!("Signed in to {server} as {username}{admin}; saved in {}", file.display());
    Ok(())
}

pub fn logout() -> anyhow::Result<()> {
    match saved_file() {
        Some(f) if f.exists() => {
            std::fs::remove_file(&f).with_context(|| format!("cannot remove {}", f.display()))?;
            println!("Signed out; removed {}", f.display());
        }
        _ => println!("Not signed in"),
    }
    Ok(())
}

#[derive(serde::Serialize)]
struct SavedLogin<'a> {
    client: SavedClient<'a>,
}

#[derive(serde::Serialize)]
struct SavedClient<'a> {
    server: &'a str,
    username: &'a str,
    password: &'a str,
}
