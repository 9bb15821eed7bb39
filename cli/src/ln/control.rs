//! The control socket of `xswap ln serve`: one JSON request per connection, one JSON answer
//! (`{"ok": true, "result": ...}` or `{"ok": false, "error": "...", "exit": N}`), then the
//! connection closes. The socket lives in the node's directory (mode 0700) and is itself
//! mode 0600: only the installation's owner talks to the node.

use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::cmd::{self, Request};
use super::{Ctx, LnCliError};

/// Largest request accepted (an invoice is well below).
const MAX_REQUEST: u64 = 64 * 1024;

/// Sends `req` to the `serve` listening on `socket`. `Ok(None)`: none listens there (no
/// socket, or a stale one left by a process that died).
pub(crate) async fn ask(socket: &Path, req: &Request) -> Result<Option<Value>, LnCliError> {
    let mut stream = match UnixStream::connect(socket).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(LnCliError::Control(format!("{}: {e}", socket.display()))),
    };
    let io = |e: std::io::Error| LnCliError::Control(e.to_string());
    let mut line = serde_json::to_vec(req).map_err(|e| LnCliError::Control(e.to_string()))?;
    line.push(b'\n');
    stream.write_all(&line).await.map_err(io)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.map_err(io)?;
    let answer: Value = serde_json::from_slice(&answer)
        .map_err(|e| LnCliError::Control(format!("answer of `xswap ln serve`: {e}")))?;
    if answer["ok"] == json!(true) {
        return Ok(Some(answer["result"].clone()));
    }
    Err(LnCliError::Remote {
        message: answer["error"]
            .as_str()
            .unwrap_or("`xswap ln serve` failed")
            .to_owned(),
        exit: answer["exit"]
            .as_i64()
            .and_then(|e| i32::try_from(e).ok())
            .unwrap_or(1),
    })
}

/// Binds the control socket (a stale one is removed: the caller holds the node's lock, so
/// no other process serves it) with mode 0600.
pub(crate) fn bind(socket: &Path) -> Result<UnixListener, LnCliError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |e: std::io::Error| LnCliError::Control(format!("{}: {e}", socket.display()));
    match std::fs::remove_file(socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let listener = UnixListener::bind(socket).map_err(io)?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    Ok(listener)
}

/// Answers one connection: reads its request, runs it on `node`, writes the answer.
pub(crate) async fn answer(stream: UnixStream, node: Arc<ln_adapter::LnNode>, ctx: Arc<Ctx>) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let read = BufReader::new(read)
        .take(MAX_REQUEST)
        .read_line(&mut line)
        .await;
    let answer = match read {
        Err(e) => json!({"ok": false, "error": format!("reading the request: {e}"), "exit": 1}),
        Ok(_) => match serde_json::from_str::<Request>(&line) {
            Err(e) => json!({"ok": false, "error": format!("bad request: {e}"), "exit": 2}),
            Ok(req) => match cmd::exec(&node, &ctx, req).await {
                Ok(v) => json!({"ok": true, "result": v}),
                Err(e) => json!({"ok": false, "error": e.to_string(), "exit": e.exit_code()}),
            },
        },
    };
    let mut bytes = answer.to_string().into_bytes();
    bytes.push(b'\n');
    // The asker may have gone (its terminal closed): nothing to do about it.
    let _ = write.write_all(&bytes).await;
    let _ = write.shutdown().await;
}
