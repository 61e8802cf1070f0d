//! The least work a pull-through cache can do for one cold blob, with no framework: `cargo run
//! --release -p portcullis-oci --example fill_floor -- <listen> <upstream host:port> <dir> <mode>`.
//! It answers one `GET /v2/<name>/blobs/<digest>` at a time by fetching the same path from the
//! upstream over plain HTTP/1.1 and streaming it to the client. Modes:
//! - `verify`: the floor of a verifying cache. A second thread stores (to `<dir>/blob`) and hashes
//!   while the connection thread forwards, and the last byte goes out only once the digest named in
//!   the path matches; a mismatch closes the connection one byte short.
//! - `hash`: the same without storing: what verifying alone costs the client.
//! - `forward`: only forwards, as distribution's proxy does on the client's path (it neither stores
//!   nor verifies there; it stores the blob with a second, background fetch).
//!
//! A measurement for scripts/bench.sh (`floor proxy_blob_GET_MBps.*`), not a server: one client at
//! a time, no authentication, no ranges, errors end the process.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::sync_channel;

use portcullis_oci::Digest;
use portcullis_oci::digest::Hasher;

const PIECE: usize = 1024 * 1024;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, upstream, dir, mode] = args.as_slice() else {
        return Err("usage: fill_floor <listen> <upstream host:port> <dir> verify|hash|forward".into());
    };
    // Whether the last byte waits for the digest, and whether the blob is stored.
    let (verify, store) = match mode.as_str() {
        "verify" => (true, true),
        "hash" => (true, false),
        "forward" => (false, false),
        other => return Err(format!("unknown mode {other}").into()),
    };
    for client in TcpListener::bind(listen)?.incoming() {
        serve(client?, upstream, store.then_some(dir.as_str()), verify)?;
    }
    Ok(())
}

/// Reads an HTTP head: the request or status line, and `Content-Length` when there is one.
fn head(r: &mut impl BufRead) -> Res<(String, u64)> {
    let (mut first, mut len) = (String::new(), 0);
    r.read_line(&mut first)?;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 || line == "\r\n" {
            return Ok((first, len));
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            len = value.trim().parse()?;
        }
    }
}

/// Serves one client: stores into `dir` when given, hashes when verifying.
fn serve(client: TcpStream, upstream: &str, dir: Option<&str>, verify: bool) -> Res<()> {
    let mut out = client.try_clone()?;
    let (request, _) = head(&mut BufReader::new(client))?;
    let Some(path) = request.split_whitespace().nth(1).map(str::to_owned) else {
        return Ok(()); // closed without asking: a readiness probe
    };
    let digest: Digest =
        path.rsplit('/').next().unwrap_or_default().parse().map_err(|_| format!("no digest in {path}"))?;
    let mut up = TcpStream::connect(upstream)?;
    write!(up, "GET {path} HTTP/1.1\r\nHost: {upstream}\r\nConnection: close\r\n\r\n")?;
    let mut body = BufReader::with_capacity(PIECE, up);
    let (status, len) = head(&mut body)?;
    if !status.contains(" 200 ") || len == 0 {
        return Err(format!("upstream answered {status}").into());
    }
    write!(out, "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")?;
    // The store-and-hash thread, fed each piece once forwarded (a few MiB in flight at most); it
    // hands the buffers back for reuse.
    let (to_store, pieces) = sync_channel::<Vec<u8>>(4);
    let (give_back, spare) = sync_channel::<Vec<u8>>(8);
    let algorithm = digest.algorithm();
    let mut file = dir.map(|d| std::fs::File::create(format!("{d}/blob"))).transpose()?;
    let store = std::thread::spawn(move || -> std::io::Result<Digest> {
        let mut hasher = Hasher::new(algorithm);
        for piece in pieces {
            if let Some(file) = file.as_mut() {
                file.write_all(&piece)?;
            }
            if verify {
                hasher.update(&piece);
            }
            let _ = give_back.try_send(piece);
        }
        Ok(hasher.finish())
    });
    let (mut got, mut last) = (0u64, None);
    while got < len {
        let mut piece = spare.try_recv().unwrap_or_else(|_| vec![0u8; PIECE]);
        piece.resize(PIECE.min((len - got) as usize), 0);
        body.read_exact(&mut piece)?;
        got += piece.len() as u64;
        // Verifying, the last byte waits for the digest.
        let end = piece.len() - usize::from(got == len && verify);
        out.write_all(&piece[..end])?;
        last = piece.get(end).copied();
        to_store.send(piece)?;
    }
    drop(to_store);
    let stored = store.join().map_err(|_| "store thread panicked")??;
    if let Some(byte) = last
        && stored == digest
    {
        out.write_all(&[byte])?;
    }
    Ok(())
}
