//! Listen and upstream addresses: `HOST:PORT` for TCP or `unix:/path` for a Unix socket.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

/// Where to listen or connect.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Addr {
    /// A TCP address, already resolved (host names such as `api01` are looked up when parsing).
    Tcp(SocketAddr),
    /// A Unix domain socket path.
    Unix(PathBuf),
}

/// Why an address text was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddrError {
    /// The text was empty.
    Empty,
    /// `unix:` with no path after it.
    EmptyUnixPath,
    /// Not `HOST:PORT`: no port, or a port that is not a number from 0 to 65535.
    BadPort(String),
    /// The host name did not resolve to any address.
    Unresolved(String),
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrError::Empty => write!(f, "empty address"),
            AddrError::EmptyUnixPath => write!(f, "unix: address without a path"),
            AddrError::BadPort(text) => {
                write!(f, "{text:?} is not HOST:PORT or unix:/path")
            }
            AddrError::Unresolved(text) => write!(f, "cannot resolve host of {text:?}"),
        }
    }
}

impl std::error::Error for AddrError {}

impl Addr {
    /// Parses `HOST:PORT` (host name, IPv4 or `[IPv6]` literal) or `unix:/path`. Host names
    /// are resolved now; the first address returned wins, as a connecting client would do.
    pub fn parse(text: &str) -> Result<Addr, AddrError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(AddrError::Empty);
        }
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(AddrError::EmptyUnixPath);
            }
            return Ok(Addr::Unix(PathBuf::from(path)));
        }
        if let Ok(socket_addr) = text.parse::<SocketAddr>() {
            return Ok(Addr::Tcp(socket_addr));
        }
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| AddrError::BadPort(text.into()))?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(AddrError::BadPort(text.into()));
        }
        let mut resolved = text
            .to_socket_addrs()
            .map_err(|_| AddrError::Unresolved(text.into()))?;
        resolved
            .next()
            .map(Addr::Tcp)
            .ok_or_else(|| AddrError::Unresolved(text.into()))
    }

    /// Parses a comma-separated list, ignoring empty items (so a trailing comma is harmless).
    pub fn parse_list(text: &str) -> Result<Vec<Addr>, AddrError> {
        text.split(',')
            .filter(|item| !item.trim().is_empty())
            .map(Addr::parse)
            .collect()
    }
}

impl std::str::FromStr for Addr {
    type Err = AddrError;

    fn from_str(text: &str) -> Result<Addr, AddrError> {
        Addr::parse(text)
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Tcp(socket_addr) => write!(f, "{socket_addr}"),
            Addr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Formats addresses as a comma-separated list, the form the startup line uses.
pub fn join_addrs(addrs: &[Addr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, expected: Result<&str, AddrError>) {
        let parsed = Addr::parse(input);
        match (&parsed, &expected) {
            (Ok(addr), Ok(text)) => {
                assert_eq!(addr.to_string(), *text, "input {input:?}");
                // Display must round-trip through parse.
                assert_eq!(Addr::parse(&addr.to_string()).as_ref(), Ok(addr));
            }
            _ => assert_eq!(parsed.map(|a| a.to_string()), expected.map(String::from)),
        }
    }

    #[test]
    fn parse_table() {
        check("127.0.0.1:9999", Ok("127.0.0.1:9999"));
        check("0.0.0.0:80", Ok("0.0.0.0:80"));
        check("[::1]:80", Ok("[::1]:80"));
        check(" 127.0.0.1:1 ", Ok("127.0.0.1:1"));
        check("localhost:8080", Ok("127.0.0.1:8080"));
        check("unix:/tmp/api.sock", Ok("unix:/tmp/api.sock"));
        check("unix:relative.sock", Ok("unix:relative.sock"));
        check("", Err(AddrError::Empty));
        check("unix:", Err(AddrError::EmptyUnixPath));
        check("127.0.0.1", Err(AddrError::BadPort("127.0.0.1".into())));
        check(
            "host:notaport",
            Err(AddrError::BadPort("host:notaport".into())),
        );
        check(":80", Err(AddrError::BadPort(":80".into())));
        check(
            "127.0.0.1:70000",
            Err(AddrError::BadPort("127.0.0.1:70000".into())),
        );
        check(
            "no-such-host.invalid:80",
            Err(AddrError::Unresolved("no-such-host.invalid:80".into())),
        );
    }

    #[test]
    fn list_table() {
        #[track_caller]
        fn check_list(input: &str, expected: &[&str]) {
            let parsed = Addr::parse_list(input).expect("valid list");
            let texts: Vec<String> = parsed.iter().map(ToString::to_string).collect();
            assert_eq!(texts, expected);
            assert_eq!(join_addrs(&parsed), expected.join(","));
        }
        check_list("127.0.0.1:1,unix:/a.sock", &["127.0.0.1:1", "unix:/a.sock"]);
        check_list("127.0.0.1:1,", &["127.0.0.1:1"]);
        check_list("", &[]);
        assert!(Addr::parse_list("127.0.0.1:1,bad").is_err());
    }
}
