//! Decision latency with 1 000 exceptions: `cargo run --release -p portcullis-policy --example
//! decide_bench`. Prints `RESULT policy decide_p50_us|decide_p99_us <value>` (used by
//! scripts/bench.sh). A measurement, not a test: nothing here asserts a time.

use std::time::Instant;

use portcullis_policy::*;

fn main() {
    let mut snap = Snapshot::default();
    snap.catalog.badges.insert("bitnami".into(), Badge::VerifiedPublisher);
    let settings = Settings {
        restricted_images: RestrictedImages { enabled: true, ..Default::default() },
        registry_access: RegistryAccess {
            enabled: true,
            allowed_registries: vec!["docker.io".into(), "ghcr.io".into()],
        },
        docker_hub_namespaces: vec!["acmecorp".into()],
        ..Default::default()
    };
    let exceptions: Vec<Exception> = (0..1000)
        .map(|i| Exception {
            id: i,
            pattern: if i % 2 == 0 { format!("docker.io/vendor{i}/*") } else { format!("docker.io/vendor{i}/app") },
            digest: (i % 7 == 0).then(|| format!("sha256:{i:064}")),
            team: (i % 5 == 0).then(|| "ops".to_string()),
            expires_at: (i % 3 == 0).then_some(i64::MAX),
            reason: "vetted".into(),
            created_by: "owner".into(),
            created_at: 0,
        })
        .collect();
    for org in ["acme", "beta", "gamma"] {
        snap.orgs.insert(org.into(), OrgPolicy::new(settings.clone(), exceptions.clone()));
    }
    let member: Vec<Membership> = ["acme", "beta", "gamma"]
        .iter()
        .map(|o| Membership { org: (*o).into(), owner: false, teams: vec!["dev".into()] })
        .collect();
    let images: Vec<Image> =
        ["library/alpine", "bitnami/redis", "someone/app", "vendor998/x", "vendor999/app", "acmecorp/tool"]
            .iter()
            .map(|p| Image { registry: Some("docker.io".into()), path: (*p).into(), digest: None })
            .collect();
    let mut samples = Vec::with_capacity(300_000);
    let mut denied = 0u64;
    for i in 0..300_000 {
        let img = &images[i % images.len()];
        let t = Instant::now();
        let d = decide(&member, img, &snap, 1);
        samples.push(t.elapsed().as_nanos() as u64);
        denied += u64::from(d.effect == Effect::Deny);
    }
    samples.sort_unstable();
    let p = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize] as f64 / 1000.0;
    println!("RESULT policy decide_p50_us {:.2}", p(0.50));
    println!("RESULT policy decide_p99_us {:.2}", p(0.99));
    println!("RESULT policy decide_denied_share {:.2}", denied as f64 / samples.len() as f64);
}
