//! `doctor --probe`: asks the gateway's `/v2/` and each real registry's `/v2/` from this node,
//! with a bounded wait. A real registry that answers at all is a way around the gateway (the
//! firewall lets this node reach it); one that does not answer is blocked, as it should be.

use std::time::Duration;

use serde::Serialize;

use super::{Finding, Options, Report};

#[derive(Serialize, Debug)]
pub struct Probe {
    pub url: String,
    /// The HTTP status, when something answered.
    pub status: Option<u16>,
    pub verdict: String,
}

const WAIT: Duration = Duration::from_secs(5);

/// The status of `GET url`, or why nothing answered.
async fn ask(http: &reqwest::Client, url: &str) -> Result<(u16, String), String> {
    match http.get(url).send().await {
        Ok(r) => {
            let challenge =
                r.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            Ok((r.status().as_u16(), challenge))
        }
        Err(e) if e.is_timeout() => Err(format!("no answer within {} s", WAIT.as_secs())),
        Err(e) if e.is_connect() => Err("the connection was refused or could not be made".into()),
        Err(e) => Err(format!("no HTTP answer ({e})")),
    }
}

fn default_direct(reg: &str) -> String {
    if reg == oci::source::DOCKER_HUB { "https://registry-1.docker.io".into() } else { format!("https://{reg}") }
}

pub async fn run(o: &Options, registries: &[String], r: &mut Report) {
    let http = match reqwest::Client::builder()
        .timeout(WAIT)
        .connect_timeout(WAIT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            r.notes.push(format!("cannot make an HTTP client for the probe: {e}"));
            return;
        }
    };
    let gw = format!("{}/v2/", o.gateway.trim_end_matches('/'));
    let verdict = match ask(&http, &gw).await {
        Ok((s @ (200 | 401), challenge)) => (
            Some(s),
            format!(
                "the gateway answered {s}{}",
                if challenge.is_empty() { String::new() } else { format!(" ({challenge})") }
            ),
        ),
        Ok((s, _)) => {
            r.bypasses.push(gateway_down(&gw, &format!("answered {s}, not a registry's 200 or 401")));
            (Some(s), format!("answered {s}: not a registry"))
        }
        Err(e) => {
            r.bypasses.push(gateway_down(&gw, &e));
            (None, format!("the gateway did not answer: {e}"))
        }
    };
    r.probes.push(Probe { url: gw, status: verdict.0, verdict: verdict.1 });
    let direct: Vec<String> =
        if o.direct.is_empty() { registries.iter().map(|r| default_direct(r)).collect() } else { o.direct.clone() };
    for base in direct {
        let url = format!("{}/v2/", base.trim_end_matches('/'));
        match ask(&http, &url).await {
            Ok((s, _)) => {
                r.bypasses.push(Finding {
                    kind: "registry_reachable",
                    file: url.clone(),
                    detail: format!("answered {s}: this node reaches the registry without the gateway"),
                    fix: format!("block {base} at the firewall for this node (allow only the gateway)"),
                });
                r.probes.push(Probe {
                    url,
                    status: Some(s),
                    verdict: format!("answered {s}: reachable around the gateway"),
                });
            }
            Err(e) => r.probes.push(Probe { url, status: None, verdict: format!("blocked: {e}") }),
        }
    }
}

fn gateway_down(url: &str, why: &str) -> Finding {
    Finding {
        kind: "gateway_unreachable",
        file: url.into(),
        detail: format!("the gateway {why}: pulls through it fail, and clients with a fallback go around it"),
        fix: "check the gateway URL, its certificate and the network path to it".into(),
    }
}
