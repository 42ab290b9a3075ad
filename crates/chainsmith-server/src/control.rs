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

/// Control connections served at once (requests in flight and open monitors); one more is
/// answered `{"kind": "busy"}` and closed. The faces open one each (a monitor, a connection
/// test's watch, a `publish`), so this is far above real use, and it keeps a local process
/// that opens connections and never hangs up from growing the server without bound.
pub const MAX_CONTROL_CONNECTIONS: usize = 64;

/// How long a connection may take to send its request line before it is closed: a client
/// that connects and says nothing must not hold one of [`MAX_CONTROL_CONNECTIONS`].
pub const REQUEST_LINE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

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
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONTROL_CONNECTIONS));
    loop {
        let (stream, _) = listener.accept().await?;
        let handle = handle.clone();
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tokio::spawn(async move {
                let (_, mut w) = stream.into_split();
                let msg = serde_json::json!({ "error": format!(
                    "the server is serving {MAX_CONTROL_CONNECTIONS} control connections already; close a monitor and try again"
                ), "kind": "busy" });
                let _ = write_line(&mut w, &msg).await;
            });
            continue;
        };
        tokio::spawn(async move {
            let _ = one_request(stream, handle).await;
            drop(slot);
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
    let mut reader = BufReader::new(r.take(MAX_REQUEST_BYTES + 1));
    let read = reader.read_until(b'\n', &mut line);
    if tokio::time::timeout(REQUEST_LINE_TIMEOUT, read)
        .await
        .is_err()
    {
        return Ok(());
    }
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
    // A client says nothing after its request line: the read ending is its hang-up, which
    // ends the request (a monitor of a quiet server would otherwise hold its slot forever).
    let hang_up = async move {
        let mut sink = [0u8; 512];
        let mut rest = reader.into_inner().into_inner();
        while matches!(rest.read(&mut sink).await, Ok(n) if n > 0) {}
    };
    tokio::select! {
        done = handle(line, w) => done,
        () = hang_up => Ok(()),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Past [`MAX_CONTROL_CONNECTIONS`] open connections (here monitors that never end), one
    /// more is told the server is busy; once one closes, the next is served again.
    #[tokio::test]
    async fn connections_past_the_limit_are_told_busy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let server = tokio::spawn(serve(path.clone(), |_line, mut w| async move {
            write_line(&mut w, &serde_json::json!({ "ok": true })).await?;
            // A monitor: holds the connection until the client hangs up.
            std::future::pending::<()>().await;
            Ok(())
        }));
        while !path.exists() {
            tokio::task::yield_now().await;
        }
        let mut open = Vec::new();
        for _ in 0..MAX_CONTROL_CONNECTIONS {
            let mut s = UnixStream::connect(&path).await.unwrap();
            s.write_all(b"{}\n").await.unwrap();
            let mut first = String::new();
            let mut r = BufReader::new(s);
            r.read_line(&mut first).await.unwrap();
            assert!(first.contains("\"ok\""), "{first}");
            open.push(r);
        }
        let answer = call(&path, &serde_json::json!({})).await.unwrap();
        assert!(
            answer
                .as_ref()
                .is_err_and(|e| e.contains("control connections already")),
            "{answer:?}"
        );
        // A monitor whose client hangs up gives its slot back, though it never writes again.
        drop(open.pop());
        let mut served = false;
        for _ in 0..1000 {
            if call(&path, &serde_json::json!({})).await.unwrap().is_ok() {
                served = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(served, "the slot of a closed monitor never came back");
        server.abort();
    }
}
