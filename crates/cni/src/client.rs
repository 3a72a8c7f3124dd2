//! The plugin's side of the agent socket: blocking, one request per connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::error::{CniError, code};
use crate::protocol::{self, MAX_MESSAGE_BYTES, Request, Response};

/// How long the plugin waits for the agent to finish one request. Runtimes have their own,
/// longer deadlines; the agent answers in milliseconds unless it is stuck.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Sends `request` to the agent at `socket` and returns its answer. An agent that is not
/// listening gives code 11 (try again later): it may be restarting.
pub fn call(socket: &Path, request: &Request) -> Result<Response, CniError> {
    let mut stream = UnixStream::connect(socket).map_err(|e| {
        CniError::new(code::TRY_AGAIN_LATER, format!("cilia agent is not reachable at {}", socket.display()))
            .with_details(e.to_string())
    })?;
    let io_err = |what: &str, e: std::io::Error| {
        CniError::new(code::TRY_AGAIN_LATER, format!("{what} cilia agent at {}", socket.display()))
            .with_details(e.to_string())
    };
    stream.set_read_timeout(Some(REQUEST_TIMEOUT)).map_err(|e| io_err("configuring socket to", e))?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT)).map_err(|e| io_err("configuring socket to", e))?;
    stream.write_all(&protocol::encode(request)).map_err(|e| io_err("sending request to", e))?;
    let mut line = Vec::new();
    BufReader::new(stream.take(MAX_MESSAGE_BYTES as u64))
        .read_until(b'\n', &mut line)
        .map_err(|e| io_err("reading answer of", e))?;
    if line.is_empty() {
        return Err(CniError::new(
            code::TRY_AGAIN_LATER,
            format!("cilia agent at {} closed the connection without answering", socket.display()),
        ));
    }
    serde_json::from_slice(&line).map_err(|e| {
        CniError::new(code::PROTOCOL_ERROR, "cannot decode the cilia agent's answer").with_details(e.to_string())
    })
}
