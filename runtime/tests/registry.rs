//! The registry client against Debian's `docker-registry` (the distribution project's
//! registry) on a free local port, and against a small in-test HTTP server for the
//! failures a real registry does not produce on demand (corrupt or cut-off blobs).
//!
//! The registry process comes from support/local_registry.rs.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rcompose_runtime::image::import::host_architecture;
use rcompose_runtime::image::reference::{Digest, Reference};
use rcompose_runtime::image::registry::{
    pull, push, Platform, Progress, ProgressEvent, PullOptions, PullOutcome, RegistryClient,
    RegistryConfig, RegistryError,
};
use rcompose_runtime::image::store::{ChainId, ImageId, Store};
use tempfile::TempDir;

#[path = "support/local_registry.rs"]
mod local_registry;
use local_registry::{start_registry, BUSYBOX};

// ---------------------------------------------------------------------------------
// Images built in a store.

fn layer_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o755);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mtime(1_700_000_000);
        header.set_cksum();
        builder
            .append_data(&mut header, path, *content)
            .expect("append");
    }
    builder.into_inner().expect("tar")
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).expect("gzip");
    encoder.finish().expect("gzip")
}

enum Packing {
    Plain,
    Gzip,
    Zstd,
}

/// Stores the layers (each `(tar, packing)`) and a config for `arch`, tags `name`.
fn build_image(
    store: &Store,
    name: &Reference,
    arch: &str,
    layers: &[(Vec<u8>, Packing)],
) -> ImageId {
    let mut chains: Vec<ChainId> = Vec::new();
    let mut diff_ids = Vec::new();
    for (tar, packing) in layers {
        let blob = match packing {
            Packing::Plain => tar.clone(),
            Packing::Gzip => gzip(tar),
            Packing::Zstd => zstd::encode_all(&tar[..], 1).expect("zstd"),
        };
        let blob = store.put_blob_bytes(&blob).expect("put layer");
        let diff_id = Digest::sha256_of(tar);
        let chain = store
            .ensure_layer(&blob, &diff_id, chains.last())
            .expect("unpack layer");
        chains.push(chain);
        diff_ids.push(diff_id.to_string());
    }
    let config = serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/busybox", "sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = store
        .put_blob_bytes(&serde_json::to_vec(&config).expect("json"))
        .expect("put config");
    let id = store.add_image(&config, None, &chains).expect("add image");
    store.tag(name, &id).expect("tag");
    id
}

/// busybox, a gzip layer with a file, a zstd layer with another.
fn three_layer_image(store: &Store, name: &Reference, arch: &str) -> ImageId {
    let busybox = fs::read(BUSYBOX).expect("read busybox");
    build_image(
        store,
        name,
        arch,
        &[
            (layer_tar(&[("bin/busybox", &busybox)]), Packing::Plain),
            (
                layer_tar(&[("etc/greeting", b"hello from layer two\n")]),
                Packing::Gzip,
            ),
            (layer_tar(&[("etc/arch", arch.as_bytes())]), Packing::Zstd),
        ],
    )
}

fn new_store() -> (TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path().join("images")).expect("store");
    (dir, store)
}

fn client() -> RegistryClient {
    RegistryClient::new(RegistryConfig::default(), None).expect("client")
}

/// A file as the pulled image's merged filesystem shows it (top layer wins).
/// A pull for the host's platform, without progress.
async fn pull_plain(
    client: &RegistryClient,
    store: &Store,
    name: &Reference,
) -> Result<PullOutcome, RegistryError> {
    pull(
        client,
        store,
        name,
        &PullOptions::default(),
        &Progress::none(),
    )
    .await
}

fn image_file(store: &Store, name: &str, path: &str) -> Vec<u8> {
    let image = store.resolve(name).expect("image");
    for dir in store.layer_dirs(&image).expect("layers") {
        if let Ok(content) = fs::read(dir.join(path)) {
            return content;
        }
    }
    panic!("{path} is in no layer of {name}");
}

fn recorder() -> (Progress, Arc<Mutex<Vec<ProgressEvent>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let progress = Progress::new(move |event| sink.lock().expect("lock").push(event));
    (progress, events)
}

fn statuses(events: &Mutex<Vec<ProgressEvent>>) -> Vec<String> {
    events
        .lock()
        .expect("lock")
        .iter()
        .map(|event| format!("{}: {}", event.id, event.status))
        .collect()
}

// ---------------------------------------------------------------------------------
// Against docker-registry.

#[tokio::test(flavor = "multi_thread")]
async fn push_then_pull_round_trips_a_multi_layer_image() {
    let registry = start_registry(None);
    let name = registry.reference("test/app:1");
    let (_a, source) = new_store();
    let id = three_layer_image(&source, &name, host_architecture());

    let (progress, events) = recorder();
    let pushed = push(&client(), &source, &name, &progress)
        .await
        .expect("push");
    let seen = statuses(&events);
    assert_eq!(
        seen.iter().filter(|s| s.ends_with(": Pushed")).count(),
        3,
        "{seen:?}"
    );

    let (_b, target) = new_store();
    let (progress, events) = recorder();
    let pulled = pull(
        &client(),
        &target,
        &name,
        &PullOptions::default(),
        &progress,
    )
    .await
    .expect("pull");
    assert_eq!(
        pulled.id, id,
        "the image ID (config digest) survives the trip"
    );
    assert_eq!(pulled.manifest_digest, pushed.manifest_digest);
    assert!(pulled.updated);
    let seen = statuses(&events);
    assert_eq!(
        seen.iter()
            .filter(|s| s.ends_with(": Pull complete"))
            .count(),
        3,
        "{seen:?}"
    );

    let tag = name.to_string();
    assert_eq!(
        image_file(&target, &tag, "bin/busybox"),
        fs::read(BUSYBOX).expect("busybox")
    );
    assert_eq!(
        image_file(&target, &tag, "etc/greeting"),
        b"hello from layer two\n"
    );
    assert_eq!(
        image_file(&target, &tag, "etc/arch"),
        host_architecture().as_bytes()
    );

    // A second pull finds everything: no download, same image, "up to date".
    let (progress, events) = recorder();
    let again = pull(
        &client(),
        &target,
        &name,
        &PullOptions::default(),
        &progress,
    )
    .await
    .expect("pull again");
    assert!(!again.updated);
    let seen = statuses(&events);
    assert_eq!(
        seen.iter()
            .filter(|s| s.ends_with(": Already exists"))
            .count(),
        3,
        "{seen:?}"
    );

    // Pushing the pulled image elsewhere reuses its manifest and the registry's blobs.
    let copy = registry.reference("test/copy:1");
    target.tag(&copy, &id).expect("tag");
    let (progress, events) = recorder();
    let pushed_copy = push(&client(), &target, &copy, &progress)
        .await
        .expect("push copy");
    assert_eq!(pushed_copy.manifest_digest, pushed.manifest_digest);
    // Blobs are per repository in docker-registry, so they are uploaded again.
    assert!(!statuses(&events).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_multi_platform_index_pulls_the_wanted_platform() {
    let registry = start_registry(None);
    let (_a, source) = new_store();
    let amd = registry.reference("multi/app:amd64");
    let arm = registry.reference("multi/app:arm64");
    let amd_id = three_layer_image(&source, &amd, "amd64");
    let arm_id = three_layer_image(&source, &arm, "arm64");
    let amd_pushed = push(&client(), &source, &amd, &Progress::none())
        .await
        .expect("push");
    let arm_pushed = push(&client(), &source, &arm, &Progress::none())
        .await
        .expect("push");

    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": amd_pushed.manifest_digest.to_string(), "size": amd_pushed.size,
             "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": arm_pushed.manifest_digest.to_string(), "size": arm_pushed.size,
             "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
        ],
    });
    let url = format!("http://{}/v2/multi/app/manifests/latest", registry.host());
    let response = reqwest::Client::new()
        .put(&url)
        .header("Content-Type", "application/vnd.oci.image.index.v1+json")
        .body(serde_json::to_vec(&index).expect("json"))
        .send()
        .await
        .expect("put index");
    assert!(response.status().is_success(), "{}", response.status());

    let multi = registry.reference("multi/app:latest");
    let (_b, target) = new_store();
    let arm_options = PullOptions {
        platform: Some(Platform::parse("linux/arm64").expect("platform")),
        ..PullOptions::default()
    };
    let pulled = pull(&client(), &target, &multi, &arm_options, &Progress::none())
        .await
        .expect("pull arm64");
    assert_eq!(pulled.id, arm_id);
    assert_eq!(
        image_file(&target, &multi.to_string(), "etc/arch"),
        b"arm64"
    );

    let (_c, host_store) = new_store();
    let amd_options = PullOptions {
        platform: Some(Platform::parse("linux/amd64").expect("platform")),
        ..PullOptions::default()
    };
    let pulled = pull(
        &client(),
        &host_store,
        &multi,
        &amd_options,
        &Progress::none(),
    )
    .await
    .expect("pull amd64");
    assert_eq!(pulled.id, amd_id);

    let s390 = PullOptions {
        platform: Some(Platform::parse("linux/s390x").expect("platform")),
        ..PullOptions::default()
    };
    let err = pull(&client(), &host_store, &multi, &s390, &Progress::none())
        .await
        .expect_err("no s390x image");
    let text = err.to_string();
    assert!(
        text.contains("linux/s390x") && text.contains("linux/arm64/v8"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_tags_and_stopped_registries_are_explained() {
    let registry = start_registry(None);
    let (_a, store) = new_store();
    let absent = registry.reference("nothing/here:1");
    let err = pull_plain(&client(), &store, &absent)
        .await
        .expect_err("no such image");
    assert!(matches!(err, RegistryError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains(&absent.to_string()), "{err}");

    let err = push(&client(), &store, &absent, &Progress::none())
        .await
        .expect_err("nothing local");
    assert!(err.to_string().contains("does not exist locally"), "{err}");

    let port = registry.port;
    drop(registry);
    let gone = Reference::parse(&format!("127.0.0.1:{port}/app:1")).expect("reference");
    let err = pull_plain(&client(), &store, &gone)
        .await
        .expect_err("registry stopped");
    assert!(err.to_string().contains("connection refused"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_htpasswd_registry_needs_the_docker_config_credentials() {
    let registry = start_registry(Some(("alice", "wonderland")));
    let name = registry.reference("private/app:1");
    let (_a, source) = new_store();
    let id = three_layer_image(&source, &name, host_architecture());

    // Without credentials: a plain 401 message naming the image.
    let err = push(&client(), &source, &name, &Progress::none())
        .await
        .expect_err("anonymous push");
    let text = err.to_string();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{text}");
    assert!(
        text.contains("401") && text.contains(&name.to_string()),
        "{text}"
    );

    let docker_config = tempfile::tempdir().expect("tempdir");
    let write_auth = |user: &str, password: &str| {
        use base64::Engine as _;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        fs::write(
            docker_config.path().join("config.json"),
            format!(
                r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#,
                registry.host()
            ),
        )
        .expect("write config.json");
    };
    write_auth("alice", "wonderland");
    let with_login = RegistryClient::new(
        RegistryConfig::default(),
        Some(docker_config.path().to_path_buf()),
    )
    .expect("client");
    push(&with_login, &source, &name, &Progress::none())
        .await
        .expect("push with credentials");
    let (_b, target) = new_store();
    let pulled = pull_plain(&with_login, &target, &name)
        .await
        .expect("pull with credentials");
    assert_eq!(pulled.id, id);

    let err = pull_plain(&client(), &target, &name)
        .await
        .expect_err("anonymous pull");
    assert!(
        err.to_string().contains("no credentials were found"),
        "{err}"
    );

    write_auth("alice", "wrong");
    let wrong = RegistryClient::new(
        RegistryConfig::default(),
        Some(docker_config.path().to_path_buf()),
    )
    .expect("client");
    let err = pull_plain(&wrong, &target, &name)
        .await
        .expect_err("wrong password");
    assert!(
        err.to_string().contains("rejected the credentials"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mirror_serves_docker_hub_names() {
    let registry = start_registry(None);
    let (_a, source) = new_store();
    // Pushed under the path Docker Hub's `busybox` maps to.
    let local = registry.reference("library/busybox:latest");
    let id = three_layer_image(&source, &local, host_architecture());
    push(&client(), &source, &local, &Progress::none())
        .await
        .expect("push");

    let mirrored = RegistryClient::new(
        RegistryConfig {
            mirrors: vec![format!("http://{}", registry.host())],
            insecure: vec![],
        },
        None,
    )
    .expect("client");
    let (_b, target) = new_store();
    let hub = Reference::parse("busybox").expect("reference");
    let pulled = pull_plain(&mirrored, &target, &hub)
        .await
        .expect("pull through the mirror");
    assert_eq!(pulled.id, id);
    assert!(target.resolve("busybox:latest").is_ok());
}

// ---------------------------------------------------------------------------------
// Against a scripted server: corrupt and interrupted blobs.

/// How the scripted server behaves.
#[derive(Clone, Copy)]
enum BlobMode {
    /// Serves different bytes than the digest names.
    Corrupt,
    /// The first `n` blob requests send at most 4 KiB and then close.
    CutFirst(usize),
    /// Wants Basic credentials, and redirects blobs to a storage server on this port.
    RedirectTo(u16),
    /// Answers manifest requests with 429 and `Retry-After: 30`.
    RateLimited,
    /// Docker Hub's flow: a Bearer challenge, tokens from `/token`; the first token
    /// handed out is refused once on the blob (it "expired").
    Bearer,
}

struct Scripted {
    port: u16,
    /// Each layer blob request's `Range` start (0 without a range).
    range_starts: Arc<Mutex<Vec<u64>>>,
    /// Paths (with query) of the token requests.
    token_requests: Arc<Mutex<Vec<String>>>,
}

/// What the scripted servers read of a request.
struct Request {
    path: String,
    range: Option<u64>,
    authorized: bool,
    /// The `Authorization` header's value, lowercased.
    authorization: Option<String>,
}

/// A one-image registry: a manifest, a config and one big layer.
fn scripted_registry(layer: Vec<u8>, diff_id: Digest, mode: BlobMode) -> (Scripted, ImageId) {
    let layer_digest = Digest::sha256_of(&layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": host_architecture(), "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
    }))
    .expect("json");
    let config_digest = Digest::sha256_of(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "digest": config_digest.to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "digest": layer_digest.to_string(), "size": layer.len()}],
    }))
    .expect("json");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let range_starts = Arc::new(Mutex::new(Vec::new()));
    let starts = Arc::clone(&range_starts);
    let blob_requests = Arc::new(AtomicUsize::new(0));
    let image_id = ImageId::new(config_digest.clone());
    let token_requests = Arc::new(Mutex::new(Vec::new()));
    let tokens = Arc::clone(&token_requests);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (layer, config, manifest) = (layer.clone(), config.clone(), manifest.clone());
            let (layer_digest, config_digest) = (layer_digest.clone(), config_digest.clone());
            let (starts, blob_requests) = (Arc::clone(&starts), Arc::clone(&blob_requests));
            let tokens = Arc::clone(&tokens);
            std::thread::spawn(move || {
                let mut stream = stream;
                let Some(request) = read_request(&stream) else {
                    // Not HTTP (a TLS hello): answer as Go's server does.
                    respond(&mut stream, "400 Bad Request", b"", "");
                    return;
                };
                let path = request.path.as_str();
                if matches!(mode, BlobMode::Bearer) {
                    if let Some(query) = path.strip_prefix("/token?") {
                        let mut tokens = tokens.lock().expect("lock");
                        tokens.push(query.to_owned());
                        let token = format!(r#"{{"token":"tok{}"}}"#, tokens.len());
                        respond(&mut stream, "200 OK", token.as_bytes(), "");
                        return;
                    }
                    let expired = request.authorization.as_deref() == Some("bearer tok1")
                        && path.ends_with(&layer_digest.to_string());
                    let valid = request
                        .authorization
                        .as_deref()
                        .is_some_and(|value| value.starts_with("bearer tok"));
                    if expired || !valid {
                        let port = stream.local_addr().map(|a| a.port()).unwrap_or(0);
                        let challenge = format!("WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"scripted\"\r\n");
                        respond(&mut stream, "401 Unauthorized", b"", &challenge);
                        return;
                    }
                }
                if matches!(mode, BlobMode::RedirectTo(_)) && !request.authorized {
                    let challenge = "WWW-Authenticate: Basic realm=\"scripted\"\r\n";
                    respond(&mut stream, "401 Unauthorized", b"", challenge);
                } else if path == "/v2/" {
                    respond(&mut stream, "200 OK", b"{}", "");
                } else if path.contains("/manifests/") {
                    if matches!(mode, BlobMode::RateLimited) {
                        respond(
                            &mut stream,
                            "429 Too Many Requests",
                            b"",
                            "Retry-After: 30\r\n",
                        );
                    } else {
                        respond(&mut stream, "200 OK", &manifest, "Content-Type: application/vnd.docker.distribution.manifest.v2+json\r\n");
                    }
                } else if path.ends_with(&config_digest.to_string()) {
                    respond(&mut stream, "200 OK", &config, "");
                } else if path.ends_with(&layer_digest.to_string()) {
                    let start = request.range.unwrap_or(0);
                    starts.lock().expect("lock").push(start);
                    let count = blob_requests.fetch_add(1, Ordering::SeqCst) + 1;
                    serve_layer(&mut stream, &layer, start, mode, count);
                } else {
                    respond(
                        &mut stream,
                        "404 Not Found",
                        br#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}"#,
                        "",
                    );
                }
            });
        }
    });
    (
        Scripted {
            port,
            range_starts,
            token_requests,
        },
        image_id,
    )
}

/// A blob storage server (as S3 behind Docker Hub): serves `blob` at any path and
/// records whether each request carried an `Authorization` header.
fn storage_server(blob: Vec<u8>) -> (u16, Arc<Mutex<Vec<bool>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            if let Some(request) = read_request(&stream) {
                record.lock().expect("lock").push(request.authorized);
                respond(&mut stream, "200 OK", &blob, "");
            }
        }
    });
    (port, seen)
}

fn serve_layer(stream: &mut TcpStream, layer: &[u8], start: u64, mode: BlobMode, count: usize) {
    let start = usize::try_from(start).unwrap_or(0).min(layer.len());
    match mode {
        BlobMode::Corrupt => {
            let mut bad = layer.to_vec();
            if let Some(byte) = bad.last_mut() {
                *byte ^= 0xff;
            }
            respond(stream, "200 OK", &bad, "");
        }
        BlobMode::RedirectTo(port) => {
            let location = format!("Location: http://127.0.0.1:{port}/storage/blob\r\n");
            respond(stream, "307 Temporary Redirect", b"", &location);
        }
        BlobMode::CutFirst(cuts) => {
            let rest = &layer[start..];
            let status = if start > 0 {
                "206 Partial Content"
            } else {
                "200 OK"
            };
            let range = if start > 0 {
                format!(
                    "Content-Range: bytes {start}-{}/{}\r\n",
                    layer.len() - 1,
                    layer.len()
                )
            } else {
                String::new()
            };
            if count <= cuts {
                // Promise everything, send a little, hang up.
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\n{range}Connection: close\r\n\r\n",
                    rest.len(),
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&rest[..rest.len().min(4096)]);
                let _ = stream.flush();
            } else {
                respond(stream, status, rest, &range);
            }
        }
        BlobMode::RateLimited | BlobMode::Bearer => respond(stream, "200 OK", layer, ""),
    }
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    let mut reader = stream;
    while !head.ends_with(b"\r\n\r\n") {
        if reader.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
        if head.len() == 3 && !head.iter().all(u8::is_ascii_uppercase) {
            return None;
        }
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let path = text.split_whitespace().nth(1)?.to_owned();
    let range = text
        .lines()
        .find_map(|line| line.strip_prefix("range: bytes="))
        .and_then(|value| value.trim_end_matches('-').parse().ok());
    let authorization = text
        .lines()
        .find_map(|line| line.strip_prefix("authorization:"))
        .map(|value| value.trim().to_owned());
    Some(Request {
        path,
        range,
        authorized: authorization.is_some(),
        authorization,
    })
}

/// Writes a whole response; `extra` holds further header lines.
fn respond(stream: &mut TcpStream, status: &str, body: &[u8], extra: &str) {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len(),
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    let _ = stream.flush();
}

/// A ~1 MiB gzip layer (incompressible content, so it stays big).
fn big_layer() -> (Vec<u8>, Digest) {
    let mut content = Vec::with_capacity(1 << 20);
    let mut state: u32 = 12345;
    for _ in 0..(1 << 20) {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
        content.push((state >> 16) as u8);
    }
    let tar = layer_tar(&[("data/random.bin", &content)]);
    (gzip(&tar), Digest::sha256_of(&tar))
}

fn partial_files(store_root: &Path) -> Vec<PathBuf> {
    fs::read_dir(store_root.join("blobs/sha256"))
        .expect("list blobs")
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name().is_some_and(|name| {
                name.to_string_lossy().starts_with(".tmp-partial-")
                    && !name.to_string_lossy().ends_with(".lock")
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_blob_is_refused_and_nothing_is_kept() {
    let (layer, diff_id) = big_layer();
    let layer_digest = Digest::sha256_of(&layer);
    let (server, _) = scripted_registry(layer, diff_id, BlobMode::Corrupt);
    let (dir, store) = new_store();
    let name = Reference::parse(&format!("127.0.0.1:{}/corrupt/app:1", server.port)).expect("ref");
    let err = pull_plain(&client(), &store, &name)
        .await
        .expect_err("corrupt blob");
    let text = err.to_string();
    assert!(
        matches!(err, RegistryError::DigestMismatch { .. }),
        "{text}"
    );
    assert!(
        text.contains(&layer_digest.to_string()) && text.contains(&name.to_string()),
        "{text}"
    );
    assert!(!store.has_blob(&layer_digest));
    assert!(
        store.resolve(&name.to_string()).is_err(),
        "no image is tagged"
    );
    assert!(
        partial_files(&dir.path().join("images")).is_empty(),
        "corrupt bytes are not kept for resuming"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_download_resumes_where_it_stopped() {
    let (layer, diff_id) = big_layer();
    let layer_len = layer.len() as u64;
    // Two cuts: the pull retries with ranges and completes in one go.
    let (server, id) = scripted_registry(layer, diff_id, BlobMode::CutFirst(2));
    let (_dir, store) = new_store();
    let name = Reference::parse(&format!("127.0.0.1:{}/flaky/app:1", server.port)).expect("ref");
    let (progress, events) = recorder();
    let pulled = pull(&client(), &store, &name, &PullOptions::default(), &progress)
        .await
        .expect("pull despite cuts");
    assert_eq!(pulled.id, id);
    let starts = server.range_starts.lock().expect("lock").clone();
    assert_eq!(
        starts,
        vec![0, 4096, 8192],
        "each retry asks only for the rest"
    );
    assert!(statuses(&events).iter().any(|s| s.contains("Retrying")));
    assert!(layer_len > 8192);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_pull_leaves_no_image_and_the_next_one_reuses_the_partial_blob() {
    let (layer, diff_id) = big_layer();
    // More cuts than one pull's attempts: the first pull fails.
    let (server, id) = scripted_registry(layer, diff_id, BlobMode::CutFirst(4));
    let (dir, store) = new_store();
    let name = Reference::parse(&format!("127.0.0.1:{}/flaky/app:1", server.port)).expect("ref");
    let err = pull_plain(&client(), &store, &name)
        .await
        .expect_err("every attempt is cut");
    assert!(matches!(err, RegistryError::Interrupted { .. }), "{err}");
    assert!(err.to_string().contains(&name.to_string()), "{err}");
    assert!(
        store.resolve(&name.to_string()).is_err(),
        "no broken image is tagged"
    );
    assert!(
        store.images().expect("images").is_empty(),
        "no image record either"
    );
    assert_eq!(
        partial_files(&dir.path().join("images")).len(),
        1,
        "the verified prefix is kept"
    );

    let pulled = pull_plain(&client(), &store, &name)
        .await
        .expect("second pull");
    assert_eq!(pulled.id, id);
    let starts = server.range_starts.lock().expect("lock").clone();
    assert_eq!(starts.len(), 5);
    assert_eq!(
        starts[4],
        4 * 4096,
        "the second pull continues after the kept bytes"
    );
    assert!(partial_files(&dir.path().join("images")).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn blob_redirects_to_another_host_carry_no_credentials() {
    let (layer, diff_id) = big_layer();
    let (storage_port, storage_auth) = storage_server(layer.clone());
    let (server, id) = scripted_registry(layer, diff_id, BlobMode::RedirectTo(storage_port));
    let host = format!("127.0.0.1:{}", server.port);
    let docker_config = tempfile::tempdir().expect("tempdir");
    fs::write(
        docker_config.path().join("config.json"),
        // "user:secret"
        format!(r#"{{"auths": {{"{host}": {{"auth": "dXNlcjpzZWNyZXQ="}}}}}}"#),
    )
    .expect("write config.json");
    let client = RegistryClient::new(
        RegistryConfig::default(),
        Some(docker_config.path().to_path_buf()),
    )
    .expect("client");
    let (_dir, store) = new_store();
    let name = Reference::parse(&format!("{host}/redirected/app:1")).expect("ref");
    let pulled = pull_plain(&client, &store, &name)
        .await
        .expect("pull through the redirect");
    assert_eq!(pulled.id, id);
    let seen = storage_auth.lock().expect("lock").clone();
    assert_eq!(
        seen,
        vec![false],
        "the storage host never sees the registry password"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limit_is_explained_with_its_retry_time() {
    let (layer, diff_id) = big_layer();
    let (server, _) = scripted_registry(layer, diff_id, BlobMode::RateLimited);
    let (_dir, store) = new_store();
    let name = Reference::parse(&format!("127.0.0.1:{}/busy/app:1", server.port)).expect("ref");
    let err = pull_plain(&client(), &store, &name)
        .await
        .expect_err("rate limited");
    let text = err.to_string();
    assert!(matches!(err, RegistryError::RateLimited { .. }), "{text}");
    assert!(
        text.contains("429") && text.contains("retry after 30 seconds"),
        "{text}"
    );
    assert!(text.contains(&name.to_string()), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_tokens_are_fetched_for_the_repository_scope_and_renewed() {
    let (layer, diff_id) = big_layer();
    let (server, id) = scripted_registry(layer, diff_id, BlobMode::Bearer);
    let (_dir, store) = new_store();
    let name = Reference::parse(&format!("127.0.0.1:{}/library/app:1", server.port)).expect("ref");
    let pulled = pull_plain(&client(), &store, &name)
        .await
        .expect("anonymous bearer pull");
    assert_eq!(pulled.id, id);
    let requests = server.token_requests.lock().expect("lock").clone();
    assert_eq!(
        requests.len(),
        2,
        "one token, then one renewal after the 401: {requests:?}"
    );
    for query in &requests {
        assert!(
            query.contains("scope=repository%3alibrary%2fapp%3apull"),
            "{query}"
        );
        assert!(query.contains("service=scripted"), "{query}");
    }
}
