//! Broker addresses as users write them: `mqtt://HOST[:PORT]` (also `tcp://`, or a bare
//! `HOST[:PORT]`), the port defaulting to 1883. IPv6 hosts go in brackets: `mqtt://[::1]:1883`.

use std::fmt;
use std::str::FromStr;

/// The default MQTT port.
pub const DEFAULT_PORT: u16 = 1883;

/// A parsed broker address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Host name or address (without IPv6 brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

/// Why a broker URL was refused. Messages quote the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerUrlError {
    /// A scheme other than `mqtt://` or `tcp://` (TLS is not supported yet).
    #[error("broker URL {0:?}: unsupported scheme; use mqtt://HOST:PORT")]
    Scheme(String),
    /// Nothing before the port, or a path after the host.
    #[error("broker URL {0:?} has no usable host; use mqtt://HOST:PORT")]
    Host(String),
    /// The port is not a number in 1..=65535.
    #[error("broker URL {0:?} has an invalid port")]
    Port(String),
}

impl FromStr for BrokerUrl {
    type Err = BrokerUrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = match s.split_once("://") {
            Some(("mqtt" | "tcp", rest)) => rest,
            Some(_) => return Err(BrokerUrlError::Scheme(s.into())),
            None => s,
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = match rest.strip_prefix('[') {
            // [v6]:port or [v6]
            Some(v6) => {
                let (host, after) = v6
                    .split_once(']')
                    .ok_or_else(|| BrokerUrlError::Host(s.into()))?;
                match after {
                    "" => (host, None),
                    p => (
                        host,
                        Some(
                            p.strip_prefix(':')
                                .ok_or_else(|| BrokerUrlError::Port(s.into()))?,
                        ),
                    ),
                }
            }
            None => match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            },
        };
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| BrokerUrlError::Port(s.into()))?,
        };
        if host.is_empty() || host.contains(['/', '?', '#', '@', ' ']) {
            return Err(BrokerUrlError::Host(s.into()));
        }
        Ok(BrokerUrl {
            host: host.into(),
            port,
        })
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "mqtt://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "mqtt://{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(host: &str, port: u16) -> BrokerUrl {
        BrokerUrl {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn accepts_the_usual_spellings() {
        assert_eq!("mqtt://127.0.0.1:1883".parse(), Ok(url("127.0.0.1", 1883)));
        assert_eq!("mqtt://broker".parse(), Ok(url("broker", 1883)));
        assert_eq!("tcp://b:1884/".parse(), Ok(url("b", 1884)));
        assert_eq!("b.local:9".parse(), Ok(url("b.local", 9)));
        assert_eq!("mqtt://[::1]:1883".parse(), Ok(url("::1", 1883)));
        assert_eq!("mqtt://[::1]".parse(), Ok(url("::1", 1883)));
        for u in ["mqtt://h:1", "mqtt://[::1]:7"] {
            assert_eq!(u.parse::<BrokerUrl>().unwrap().to_string(), u);
        }
    }

    #[test]
    fn refuses_with_the_reason() {
        let err = |s: &str| s.parse::<BrokerUrl>().unwrap_err();
        assert_eq!(
            err("http://x:1"),
            BrokerUrlError::Scheme("http://x:1".into())
        );
        assert_eq!(err("mqtt://:1"), BrokerUrlError::Host("mqtt://:1".into()));
        assert_eq!(err("mqtt://h/x"), BrokerUrlError::Host("mqtt://h/x".into()));
        assert_eq!(err("mqtt://h:x"), BrokerUrlError::Port("mqtt://h:x".into()));
        assert_eq!(err("mqtt://h:0"), BrokerUrlError::Port("mqtt://h:0".into()));
        assert!(err("mqtt://h:70000").to_string().contains("invalid port"));
    }
}
