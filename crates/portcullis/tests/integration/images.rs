//! Test images made offline by code: an OCI image layout with `tiny` (one gzip layer,
//! linux/amd64) and `multi` (an index of amd64 and arm64 images).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::support::sha256;

/// A tar archive with one regular file.
fn tar_one(name: &str, content: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let field = |h: &mut [u8; 512], off: usize, len: usize, v: &str| {
        h[off..off + v.len().min(len)].copy_from_slice(&v.as_bytes()[..v.len().min(len)])
    };
    field(&mut h, 100, 8, "0000644\0");
    field(&mut h, 108, 8, "0000000\0");
    field(&mut h, 116, 8, "0000000\0");
    field(&mut h, 124, 12, &format!("{:011o}\0", content.len()));
    field(&mut h, 136, 12, &format!("{:011o}\0", 1_700_000_000u64));
    h[156] = b'0';
    field(&mut h, 257, 6, "ustar\0");
    field(&mut h, 263, 2, "00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| *b as u32).sum();
    field(&mut h, 148, 8, &format!("{sum:06o}\0 "));
    let mut out = h.to_vec();
    out.extend_from_slice(content);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

pub struct Layout {
    pub dir: PathBuf,
    /// Manifest digest of `tiny`.
    pub tiny: String,
    /// Layer digest of `tiny`.
    pub tiny_layer: String,
    /// Index digest of `multi`.
    pub multi: String,
}

fn put(dir: &Path, b: &[u8]) -> (String, usize) {
    let d = sha256(b);
    std::fs::write(dir.join("blobs/sha256").join(&d[7..]), b).unwrap();
    (d, b.len())
}

fn image(dir: &Path, arch: &str, text: &str) -> (String, usize, String) {
    let tar = tar_one("hello.txt", text.as_bytes());
    let (layer, layer_size) = put(dir, &gzip(&tar));
    let config = json!({
        "architecture": arch, "os": "linux",
        "config": {"Cmd": ["/hello.txt"]},
        "rootfs": {"type": "layers", "diff_ids": [sha256(&tar)]},
    });
    let (cfg, cfg_size) = put(dir, config.to_string().as_bytes());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": cfg_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer, "size": layer_size}],
    });
    let (m, m_size) = put(dir, manifest.to_string().as_bytes());
    (m, m_size, layer)
}

/// Adds a one-layer image saying `text`, named `name`, to the layout; returns its digest.
pub fn add_image(layout: &Layout, name: &str, text: &str) -> String {
    let (m, size, _) = image(&layout.dir, "amd64", text);
    let path = layout.dir.join("index.json");
    let mut index: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    index["manifests"].as_array_mut().unwrap().push(json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": m, "size": size, "annotations": {"org.opencontainers.image.ref.name": name}}));
    std::fs::write(&path, index.to_string()).unwrap();
    m
}

/// Writes the layout into `dir`.
pub fn make(dir: &Path) -> Layout {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let (tiny, tiny_size, tiny_layer) = image(dir, "amd64", "hello from portcullis tests\n");
    let (arm, arm_size, _) = image(dir, "arm64", "hello from arm64\n");
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": tiny, "size": tiny_size, "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": arm, "size": arm_size, "platform": {"architecture": "arm64", "os": "linux"}},
        ],
    });
    let (multi, multi_size) = put(dir, index.to_string().as_bytes());
    let entry = |d: &str, size: usize, mt: &str, name: &str| -> Value {
        json!({"mediaType": mt, "digest": d, "size": size, "annotations": {"org.opencontainers.image.ref.name": name}})
    };
    let layout_index = json!({
        "schemaVersion": 2,
        "manifests": [
            entry(&tiny, tiny_size, "application/vnd.oci.image.manifest.v1+json", "tiny"),
            entry(&multi, multi_size, "application/vnd.oci.image.index.v1+json", "multi"),
        ],
    });
    std::fs::write(dir.join("index.json"), layout_index.to_string()).unwrap();
    Layout { dir: dir.to_owned(), tiny, tiny_layer, multi }
}
