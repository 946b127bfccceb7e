//! The `allow.http` grant grammar and what a grant allows: each entry names a scheme, host and
//! port (HTTPS and 443 unless written otherwise), optionally limited to some methods. Pure: the
//! config check and the plugin host's send hook both use it.

use std::net::{IpAddr, SocketAddr};

use http::Method;

/// Longest host name DNS allows (RFC 1035), and its longest label.
const MAX_HOST_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

/// What is wrong with one grant entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("empty grant")]
    Empty,
    #[error("unknown method {0:?} (GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE, CONNECT)")]
    Method(String),
    #[error(
        "unknown scheme {0:?}: a grant is `host[:port]` (HTTPS), `https://host[:port]` or `http://host[:port]`"
    )]
    Scheme(String),
    #[error("a grant names a host, not a URL: drop the {0} `{1}`")]
    NotAHost(&'static str, String),
    #[error("no host")]
    NoHost,
    #[error("invalid port {0:?} (1 to 65535)")]
    Port(String),
    #[error("invalid host name {0:?}")]
    HostName(String),
}

/// The two schemes a plugin may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    /// `http` or `https` (case-insensitive), as in a URL.
    pub fn parse(s: &str) -> Option<Scheme> {
        if s.eq_ignore_ascii_case("https") {
            Some(Scheme::Https)
        } else if s.eq_ignore_ascii_case("http") {
            Some(Scheme::Http)
        } else {
            None
        }
    }

    /// The port a URL of this scheme means when it names none.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// The host part of one grant.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// `api.example.com`: exactly that name.
    Name(String),
    /// `*.example.com`, kept as `.example.com`: any subdomain, not the apex.
    Subdomains(String),
    /// `93.184.216.34`, `[2606:4700::1]`, `127.0.0.1:9000`: that address.
    Ip(IpAddr),
}

/// One entry of an `http` grant, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GrantRule {
    /// `None` means every method.
    methods: Option<Vec<Method>>,
    scheme: Scheme,
    host: HostPattern,
    port: u16,
    /// Whether the entry wrote its port. Only an address granted with its port written
    /// (`127.0.0.1:9000`) may reach a restricted address.
    port_written: bool,
}

impl GrantRule {
    fn allows_method(&self, method: &Method) -> bool {
        self.methods
            .as_ref()
            .is_none_or(|methods| methods.contains(method))
    }
}

/// The compiled `http` grant of one plugin.
///
/// Entry syntax: `[METHOD[,METHOD...] ][SCHEME://]HOST[:PORT]`, where the scheme is `https`
/// unless written and the port is the scheme's own (443 or 80) unless written; e.g.
/// `api.github.com`, `POST hooks.slack.com`, `GET,HEAD *.example.com:8443`,
/// `http://127.0.0.1:8080`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpGrant {
    rules: Vec<GrantRule>,
}

impl HttpGrant {
    /// Parses every entry, reporting every bad one.
    pub fn parse(entries: &[String]) -> Result<Self, Vec<String>> {
        let mut rules = Vec::new();
        let mut problems = Vec::new();
        for entry in entries {
            match parse_rule(entry) {
                Ok(rule) => rules.push(rule),
                Err(problem) => problems.push(format!("http grant {entry:?}: {problem}")),
            }
        }
        if problems.is_empty() {
            Ok(Self { rules })
        } else {
            Err(problems)
        }
    }

    /// Whether `method` to `scheme://host:port` is granted (`host` lower case, without IPv6
    /// brackets or a trailing dot, as [`normalise_host`] leaves it).
    pub fn allows(&self, method: &Method, scheme: Scheme, host: &str, port: u16) -> bool {
        let ip = host.parse::<IpAddr>().ok();
        self.rules.iter().any(|rule| {
            let host_ok = match &rule.host {
                HostPattern::Name(name) => name == host,
                HostPattern::Subdomains(suffix) => {
                    host.len() > suffix.len() && host.ends_with(suffix.as_str())
                }
                HostPattern::Ip(granted) => ip == Some(*granted),
            };
            host_ok && rule.scheme == scheme && rule.port == port && rule.allows_method(method)
        })
    }

    /// Whether this exact address was granted, port written, for this method and scheme
    /// (needed to reach a restricted address, whatever name led to it).
    pub fn address_granted(&self, method: &Method, scheme: Scheme, addr: SocketAddr) -> bool {
        self.rules.iter().any(|rule| {
            rule.host == HostPattern::Ip(addr.ip())
                && rule.port_written
                && rule.port == addr.port()
                && rule.scheme == scheme
                && rule.allows_method(method)
        })
    }
}

/// Checks one entry, as the config does before anything loads.
pub fn check_entry(entry: &str) -> Result<(), GrantError> {
    parse_rule(entry).map(|_| ())
}

fn parse_rule(entry: &str) -> Result<GrantRule, GrantError> {
    let entry = entry.trim();
    if entry.is_empty() {
        return Err(GrantError::Empty);
    }
    let (methods, target) = match entry.split_once(char::is_whitespace) {
        Some((methods, target)) => (Some(parse_methods(methods)?), target.trim()),
        None => (None, entry),
    };
    let (scheme, authority) = match target.split_once("://") {
        Some((scheme, rest)) => (
            Scheme::parse(scheme).ok_or_else(|| GrantError::Scheme(scheme.to_string()))?,
            rest,
        ),
        None => (Scheme::Https, target),
    };
    check_authority_only(authority)?;
    let (host, port) = split_port(authority)?;
    let port_written = port.is_some();
    let port = port.unwrap_or(scheme.default_port());
    Ok(GrantRule {
        methods,
        scheme,
        host: parse_host(host)?,
        port,
        port_written,
    })
}

/// The methods a grant may name: the standard ones, so that a typo (`PSOT`) is an error
/// rather than a grant of a method nobody sends.
const METHODS: [Method; 9] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
    Method::TRACE,
    Method::CONNECT,
];

fn parse_methods(list: &str) -> Result<Vec<Method>, GrantError> {
    list.split(',')
        .map(|m| {
            let upper = m.trim().to_ascii_uppercase();
            METHODS
                .iter()
                .find(|known| known.as_str() == upper)
                .cloned()
                .ok_or_else(|| GrantError::Method(m.to_string()))
        })
        .collect()
}

/// Refuses what a URL may carry but a grant may not: a path, query, fragment or userinfo.
fn check_authority_only(authority: &str) -> Result<(), GrantError> {
    if let Some(i) = authority.find(['/', '?', '#']) {
        let what = match authority.as_bytes().get(i) {
            Some(b'/') => "path",
            Some(b'?') => "query",
            _ => "fragment",
        };
        return Err(GrantError::NotAHost(what, authority[i..].to_string()));
    }
    if let Some((userinfo, _)) = authority.rsplit_once('@') {
        return Err(GrantError::NotAHost("userinfo", format!("{userinfo}@")));
    }
    Ok(())
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address (no port).
fn split_port(authority: &str) -> Result<(&str, Option<u16>), GrantError> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, "")) => (v6, None),
            Some((v6, tail)) => match tail.strip_prefix(':') {
                Some(port) => (v6, Some(port)),
                None => return Err(GrantError::HostName(authority.to_string())),
            },
            None => return Err(GrantError::HostName(authority.to_string())),
        }
    } else if authority.matches(':').count() > 1 {
        // Only a bare IPv6 address has several colons; it cannot carry a port.
        (authority, None)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = port
        .map(|p| match p.parse::<u16>() {
            Ok(port) if port != 0 && p.bytes().all(|b| b.is_ascii_digit()) => Ok(port),
            _ => Err(GrantError::Port(p.to_string())),
        })
        .transpose()?;
    if host.is_empty() {
        return Err(GrantError::NoHost);
    }
    Ok((host, port))
}

fn parse_host(host: &str) -> Result<HostPattern, GrantError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(HostPattern::Ip(ip));
    }
    let host = normalise_host(host);
    if let Some(suffix) = host.strip_prefix("*.") {
        check_host_name(suffix)?;
        return Ok(HostPattern::Subdomains(format!(".{suffix}")));
    }
    check_host_name(&host)?;
    Ok(HostPattern::Name(host))
}

fn check_host_name(host: &str) -> Result<(), GrantError> {
    let ok = !host.is_empty()
        && host.len() <= MAX_HOST_LEN
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= MAX_LABEL_LEN
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if ok {
        Ok(())
    } else {
        Err(GrantError::HostName(host.to_string()))
    }
}

/// Lower case, no IPv6 brackets, no trailing dot.
pub fn normalise_host(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(entries: &[&str]) -> HttpGrant {
        let entries: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
        match HttpGrant::parse(&entries) {
            Ok(grant) => grant,
            Err(problems) => panic!("{entries:?} should parse: {problems:?}"),
        }
    }

    fn rule(entry: &str) -> GrantRule {
        parse_rule(entry).unwrap_or_else(|e| panic!("{entry:?} should parse: {e}"))
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    const GET: Method = Method::GET;
    const POST: Method = Method::POST;
    use Scheme::{Http, Https};

    /// `METHODS SCHEME HOST PORT`, `*` for every method, `ip:` before an address, `!` after
    /// a port the entry wrote.
    fn describe(rule: &GrantRule) -> String {
        let methods = match &rule.methods {
            None => "*".to_string(),
            Some(list) => list
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(","),
        };
        let host = match &rule.host {
            HostPattern::Name(name) => name.clone(),
            HostPattern::Subdomains(suffix) => format!("*{suffix}"),
            HostPattern::Ip(ip) => format!("ip:{ip}"),
        };
        let written = if rule.port_written { "!" } else { "" };
        format!(
            "{methods} {} {host} {}{written}",
            rule.scheme.as_str(),
            rule.port
        )
    }

    #[test]
    fn every_accepted_form_names_its_scheme_and_port() {
        let cases = [
            ("api.github.com", "* https api.github.com 443"),
            ("API.GitHub.com.", "* https api.github.com 443"),
            ("api.github.com:8443", "* https api.github.com 8443!"),
            ("https://api.github.com", "* https api.github.com 443"),
            ("HTTPS://api.github.com:443", "* https api.github.com 443!"),
            ("http://api.github.com", "* http api.github.com 80"),
            ("http://api.github.com:8080", "* http api.github.com 8080!"),
            ("*.example.com", "* https *.example.com 443"),
            ("*.example.com:8443", "* https *.example.com 8443!"),
            ("http://*.example.com", "* http *.example.com 80"),
            ("POST hooks.slack.com", "POST https hooks.slack.com 443"),
            (
                "get,HEAD http://*.example.com:81",
                "GET,HEAD http *.example.com 81!",
            ),
            ("93.184.216.34", "* https ip:93.184.216.34 443"),
            ("127.0.0.1:9000", "* https ip:127.0.0.1 9000!"),
            ("http://127.0.0.1:9000", "* http ip:127.0.0.1 9000!"),
            ("[::1]:9000", "* https ip:::1 9000!"),
            ("http://[::1]:9000", "* http ip:::1 9000!"),
            ("[2606:4700::1]", "* https ip:2606:4700::1 443"),
            ("2606:4700::1", "* https ip:2606:4700::1 443"),
            ("  PUT   http://10.0.0.5:80  ", "PUT http ip:10.0.0.5 80!"),
        ];
        for (entry, expected) in cases {
            assert_eq!(describe(&rule(entry)), expected, "{entry}");
            assert_eq!(check_entry(entry), Ok(()), "{entry}");
        }
    }

    #[test]
    fn every_refused_form_says_why() {
        let long_label = format!("{}.com", "a".repeat(64));
        let long_name = format!("{}com", "abcdefghi.".repeat(26));
        let cases: Vec<(&str, GrantError)> = vec![
            ("", GrantError::Empty),
            ("   ", GrantError::Empty),
            ("https://x.com/", GrantError::NotAHost("path", "/".into())),
            ("x.com/hooks", GrantError::NotAHost("path", "/hooks".into())),
            (
                "http://x.com:8080/a?b",
                GrantError::NotAHost("path", "/a?b".into()),
            ),
            (
                "x.com?token=1",
                GrantError::NotAHost("query", "?token=1".into()),
            ),
            ("x.com#top", GrantError::NotAHost("fragment", "#top".into())),
            (
                "user:pw@x.com",
                GrantError::NotAHost("userinfo", "user:pw@".into()),
            ),
            (
                "https://me@x.com",
                GrantError::NotAHost("userinfo", "me@".into()),
            ),
            ("ftp://x.com", GrantError::Scheme("ftp".into())),
            ("ws://x.com", GrantError::Scheme("ws".into())),
            ("://x.com", GrantError::Scheme("".into())),
            ("FO O x.com", GrantError::Method("FO".into())),
            ("POST, x.com", GrantError::Method("".into())),
            ("PSOT hooks.slack.com", GrantError::Method("PSOT".into())),
            ("x.com:99999", GrantError::Port("99999".into())),
            ("x.com:0", GrantError::Port("0".into())),
            ("x.com:", GrantError::Port("".into())),
            ("x.com:+80", GrantError::Port("+80".into())),
            ("x.com:http", GrantError::Port("http".into())),
            ("http://", GrantError::NoHost),
            (":8080", GrantError::NoHost),
            ("[::1]x", GrantError::HostName("[::1]x".into())),
            ("[::1", GrantError::HostName("[::1".into())),
            ("*", GrantError::HostName("*".into())),
            ("*.", GrantError::HostName("*".into())),
            ("a.*.com", GrantError::HostName("a.*.com".into())),
            ("exa mple.com", GrantError::Method("exa".into())),
            (
                "POST x.com extra",
                GrantError::HostName("x.com extra".into()),
            ),
            (
                "under_score.com",
                GrantError::HostName("under_score.com".into()),
            ),
            ("a..com", GrantError::HostName("a..com".into())),
            (
                long_label.as_str(),
                GrantError::HostName(long_label.clone()),
            ),
            (long_name.as_str(), GrantError::HostName(long_name.clone())),
        ];
        for (entry, expected) in cases {
            assert_eq!(parse_rule(entry), Err(expected), "{entry:?}");
            assert!(check_entry(entry).is_err(), "{entry:?}");
        }
    }

    #[test]
    fn parse_reports_every_bad_entry() {
        let problems = HttpGrant::parse(&[
            "https://x.com/".to_string(),
            "FO O x.com".to_string(),
            "x.com:99999".to_string(),
            "ok.com".to_string(),
            "ftp://y.com".to_string(),
        ])
        .err()
        .unwrap_or_default();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].contains("\"https://x.com/\"") && problems[0].contains("path"));
        assert!(
            problems[3].contains("unknown scheme \"ftp\""),
            "{problems:?}"
        );
    }

    #[test]
    fn a_grant_without_scheme_or_port_is_https_on_443_only() {
        let g = grant(&["api.github.com"]);
        assert!(g.allows(&GET, Https, "api.github.com", 443));
        assert!(g.allows(&POST, Https, "api.github.com", 443));
        assert!(!g.allows(&GET, Http, "api.github.com", 80), "scheme");
        assert!(!g.allows(&GET, Http, "api.github.com", 443), "scheme");
        assert!(!g.allows(&GET, Https, "api.github.com", 8443), "port");
        assert!(!g.allows(&GET, Https, "github.com", 443));
        assert!(!g.allows(&GET, Https, "x.api.github.com", 443));
    }

    #[test]
    fn written_schemes_and_ports_allow_only_themselves() {
        let g = grant(&[
            "http://plain.example",
            "tls.example:8443",
            "http://both.example:8080",
        ]);
        assert!(g.allows(&GET, Http, "plain.example", 80));
        assert!(!g.allows(&GET, Https, "plain.example", 443), "scheme");
        assert!(!g.allows(&GET, Https, "plain.example", 80), "scheme");
        assert!(!g.allows(&GET, Http, "plain.example", 8080), "port");
        assert!(g.allows(&GET, Https, "tls.example", 8443));
        assert!(!g.allows(&GET, Https, "tls.example", 443), "port");
        assert!(!g.allows(&GET, Http, "tls.example", 8443), "scheme");
        assert!(g.allows(&GET, Http, "both.example", 8080));
        assert!(!g.allows(&GET, Https, "both.example", 8080), "scheme");
        assert!(!g.allows(&GET, Http, "both.example", 80), "port");
    }

    #[test]
    fn wildcards_methods_and_addresses_follow_the_same_rule() {
        let g = grant(&[
            "POST *.example.com:8443",
            "http://*.plain.test",
            "GET 127.0.0.1:9000",
            "http://[::1]:9001",
            "93.184.216.34",
        ]);
        assert!(g.allows(&POST, Https, "a.example.com", 8443));
        assert!(!g.allows(&GET, Https, "a.example.com", 8443), "method");
        assert!(!g.allows(&POST, Https, "example.com", 8443), "apex");
        assert!(!g.allows(&POST, Https, "a.example.com", 443), "port");
        assert!(!g.allows(&POST, Http, "a.example.com", 8443), "scheme");
        assert!(!g.allows(&POST, Https, "evilexample.com", 8443));
        assert!(g.allows(&GET, Http, "b.plain.test", 80));
        assert!(!g.allows(&GET, Https, "b.plain.test", 443), "scheme");
        assert!(g.allows(&GET, Https, "127.0.0.1", 9000));
        assert!(!g.allows(&GET, Http, "127.0.0.1", 9000), "scheme");
        assert!(!g.allows(&GET, Https, "127.0.0.1", 9001), "port");
        assert!(!g.allows(&POST, Https, "127.0.0.1", 9000), "method");
        assert!(g.allows(&GET, Http, "::1", 9001));
        assert!(!g.allows(&GET, Https, "::1", 9001), "scheme");
        assert!(g.allows(&GET, Https, "93.184.216.34", 443));
        assert!(!g.allows(&GET, Http, "93.184.216.34", 80), "scheme");
    }

    #[test]
    fn only_an_address_with_its_port_written_is_an_address_grant() {
        let g = grant(&[
            "GET 127.0.0.1:9000",
            "http://[::1]:9001",
            "10.0.0.1",
            "http://10.0.0.2",
            "localhost:9002",
        ]);
        assert!(g.address_granted(&GET, Https, addr("127.0.0.1:9000")));
        assert!(
            !g.address_granted(&GET, Http, addr("127.0.0.1:9000")),
            "scheme"
        );
        assert!(
            !g.address_granted(&POST, Https, addr("127.0.0.1:9000")),
            "method"
        );
        assert!(
            !g.address_granted(&GET, Https, addr("127.0.0.1:9001")),
            "port"
        );
        assert!(g.address_granted(&GET, Http, addr("[::1]:9001")));
        assert!(
            !g.address_granted(&GET, Https, addr("[::1]:9001")),
            "scheme"
        );
        // The port was implied, not written: restricted addresses stay out of reach.
        assert!(g.allows(&GET, Https, "10.0.0.1", 443));
        assert!(!g.address_granted(&GET, Https, addr("10.0.0.1:443")));
        assert!(!g.address_granted(&GET, Http, addr("10.0.0.2:80")));
        // A name is never an address grant, whatever it resolves to.
        assert!(!g.address_granted(&GET, Https, addr("127.0.0.1:9002")));
    }
}
