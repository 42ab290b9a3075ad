//! The local control channel of a running server (`hub serve`, `aws serve`): a Unix socket in
//! the workspace, mode 0600, so only its owner can drive the server. Each client sends one
//! JSON request line; the server answers with one JSON line, or streams lines (a monitor)
//! until the client hangs up. The faces (`hub c2d`, `aws publish`, …) are clients.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};

/// The longest request line a server reads. The largest real requests are an IoT Hub C2D body
/// (64 KB), a direct-method payload or an AWS publish (128 KB each), which JSON escaping can
/// grow a few times over.
pub const MAX_REQUEST_BYTES: u64 = 1024 * 1024;

/// Serve the control socket at `path` until the task is dropped: each connection's request
/// line (at most [`MAX_REQUEST_BYTES`]) goes to `handle` with the connection's writing half.
/// A line over the limit is answered here with `{"error": …, "kind": "too-large"}`.
pub async fn serve<F, Fut>(path: PathBuf, handle: F) -> std::io::Result<()>
where
    F: Fn(Vec<u8>, OwnedWriteHalf) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = std::io::Result<()>> + Send + 'static,
{
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    loop {
        let (stream, _) = listener.accept().await?;
        let handle = handle.clone();
        tokio::spawn(async move {
            let _ = one_request(stream, handle).await;
        });
    }
}

async fn one_request<F, Fut>(stream: UnixStream, handle: F) -> std::io::Result<()>
where
    F: Fn(Vec<u8>, OwnedWriteHalf) -> Fut,
    Fut: Future<Output = std::io::Result<()>>,
{
    let (r, mut w) = stream.into_split();
    // One byte more than the cap tells an over-long line from one that just fits.
    let mut line = Vec::new();
    BufReader::new(r.take(MAX_REQUEST_BYTES + 1))
        .read_until(b'\n', &mut line)
        .await?;
    if line.is_empty() {
        return Ok(());
    }
    if line.len() as u64 > MAX_REQUEST_BYTES {
        let msg = serde_json::json!({ "error": format!(
            "request is longer than {} MiB; the control channel takes one JSON request per line, at most that long",
            MAX_REQUEST_BYTES / (1024 * 1024)
        ), "kind": "too-large" });
        return write_line(&mut w, &msg).await;
    }
    handle(line, w).await
}

/// Write one JSON answer line.
pub async fn write_line(w: &mut OwnedWriteHalf, v: &serde_json::Value) -> std::io::Result<()> {
    w.write_all(format!("{v}\n").as_bytes()).await
}

/// Why a running server could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answers at the control socket (the path, what the system said).
    #[error("cannot reach {0}: {1}")]
    NotRunning(String, String),
    /// The channel broke mid-request, or an answer line is not JSON.
    #[error("control channel: {0}")]
    Io(String),
}

/// Send one request line to the server at `path`; `on_line` gets every answer line and
/// returns false to stop reading.
pub async fn request(
    path: &Path,
    req: &serde_json::Value,
    mut on_line: impl FnMut(serde_json::Value) -> bool,
) -> Result<(), ClientError> {
    let mut s = UnixStream::connect(path)
        .await
        .map_err(|e| ClientError::NotRunning(path.display().to_string(), e.to_string()))?;
    s.write_all(format!("{req}\n").as_bytes())
        .await
        .map_err(|e| ClientError::Io(e.to_string()))?;
    let mut lines = BufReader::new(s).lines();
    while let Some(l) = lines
        .next_line()
        .await
        .map_err(|e| ClientError::Io(e.to_string()))?
    {
        let v: serde_json::Value =
            serde_json::from_str(&l).map_err(|e| ClientError::Io(e.to_string()))?;
        if !on_line(v) {
            break;
        }
    }
    Ok(())
}

/// Send one request and return its single answer: `Ok(Ok(value))` for `{"ok": value}`,
/// `Ok(Err(message))` for the server's `{"error": message}`.
pub async fn call(
    path: &Path,
    req: &serde_json::Value,
) -> Result<Result<serde_json::Value, String>, ClientError> {
    let mut answer = None;
    request(path, req, |v| {
        answer = Some(v);
        false
    })
    .await?;
    let mut v =
        answer.ok_or_else(|| ClientError::Io("the server closed without answering".into()))?;
    if let Some(ok) = v.get_mut("ok") {
        return Ok(Ok(ok.take()));
    }
    Ok(Err(v["error"]
        .as_str()
        .map_or_else(|| v.to_string(), str::to_string)))
}

/// Send a streaming request (a monitor): `on_ready` runs once, at the server's `{"ok": …}`
/// line (it has subscribed: every event after it is streamed); each later line goes to
/// `on_event`, which returns false to stop. `Ok(Some(message))` when the server refused.
pub async fn stream(
    path: &Path,
    req: &serde_json::Value,
    on_ready: impl FnOnce(),
    mut on_event: impl FnMut(serde_json::Value) -> bool,
) -> Result<Option<String>, ClientError> {
    let mut on_ready = Some(on_ready);
    let mut refused = None;
    request(path, req, |v| {
        if v.get("ok").is_some() {
            if let Some(f) = on_ready.take() {
                f();
            }
            return true;
        }
        if let Some(e) = v.get("error") {
            refused = Some(e.as_str().map_or_else(|| e.to_string(), str::to_string));
            return false;
        }
        on_event(v)
    })
    .await?;
    Ok(refused)
}
