//! The files a container resolves names with: `/etc/resolv.conf`, `/etc/hosts` and
//! `/etc/hostname`, generated the way Docker does and written atomically into the
//! container's directory, ready to be bind-mounted.
//!
//! resolv.conf on a network with the embedded DNS server names only that server (the
//! first network's gateway); the host's nameservers, or the container's `dns` servers,
//! become the server's upstreams ([`ResolvConf::resolver_options`]) rather than lines of
//! the file, as with Docker's user-defined networks.

use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::network::dns::{ResolverOptions, DNS_PORT};

/// Where the host's resolver configuration lives.
pub const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";
/// Where the host's hosts file lives.
pub const HOST_HOSTS: &str = "/etc/hosts";

/// Docker's fallback when a container outside the embedded DNS would have no usable
/// nameserver (the host only lists loopback resolvers).
const FALLBACK_NAMESERVERS: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8)),
    IpAddr::V4(Ipv4Addr::new(8, 8, 4, 4)),
];
/// The hostname limit of the kernel (HOST_NAME_MAX).
const MAX_HOSTNAME_LEN: usize = 64;
/// The localhost lines Docker writes at the top of a container's /etc/hosts.
const DEFAULT_HOSTS: &str = "127.0.0.1\tlocalhost\n\
::1\tlocalhost ip6-localhost ip6-loopback\n\
fe00::0\tip6-localnet\n\
ff00::0\tip6-mcastprefix\n\
ff02::1\tip6-allnodes\n\
ff02::2\tip6-allrouters\n";

/// Errors of building and writing the host files.
#[derive(Debug, thiserror::Error)]
pub enum HostFilesError {
    #[error("invalid hostname {hostname:?}: {reason}")]
    InvalidHostname {
        hostname: String,
        reason: &'static str,
    },
    #[error("invalid extra_hosts entry {entry:?}: expected HOST:IP or HOST=IP, where IP is an address or host-gateway")]
    InvalidExtraHost { entry: String },
    #[error("extra_hosts entry {host:?} maps to host-gateway, but the container has no network gateway to use for it")]
    NoHostGateway { host: String },
    #[error(
        "invalid dns_search domain {domain:?}: a domain has no spaces and at most 253 characters"
    )]
    InvalidSearchDomain { domain: String },
    #[error("invalid dns_opt {option:?}: an option is one word, such as ndots:2 or rotate")]
    InvalidDnsOption { option: String },
    #[error("cannot read the host's {path}: {source}")]
    ReadHost {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Which resolver setup the container gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolverMode {
    /// On a bridge network: the embedded DNS server on this address (the container's
    /// first network's gateway) is the only nameserver.
    Embedded { nameserver: Ipv4Addr },
    /// `network_mode: host`: the host's file, with `dns`/`dns_search`/`dns_opt` applied.
    Host,
    /// No embedded server (`network_mode: none`, another container's namespace): the
    /// host's file without its loopback nameservers, which the container cannot reach.
    Private,
}

/// The container's Compose `dns`, `dns_search` and `dns_opt`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsSettings {
    pub dns: Vec<IpAddr>,
    pub dns_search: Vec<String>,
    pub dns_opt: Vec<String>,
}

impl DnsSettings {
    fn is_empty(&self) -> bool {
        self.dns.is_empty() && self.dns_search.is_empty() && self.dns_opt.is_empty()
    }
}

/// A generated resolv.conf and what the embedded DNS server needs to know about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvConf {
    /// The file's content.
    pub contents: String,
    /// Where the embedded server forwards this container's other names (empty outside
    /// [`ResolverMode::Embedded`]).
    pub upstreams: Vec<SocketAddr>,
    /// The search domains written in the file.
    pub search: Vec<String>,
}

impl ResolvConf {
    /// The options to register with the DNS registry for this container.
    pub fn resolver_options(&self) -> ResolverOptions {
        ResolverOptions {
            upstreams: self.upstreams.clone(),
            search_domains: self.search.clone(),
        }
    }
}

/// What a resolv.conf says, parsed leniently (unknown lines are kept as they are).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct ParsedResolvConf {
    nameservers: Vec<IpAddr>,
    search: Vec<String>,
    options: Vec<String>,
    other_lines: Vec<String>,
}

fn parse_resolv_conf(contents: &str) -> ParsedResolvConf {
    let mut parsed = ParsedResolvConf::default();
    let mut domain = None;
    for line in contents.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let mut words = trimmed.split_whitespace();
        match words.next() {
            // A scoped IPv6 address (fe80::1%eth0) means nothing in another namespace.
            Some("nameserver") => parsed
                .nameservers
                .extend(words.next().and_then(|word| word.parse::<IpAddr>().ok())),
            // The last search or domain line wins, as in glibc.
            Some("search") => {
                parsed.search = words.map(str::to_string).collect();
                domain = None;
            }
            Some("domain") => domain = words.next().map(str::to_string),
            Some("options") => parsed.options.extend(words.map(str::to_string)),
            _ => parsed.other_lines.push(trimmed.to_string()),
        }
    }
    if let Some(domain) = domain {
        parsed.search = vec![domain];
    }
    parsed
}

/// The nameservers of a host resolv.conf as DNS server upstreams (port 53). Loopback
/// ones are kept: the server runs in the host's namespace where they answer.
pub fn upstreams_from_resolv_conf(contents: &str) -> Vec<SocketAddr> {
    to_upstreams(&parse_resolv_conf(contents).nameservers)
}

fn to_upstreams(nameservers: &[IpAddr]) -> Vec<SocketAddr> {
    nameservers
        .iter()
        .map(|ip| SocketAddr::new(*ip, DNS_PORT))
        .collect()
}

/// Reads a host file such as [`HOST_RESOLV_CONF`]; a missing file reads as empty, like
/// a host without resolver configuration.
pub fn read_host_file(path: &Path) -> Result<String, HostFilesError> {
    match fs::read_to_string(path) {
        Ok(contents) => Ok(contents),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(HostFilesError::ReadHost {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The container's resolv.conf from the host's (`host_resolv_conf`), the mode and the
/// container's settings.
pub fn resolv_conf(
    host_resolv_conf: &str,
    mode: ResolverMode,
    settings: &DnsSettings,
) -> Result<ResolvConf, HostFilesError> {
    validate_dns_settings(settings)?;
    let host = parse_resolv_conf(host_resolv_conf);
    // dns_search "." means "no search domains", as in Docker.
    let search = if settings.dns_search.iter().any(|domain| domain == ".") {
        Vec::new()
    } else if settings.dns_search.is_empty() {
        host.search.clone()
    } else {
        settings.dns_search.clone()
    };
    let options = if settings.dns_opt.is_empty() {
        host.options.clone()
    } else {
        settings.dns_opt.clone()
    };
    let wanted_nameservers = if settings.dns.is_empty() {
        host.nameservers.clone()
    } else {
        settings.dns.clone()
    };
    match mode {
        ResolverMode::Embedded { nameserver } => {
            let mut options = options;
            // Docker's internal resolver: single labels are asked as they are first.
            if !options.iter().any(|option| option.starts_with("ndots:")) {
                options.insert(0, "ndots:0".to_string());
            }
            let upstreams = to_upstreams(&wanted_nameservers);
            let header = format!(
                "# Generated by rcompose: the embedded DNS server answers container names\n\
                 # and forwards other names to: {}\n",
                describe(&upstreams)
            );
            let nameservers = [IpAddr::V4(nameserver)];
            let contents = render(&header, &nameservers, &search, &options, &[]);
            Ok(ResolvConf {
                contents,
                upstreams,
                search,
            })
        }
        ResolverMode::Host if settings.is_empty() => Ok(ResolvConf {
            contents: host_resolv_conf.to_string(),
            upstreams: Vec::new(),
            search,
        }),
        ResolverMode::Host => {
            let header = "# Generated by rcompose from the host's resolv.conf\n";
            let contents = render(
                header,
                &wanted_nameservers,
                &search,
                &options,
                &host.other_lines,
            );
            Ok(ResolvConf {
                contents,
                upstreams: Vec::new(),
                search,
            })
        }
        ResolverMode::Private => {
            let mut nameservers: Vec<IpAddr> = wanted_nameservers
                .into_iter()
                .filter(|ip| !ip.is_loopback())
                .collect();
            if nameservers.is_empty() {
                nameservers = FALLBACK_NAMESERVERS.to_vec();
            }
            let header = "# Generated by rcompose from the host's resolv.conf\n";
            let contents = render(header, &nameservers, &search, &options, &host.other_lines);
            Ok(ResolvConf {
                contents,
                upstreams: Vec::new(),
                search,
            })
        }
    }
}

fn describe(upstreams: &[SocketAddr]) -> String {
    if upstreams.is_empty() {
        return "(none: the host has no nameserver)".to_string();
    }
    let ips: Vec<String> = upstreams
        .iter()
        .map(|upstream| upstream.ip().to_string())
        .collect();
    ips.join(" ")
}

fn render(
    header: &str,
    nameservers: &[IpAddr],
    search: &[String],
    options: &[String],
    other_lines: &[String],
) -> String {
    let mut contents = header.to_string();
    for nameserver in nameservers {
        contents.push_str(&format!("nameserver {nameserver}\n"));
    }
    if !search.is_empty() {
        contents.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !options.is_empty() {
        contents.push_str(&format!("options {}\n", options.join(" ")));
    }
    for line in other_lines {
        contents.push_str(line);
        contents.push('\n');
    }
    contents
}

fn validate_dns_settings(settings: &DnsSettings) -> Result<(), HostFilesError> {
    for domain in &settings.dns_search {
        if domain.is_empty() || domain.len() > 253 || !is_single_word(domain) {
            return Err(HostFilesError::InvalidSearchDomain {
                domain: domain.clone(),
            });
        }
    }
    for option in &settings.dns_opt {
        if option.is_empty() || !is_single_word(option) {
            return Err(HostFilesError::InvalidDnsOption {
                option: option.clone(),
            });
        }
    }
    Ok(())
}

/// No whitespace, control characters or comment marks: one word on a config line.
fn is_single_word(word: &str) -> bool {
    !word
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '#' || c == ';')
}

/// The address an `extra_hosts` entry maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtraHostAddress {
    Ip(IpAddr),
    /// `host-gateway`: the address the container reaches the host at.
    HostGateway,
}

/// One `extra_hosts` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraHost {
    pub hostname: String,
    pub address: ExtraHostAddress,
}

impl FromStr for ExtraHost {
    type Err = HostFilesError;

    /// `HOST=IP` or `HOST:IP` (Compose accepts both); an IPv6 address may be written in
    /// brackets; `IP` may be `host-gateway`.
    fn from_str(entry: &str) -> Result<Self, Self::Err> {
        let invalid = || HostFilesError::InvalidExtraHost {
            entry: entry.to_string(),
        };
        let (hostname, address) = entry
            .split_once('=')
            .or_else(|| entry.split_once(':'))
            .ok_or_else(invalid)?;
        let (hostname, address) = (hostname.trim(), address.trim());
        if hostname.is_empty() || !is_single_word(hostname) {
            return Err(invalid());
        }
        let address = if address == "host-gateway" {
            ExtraHostAddress::HostGateway
        } else {
            let bare = address
                .strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
                .unwrap_or(address);
            ExtraHostAddress::Ip(bare.parse().map_err(|_| invalid())?)
        };
        Ok(Self {
            hostname: hostname.to_string(),
            address,
        })
    }
}

/// What /etc/hosts starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostsBase {
    /// Docker's localhost lines (containers with their own network namespace).
    Default,
    /// The host's /etc/hosts content (`network_mode: host`).
    Host(String),
}

/// Everything /etc/hosts and /etc/hostname are made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsSettings {
    pub base: HostsBase,
    pub hostname: String,
    /// Compose `domainname`: adds `hostname.domainname` to the container's own lines.
    pub domainname: Option<String>,
    /// The container's own addresses (one per network), each mapped to its hostname.
    pub addresses: Vec<IpAddr>,
    pub extra_hosts: Vec<ExtraHost>,
    /// What `host-gateway` means for this container (its first network's gateway).
    pub host_gateway: Option<IpAddr>,
}

/// The container's /etc/hosts: the base, then `extra_hosts`, then its own addresses
/// (Docker's order).
pub fn hosts(settings: &HostsSettings) -> Result<String, HostFilesError> {
    validate_hostname(&settings.hostname)?;
    if let Some(domain) = &settings.domainname {
        validate_hostname(domain)?;
    }
    let mut contents = match &settings.base {
        HostsBase::Default => DEFAULT_HOSTS.to_string(),
        HostsBase::Host(host) => with_final_newline(host),
    };
    for extra in &settings.extra_hosts {
        let ip = match extra.address {
            ExtraHostAddress::Ip(ip) => ip,
            ExtraHostAddress::HostGateway => {
                settings
                    .host_gateway
                    .ok_or_else(|| HostFilesError::NoHostGateway {
                        host: extra.hostname.clone(),
                    })?
            }
        };
        contents.push_str(&format!("{ip}\t{}\n", extra.hostname));
    }
    let names = match &settings.domainname {
        Some(domain) if !domain.is_empty() => format!("{0}.{domain} {0}", settings.hostname),
        _ => settings.hostname.clone(),
    };
    for ip in &settings.addresses {
        contents.push_str(&format!("{ip}\t{names}\n"));
    }
    Ok(contents)
}

/// The container's /etc/hostname.
pub fn hostname_file(hostname: &str) -> Result<String, HostFilesError> {
    validate_hostname(hostname)?;
    Ok(format!("{hostname}\n"))
}

fn with_final_newline(text: &str) -> String {
    if text.is_empty() || text.ends_with('\n') {
        text.to_string()
    } else {
        format!("{text}\n")
    }
}

/// What the kernel and /etc/hosts accept: 1 to 64 letters, digits, `-`, `_`, `.`, not
/// starting with `-` or `.`.
fn validate_hostname(hostname: &str) -> Result<(), HostFilesError> {
    let invalid = |reason| HostFilesError::InvalidHostname {
        hostname: hostname.to_string(),
        reason,
    };
    if hostname.is_empty() {
        return Err(invalid("it is empty"));
    }
    if hostname.len() > MAX_HOSTNAME_LEN {
        return Err(invalid("a hostname has at most 64 characters"));
    }
    if !hostname
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(invalid(
            "only letters, digits, '-', '_' and '.' are allowed",
        ));
    }
    if hostname.starts_with(['-', '.']) {
        return Err(invalid("it cannot start with '-' or '.'"));
    }
    Ok(())
}

/// The three files' contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerHostFiles {
    pub resolv_conf: String,
    pub hosts: String,
    pub hostname: String,
}

/// Where the files were written; bind-mount each onto the same path under /etc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFilePaths {
    pub resolv_conf: PathBuf,
    pub hosts: PathBuf,
    pub hostname: PathBuf,
}

/// Writes `resolv.conf`, `hosts` and `hostname` (mode 0644) into `dir`, each atomically
/// (temporary file + rename), so a reader never sees half a file. Rename gives the path
/// a new inode: write before the container starts, since an existing bind mount keeps
/// showing the old file.
pub fn write_host_files(
    dir: &Path,
    files: &ContainerHostFiles,
) -> Result<HostFilePaths, HostFilesError> {
    let paths = HostFilePaths {
        resolv_conf: dir.join("resolv.conf"),
        hosts: dir.join("hosts"),
        hostname: dir.join("hostname"),
    };
    write_atomically(&paths.resolv_conf, &files.resolv_conf)?;
    write_atomically(&paths.hosts, &files.hosts)?;
    write_atomically(&paths.hostname, &files.hostname)?;
    Ok(paths)
}

fn write_atomically(path: &Path, contents: &str) -> Result<(), HostFilesError> {
    let error = |source| HostFilesError::Write {
        path: path.to_path_buf(),
        source,
    };
    // Readable by the container's non-root users too.
    crate::atomic_file::replace(path, contents.as_bytes(), 0o644).map_err(error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const HOST: &str = "# managed by someone\n\
nameserver 127.0.0.53\n\
nameserver 192.0.2.53\n\
nameserver fe80::1%eth0\n\
search corp.example lab.example\n\
options edns0 trust-ad\n\
sortlist 130.155.160.0/255.255.240.0\n";

    fn gateway() -> Ipv4Addr {
        Ipv4Addr::new(10, 213, 0, 1)
    }

    fn settings(dns: &[&str], search: &[&str], opt: &[&str]) -> DnsSettings {
        DnsSettings {
            dns: dns.iter().map(|ip| ip.parse().unwrap()).collect(),
            dns_search: search.iter().map(|s| s.to_string()).collect(),
            dns_opt: opt.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn lines(contents: &str) -> Vec<&str> {
        contents
            .lines()
            .filter(|line| !line.starts_with('#'))
            .collect()
    }

    #[test]
    fn embedded_resolv_conf_names_only_the_gateway_and_forwards_to_the_hosts_servers() {
        let mode = ResolverMode::Embedded {
            nameserver: gateway(),
        };
        let conf = resolv_conf(HOST, mode, &DnsSettings::default()).unwrap();
        assert_eq!(
            lines(&conf.contents),
            [
                "nameserver 10.213.0.1",
                "search corp.example lab.example",
                "options ndots:0 edns0 trust-ad",
            ]
        );
        let expected: Vec<SocketAddr> = vec![
            "127.0.0.53:53".parse().unwrap(),
            "192.0.2.53:53".parse().unwrap(),
        ];
        assert_eq!(
            conf.upstreams, expected,
            "loopback kept: the server runs in the host namespace"
        );
        assert!(conf
            .contents
            .contains("forwards other names to: 127.0.0.53 192.0.2.53"));
        assert_eq!(
            conf.resolver_options().search_domains,
            ["corp.example", "lab.example"]
        );
    }

    #[test]
    fn embedded_resolv_conf_turns_dns_into_upstreams_and_applies_search_and_options() {
        let mode = ResolverMode::Embedded {
            nameserver: gateway(),
        };
        let wanted = settings(
            &["192.0.2.1", "2001:db8::1"],
            &["svc.example"],
            &["ndots:2", "rotate"],
        );
        let conf = resolv_conf(HOST, mode, &wanted).unwrap();
        assert_eq!(
            lines(&conf.contents),
            [
                "nameserver 10.213.0.1",
                "search svc.example",
                "options ndots:2 rotate"
            ]
        );
        let upstreams: Vec<String> = conf.upstreams.iter().map(ToString::to_string).collect();
        assert_eq!(upstreams, ["192.0.2.1:53", "[2001:db8::1]:53"]);
        // "." drops the host's search domains.
        let conf = resolv_conf(HOST, mode, &settings(&[], &["."], &[])).unwrap();
        assert!(!conf.contents.contains("search"));
        assert!(conf.search.is_empty());
    }

    #[test]
    fn host_mode_copies_the_hosts_file_unless_settings_override_it() {
        let conf = resolv_conf(HOST, ResolverMode::Host, &DnsSettings::default()).unwrap();
        assert_eq!(conf.contents, HOST);
        assert!(conf.upstreams.is_empty());
        let conf = resolv_conf(
            HOST,
            ResolverMode::Host,
            &settings(&["192.0.2.1"], &[], &[]),
        )
        .unwrap();
        assert_eq!(
            lines(&conf.contents),
            [
                "nameserver 192.0.2.1",
                "search corp.example lab.example",
                "options edns0 trust-ad",
                "sortlist 130.155.160.0/255.255.240.0",
            ]
        );
    }

    #[test]
    fn private_mode_drops_loopback_nameservers_and_falls_back_like_docker() {
        let conf = resolv_conf(HOST, ResolverMode::Private, &DnsSettings::default()).unwrap();
        assert_eq!(lines(&conf.contents)[0], "nameserver 192.0.2.53");
        assert!(!conf.contents.contains("127.0.0.53"));
        let only_loopback = "nameserver 127.0.0.53\n";
        let conf = resolv_conf(
            only_loopback,
            ResolverMode::Private,
            &DnsSettings::default(),
        )
        .unwrap();
        assert_eq!(
            lines(&conf.contents),
            ["nameserver 8.8.8.8", "nameserver 8.8.4.4"]
        );
    }

    #[test]
    fn the_last_search_or_domain_line_wins() {
        let parsed = parse_resolv_conf("search a.example\ndomain b.example\n");
        assert_eq!(parsed.search, ["b.example"]);
        let parsed = parse_resolv_conf("domain b.example\nsearch a.example c.example\n");
        assert_eq!(parsed.search, ["a.example", "c.example"]);
        assert_eq!(
            upstreams_from_resolv_conf("; comment\nnameserver not-an-ip\nnameserver 192.0.2.9\n"),
            vec!["192.0.2.9:53".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn bad_dns_search_and_options_are_refused() {
        let mode = ResolverMode::Embedded {
            nameserver: gateway(),
        };
        let error = resolv_conf(HOST, mode, &settings(&[], &["a b"], &[])).unwrap_err();
        assert!(error.to_string().contains("dns_search"), "{error}");
        let error = resolv_conf(
            HOST,
            mode,
            &settings(&[], &[], &["ndots:1\nnameserver 1.2.3.4"]),
        )
        .unwrap_err();
        assert!(error.to_string().contains("dns_opt"), "{error}");
    }

    fn hosts_settings() -> HostsSettings {
        HostsSettings {
            base: HostsBase::Default,
            hostname: "a1b2c3d4e5f6".to_string(),
            domainname: None,
            addresses: vec![IpAddr::from([10, 213, 0, 2]), IpAddr::from([10, 213, 1, 5])],
            extra_hosts: vec![
                "somehost:192.0.2.7".parse().unwrap(),
                "v6host=[2001:db8::7]".parse().unwrap(),
                "host.docker.internal:host-gateway".parse().unwrap(),
            ],
            host_gateway: Some(IpAddr::from(gateway())),
        }
    }

    #[test]
    fn hosts_has_localhost_extra_hosts_then_own_addresses() {
        let contents = hosts(&hosts_settings()).unwrap();
        let expected = format!(
            "{DEFAULT_HOSTS}192.0.2.7\tsomehost\n2001:db8::7\tv6host\n10.213.0.1\thost.docker.internal\n\
             10.213.0.2\ta1b2c3d4e5f6\n10.213.1.5\ta1b2c3d4e5f6\n"
        );
        assert_eq!(contents, expected);
        assert!(contents
            .starts_with("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"));
    }

    #[test]
    fn hosts_with_a_domainname_lists_the_full_name_first() {
        let mut settings = hosts_settings();
        settings.domainname = Some("corp.example".to_string());
        settings.extra_hosts.clear();
        let contents = hosts(&settings).unwrap();
        assert!(contents.ends_with("10.213.1.5\ta1b2c3d4e5f6.corp.example a1b2c3d4e5f6\n"));
    }

    #[test]
    fn host_mode_hosts_starts_from_the_hosts_file() {
        let mut settings = hosts_settings();
        settings.base = HostsBase::Host("127.0.0.1 localhost\n127.0.1.1 buildbox".to_string());
        settings.addresses.clear();
        settings.extra_hosts.truncate(1);
        assert_eq!(
            hosts(&settings).unwrap(),
            "127.0.0.1 localhost\n127.0.1.1 buildbox\n192.0.2.7\tsomehost\n"
        );
    }

    #[test]
    fn host_gateway_without_a_gateway_is_an_error() {
        let mut settings = hosts_settings();
        settings.host_gateway = None;
        let error = hosts(&settings).unwrap_err();
        assert!(
            matches!(error, HostFilesError::NoHostGateway { ref host } if host == "host.docker.internal")
        );
    }

    #[test]
    fn extra_hosts_entries_parse_or_say_why_not() {
        let entry: ExtraHost = "db=10.0.0.5".parse().unwrap();
        assert_eq!(
            entry.address,
            ExtraHostAddress::Ip(IpAddr::from([10, 0, 0, 5]))
        );
        let entry: ExtraHost = "db:::1".parse().unwrap();
        assert_eq!(entry.address, ExtraHostAddress::Ip("::1".parse().unwrap()));
        for bad in [
            "nohost",
            "db:not-an-ip",
            ":10.0.0.5",
            "two words:10.0.0.5",
            "db=[::1",
        ] {
            let error = bad.parse::<ExtraHost>().unwrap_err();
            assert!(
                error.to_string().contains("HOST:IP or HOST=IP"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn hostnames_are_validated() {
        assert_eq!(hostname_file("web-1").unwrap(), "web-1\n");
        for bad in ["", "-web", "we b", "web\n127.0.0.1 evil", &"x".repeat(65)] {
            let error = hostname_file(bad).unwrap_err();
            assert!(
                error.to_string().starts_with("invalid hostname"),
                "{bad:?}: {error}"
            );
        }
        let mut settings = hosts_settings();
        settings.hostname = "bad host".to_string();
        assert!(hosts(&settings).is_err());
    }

    #[test]
    fn files_are_written_whole_with_mode_0644_and_replaced_on_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = ContainerHostFiles {
            resolv_conf: "nameserver 10.213.0.1\n".to_string(),
            hosts: DEFAULT_HOSTS.to_string(),
            hostname: "web-1\n".to_string(),
        };
        let paths = write_host_files(dir.path(), &files).unwrap();
        assert_eq!(paths.resolv_conf, dir.path().join("resolv.conf"));
        assert_eq!(fs::read_to_string(&paths.hosts).unwrap(), DEFAULT_HOSTS);
        assert_eq!(fs::read_to_string(&paths.hostname).unwrap(), "web-1\n");
        let mode = fs::metadata(&paths.resolv_conf)
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o644);
        files.hostname = "web-2\n".to_string();
        write_host_files(dir.path(), &files).unwrap();
        assert_eq!(fs::read_to_string(&paths.hostname).unwrap(), "web-2\n");
        let leftovers = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 3, "no temporary files left behind");
    }

    #[test]
    fn writing_into_a_missing_directory_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("gone");
        let files = ContainerHostFiles {
            resolv_conf: String::new(),
            hosts: String::new(),
            hostname: "web\n".to_string(),
        };
        let error = write_host_files(&missing, &files).unwrap_err();
        assert!(error.to_string().contains("gone/resolv.conf"), "{error}");
    }

    #[test]
    fn a_missing_host_file_reads_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_host_file(&dir.path().join("resolv.conf")).unwrap(), "");
        let error = read_host_file(dir.path()).unwrap_err();
        assert!(
            error.to_string().contains("cannot read the host's"),
            "{error}"
        );
    }
}
