//! The in-memory indicator index: exact sets for IPs, URLs and hashes, a binary trie per
//! address family for CIDR blocks (longest prefix wins), and domain-suffix matching on
//! label boundaries (`example.com` matches `a.example.com`, never `evilexample.com`).
//! Built once per feed refresh, then read-only: lookups take `&self`, no lock.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{Indicator, IndicatorValue};

/// What a lookup matched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntelMatch {
    /// The indicator as listed (`1.2.3.0/24`, `example.com`, ...).
    pub indicator: String,
    /// The value looked up.
    pub queried: String,
    /// Feed or provider.
    pub source: String,
    /// Label from the feed (SBL id, malware family, threat type), if any.
    pub label: Option<String>,
    /// Maliciousness 0–1.
    pub score: f64,
}

#[derive(Debug, Clone, PartialEq)]
struct Entry {
    indicator: String,
    source: String,
    label: Option<String>,
    score: f64,
}

impl Entry {
    fn matched(&self, queried: &str) -> IntelMatch {
        IntelMatch {
            indicator: self.indicator.clone(),
            queried: queried.to_owned(),
            source: self.source.clone(),
            label: self.label.clone(),
            score: self.score,
        }
    }
}

/// Binary trie over address bits; `entry` at a node is the block ending there.
#[derive(Debug, Clone, Default)]
struct Trie {
    nodes: Vec<([u32; 2], Option<u32>)>,
}

impl Trie {
    fn insert(&mut self, bits: u128, width: u8, len: u8, entry: u32) -> Option<u32> {
        if self.nodes.is_empty() {
            self.nodes.push(([0, 0], None));
        }
        let mut n = 0usize;
        for i in 0..len {
            let b = ((bits >> (width - 1 - i)) & 1) as usize;
            if self.nodes[n].0[b] == 0 {
                self.nodes.push(([0, 0], None));
                self.nodes[n].0[b] = u32::try_from(self.nodes.len() - 1).unwrap_or(u32::MAX);
            }
            n = self.nodes[n].0[b] as usize;
        }
        self.nodes[n].1.replace(entry)
    }

    fn longest(&self, bits: u128, width: u8) -> Option<u32> {
        let mut n = 0usize;
        let mut best = self.nodes.first()?.1;
        for i in 0..width {
            let b = ((bits >> (width - 1 - i)) & 1) as usize;
            let next = self.nodes[n].0[b];
            if next == 0 {
                break;
            }
            n = next as usize;
            if let Some(e) = self.nodes[n].1 {
                best = Some(e);
            }
        }
        best
    }
}

/// The index. Later indicators with the same key keep the higher score.
#[derive(Debug, Clone, Default)]
pub struct IntelIndex {
    entries: Vec<Entry>,
    ips: HashMap<IpAddr, u32>,
    v4: Trie,
    v6: Trie,
    domains: HashMap<String, u32>,
    urls: HashMap<String, u32>,
    hashes: HashMap<String, u32>,
}

fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn ip_bits(ip: IpAddr) -> (u128, u8) {
    match ip {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    }
}

/// Lower-cases a host and drops a trailing dot.
pub fn normalise_domain(d: &str) -> String {
    d.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// A URL in the form used as key: parsed and re-serialised (lower-case scheme and host),
/// or the trimmed input when it does not parse.
pub fn normalise_url(u: &str) -> String {
    url::Url::parse(u.trim()).map_or_else(|_| u.trim().to_owned(), |x| x.to_string())
}

impl IntelIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds an index from indicators.
    pub fn from_indicators<'a>(it: impl IntoIterator<Item = &'a Indicator>) -> Self {
        let mut x = Self::new();
        for i in it {
            x.insert(i);
        }
        x
    }

    /// Indicators indexed (distinct keys).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn push(&mut self, i: &Indicator, shown: String) -> u32 {
        self.entries.push(Entry {
            indicator: shown,
            source: i.source.clone(),
            label: i.label.clone(),
            score: i.score.clamp(0.0, 1.0),
        });
        u32::try_from(self.entries.len() - 1).unwrap_or(u32::MAX)
    }

    fn keep_max(&mut self, old: Option<u32>, new: u32) -> u32 {
        match old {
            Some(o) if self.entries[o as usize].score >= self.entries[new as usize].score => o,
            _ => new,
        }
    }

    /// Adds one indicator.
    pub fn insert(&mut self, i: &Indicator) {
        match &i.value {
            IndicatorValue::Ip(ip) => {
                let ip = canonical_ip(*ip);
                let e = self.push(i, ip.to_string());
                let old = self.ips.get(&ip).copied();
                let keep = self.keep_max(old, e);
                self.ips.insert(ip, keep);
            }
            IndicatorValue::Net(net) => {
                let net = net.trunc();
                let e = self.push(i, net.to_string());
                let (bits, width) = ip_bits(net.network());
                let trie = if width == 32 {
                    &mut self.v4
                } else {
                    &mut self.v6
                };
                if let Some(old) = trie.insert(bits, width, net.prefix_len(), e) {
                    let keep = self.keep_max(Some(old), e);
                    let trie = if width == 32 {
                        &mut self.v4
                    } else {
                        &mut self.v6
                    };
                    trie.insert(bits, width, net.prefix_len(), keep);
                }
            }
            IndicatorValue::Domain(d) => {
                let d = normalise_domain(d);
                let e = self.push(i, d.clone());
                let old = self.domains.get(&d).copied();
                let keep = self.keep_max(old, e);
                self.domains.insert(d, keep);
            }
            IndicatorValue::Url(u) => {
                let u = normalise_url(u);
                let e = self.push(i, u.clone());
                let old = self.urls.get(&u).copied();
                let keep = self.keep_max(old, e);
                self.urls.insert(u, keep);
            }
            IndicatorValue::Hash(h) => {
                let h = h.to_ascii_lowercase();
                let e = self.push(i, h.clone());
                let old = self.hashes.get(&h).copied();
                let keep = self.keep_max(old, e);
                self.hashes.insert(h, keep);
            }
        }
    }

    /// An IP: exact entries first, then the longest listed prefix containing it.
    /// IPv4-mapped IPv6 addresses are looked up as IPv4.
    pub fn lookup_ip(&self, ip: IpAddr) -> Option<IntelMatch> {
        let ip = canonical_ip(ip);
        let q = ip.to_string();
        if let Some(&e) = self.ips.get(&ip) {
            return Some(self.entries[e as usize].matched(&q));
        }
        let (bits, width) = ip_bits(ip);
        let trie = if width == 32 { &self.v4 } else { &self.v6 };
        trie.longest(bits, width)
            .map(|e| self.entries[e as usize].matched(&q))
    }

    /// A host: itself, then each parent domain on a label boundary.
    pub fn lookup_domain(&self, host: &str) -> Option<IntelMatch> {
        let h = normalise_domain(host);
        if let Ok(ip) = h.trim_matches(|c| c == '[' || c == ']').parse::<IpAddr>() {
            return self.lookup_ip(ip);
        }
        let mut rest = h.as_str();
        loop {
            if let Some(&e) = self.domains.get(rest) {
                return Some(self.entries[e as usize].matched(&h));
            }
            match rest.split_once('.') {
                Some((_, parent)) if !parent.is_empty() => rest = parent,
                _ => return None,
            }
        }
    }

    /// A URL: exact URL entries, then its host (domain or IP).
    pub fn lookup_url(&self, u: &str) -> Option<IntelMatch> {
        let key = normalise_url(u);
        if let Some(&e) = self.urls.get(&key) {
            return Some(self.entries[e as usize].matched(&key));
        }
        let parsed = url::Url::parse(u.trim()).ok()?;
        self.lookup_domain(parsed.host_str()?)
    }

    /// A file hash (MD5, SHA-1, SHA-256; case-insensitive).
    pub fn lookup_hash(&self, h: &str) -> Option<IntelMatch> {
        let h = h.trim().to_ascii_lowercase();
        self.hashes
            .get(&h)
            .map(|&e| self.entries[e as usize].matched(&h))
    }

    /// Blocks indexed per family `(v4 nodes, v6 nodes)` (diagnostics).
    pub fn trie_sizes(&self) -> (usize, usize) {
        (self.v4.nodes.len(), self.v6.nodes.len())
    }
}

/// Parses a CIDR or a bare IP as a network.
pub(crate) fn parse_net(s: &str) -> Option<IndicatorValue> {
    if let Ok(n) = s.parse::<IpNet>() {
        return Some(IndicatorValue::Net(n));
    }
    s.parse::<IpAddr>().ok().map(IndicatorValue::Ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ind(v: IndicatorValue, score: f64) -> Indicator {
        Indicator {
            value: v,
            source: "test".into(),
            label: Some("lbl".into()),
            score,
        }
    }

    #[test]
    fn cidr_longest_prefix_and_exact_ips() {
        let x = IntelIndex::from_indicators(&[
            ind(parse_net("10.0.0.0/8").unwrap(), 0.3),
            ind(parse_net("10.1.0.0/16").unwrap(), 0.9),
            ind(parse_net("192.0.2.7").unwrap(), 1.0),
            ind(parse_net("2001:db8::/32").unwrap(), 0.8),
            ind(parse_net("0.0.0.0/0").unwrap(), 0.01),
        ]);
        let m = |s: &str| x.lookup_ip(s.parse().unwrap());
        assert_eq!(m("10.1.2.3").unwrap().indicator, "10.1.0.0/16");
        assert_eq!(m("10.2.2.3").unwrap().indicator, "10.0.0.0/8");
        assert_eq!(m("192.0.2.7").unwrap().score, 1.0);
        assert_eq!(m("8.8.8.8").unwrap().indicator, "0.0.0.0/0");
        assert_eq!(m("2001:db8:1::5").unwrap().indicator, "2001:db8::/32");
        assert!(m("2001:db9::1").is_none());
        assert_eq!(m("::ffff:10.1.0.1").unwrap().indicator, "10.1.0.0/16");
    }

    #[test]
    fn domain_suffix_on_label_boundaries_only() {
        let x = IntelIndex::from_indicators(&[
            ind(IndicatorValue::Domain("Example.COM.".into()), 0.9),
            ind(
                IndicatorValue::Url("https://good.org/evil/path".into()),
                0.7,
            ),
        ]);
        assert!(x.lookup_domain("example.com").is_some());
        assert!(x.lookup_domain("a.b.example.com").is_some());
        assert!(x.lookup_domain("evilexample.com").is_none());
        assert!(x.lookup_domain("example.com.au").is_none());
        assert!(x.lookup_url("https://x.example.com/p").is_some());
        assert!(x.lookup_url("https://GOOD.org/evil/path").is_some());
        assert!(x.lookup_url("https://good.org/other").is_none());
    }
}
