//! The CLI's side of the API: one HTTP/1.1 request per connection (`connection:
//! close`), over the agent's Unix socket or, with `--endpoint`, over TCP with a bearer
//! token. Blocking and small: a command makes a handful of calls.

use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::PathBuf,
    time::Duration,
};

use serde_json::Value;

/// How long a call may take (an apply of a large document included).
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the agent's API is.
#[derive(Debug, Clone)]
pub enum Endpoint {
    Socket(PathBuf),
    Tcp { addr: String, token: String },
}

/// An answer of the API: the status, Lattice's error type when it is an error, and
/// the JSON body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub error_type: Option<String>,
    pub body: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the agent's API at {endpoint}: {source} (is `lattice-agent run` running, and are you root?)")]
    Connect {
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
    #[error("talking to the agent's API: {0}")]
    Io(#[from] std::io::Error),
    #[error("the agent's API answered something that is not HTTP/JSON: {0}")]
    Malformed(String),
}

impl Endpoint {
    fn describe(&self) -> String {
        match self {
            Endpoint::Socket(p) => p.display().to_string(),
            Endpoint::Tcp { addr, .. } => addr.clone(),
        }
    }

    /// One call: `method path` with an optional JSON body and extra headers.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<Answer, ClientError> {
        let connect = |source| ClientError::Connect {
            endpoint: self.describe(),
            source,
        };
        let body = body.map(|b| serde_json::to_vec(b).unwrap_or_default());
        let mut head =
            format!("{method} {path} HTTP/1.1\r\nhost: lattice\r\nconnection: close\r\n");
        if let Endpoint::Tcp { token, .. } = self {
            head.push_str(&format!("authorization: Bearer {token}\r\n"));
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(b) = &body {
            head.push_str(&format!(
                "content-type: application/json\r\ncontent-length: {}\r\n",
                b.len()
            ));
        }
        head.push_str("\r\n");
        let mut request = head.into_bytes();
        request.extend(body.unwrap_or_default());
        let response = match self {
            Endpoint::Socket(path) => {
                let mut s = UnixStream::connect(path).map_err(connect)?;
                s.set_read_timeout(Some(CALL_TIMEOUT))?;
                exchange(&mut s, &request)?
            }
            Endpoint::Tcp { addr, .. } => {
                let mut s = std::net::TcpStream::connect(addr).map_err(connect)?;
                s.set_read_timeout(Some(CALL_TIMEOUT))?;
                exchange(&mut s, &request)?
            }
        };
        parse(&response)
    }
}

fn exchange<S: Read + Write>(stream: &mut S, request: &[u8]) -> Result<Vec<u8>, ClientError> {
    stream.write_all(request)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    Ok(response)
}

/// Splits a whole `connection: close` response into status, error type and body
/// (content-length or up to the end; the agent never chunks a closing response body
/// that it knows the length of).
fn parse(response: &[u8]) -> Result<Answer, ClientError> {
    let malformed = || {
        ClientError::Malformed(
            String::from_utf8_lossy(&response[..response.len().min(200)]).into_owned(),
        )
    };
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(malformed)?;
    let head = std::str::from_utf8(&response[..split]).map_err(|_| malformed())?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(malformed)?;
    let mut error_type = None;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        match name.trim().to_ascii_lowercase().as_str() {
            "x-amzn-errortype" => error_type = Some(value.trim().to_owned()),
            "content-length" => length = value.trim().parse::<usize>().ok(),
            _ => {}
        }
    }
    let rest = &response[split + 4..];
    let body = &rest[..length.unwrap_or(rest.len()).min(rest.len())];
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(body).map_err(|_| malformed())?
    };
    Ok(Answer {
        status,
        error_type,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_answers_and_errors() {
        let ok = parse(b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\n{\"a\": 1}").unwrap();
        assert_eq!((ok.status, ok.body["a"].as_u64()), (200, Some(1)));
        let err = parse(
            b"HTTP/1.1 404 Not Found\r\nx-amzn-errortype: ResourceNotFoundException\r\n\r\n{}",
        )
        .unwrap();
        assert_eq!(err.error_type.as_deref(), Some("ResourceNotFoundException"));
        assert!(parse(b"garbage").is_err());
    }
}
