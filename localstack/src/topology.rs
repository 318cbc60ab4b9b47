//! What clients are told about the cluster: upstream `CLUSTER NODES`
//! read into [`Node`]s, and the topology replies (`CLUSTER SLOTS`,
//! `CLUSTER SHARDS`, `CLUSTER NODES`, `-MOVED`, `-ASK`) written with the
//! fronts' addresses instead of the servers' own.

use std::collections::HashMap;

use crate::resp;

/// Where clients reach each server: a server's port, mapped to the port of
/// the front before it, all on one advertised host.
#[derive(Clone, Debug)]
pub(crate) struct Addresses {
    host: String,
    fronts: HashMap<u16, u16>,
}

impl Addresses {
    /// `fronts`: (server port, front port) pairs.
    pub(crate) fn new(host: &str, fronts: impl IntoIterator<Item = (u16, u16)>) -> Self {
        Self {
            host: host.to_owned(),
            fronts: fronts.into_iter().collect(),
        }
    }

    /// The front of the server at `addr` (`ip:port`), as `host:port`.
    fn front_of(&self, addr: &str) -> Option<String> {
        let port: u16 = addr.rsplit_once(':')?.1.parse().ok()?;
        self.fronts
            .get(&port)
            .map(|front| format!("{}:{front}", self.host))
    }

    /// The front port of the server on `port`.
    fn front_port(&self, port: u16) -> Option<u16> {
        self.fronts.get(&port).copied()
    }

    /// A `-MOVED slot addr` or `-ASK slot addr` error frame with the front's
    /// address; `None` for any other frame (or a server no front is for).
    pub(crate) fn redirect(&self, frame: &[u8]) -> Option<Vec<u8>> {
        let line = frame.strip_prefix(b"-")?.strip_suffix(b"\r\n")?;
        let line = std::str::from_utf8(line).ok()?;
        let mut parts = line.split(' ');
        let (kind, slot, addr) = (parts.next()?, parts.next()?, parts.next()?);
        if !matches!(kind, "MOVED" | "ASK") || parts.next().is_some() {
            return None;
        }
        let front = self.front_of(addr)?;
        Some(resp::error(&format!("{kind} {slot} {front}")))
    }

    /// `CLUSTER NODES` (or `CLUSTER REPLICAS`) lines with the fronts'
    /// addresses (`host:port@port`); the rest of each line as the server
    /// wrote it.
    pub(crate) fn nodes_text(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let mut fields: Vec<String> = line.split(' ').map(str::to_owned).collect();
            if let Some(field) = fields.get_mut(1) {
                let addr = field.split(['@', ',']).next().unwrap_or_default();
                if let Some(front) = self.front_of(addr) {
                    let port = front.rsplit_once(':').map_or("0", |(_, p)| p).to_owned();
                    *field = format!("{front}@{port}");
                }
            }
            out.push_str(&fields.join(" "));
            out.push('\n');
        }
        out
    }

    /// `CLUSTER SLOTS` for `nodes`: each primary's slot ranges, its front,
    /// then its replicas' fronts (failed nodes left out, as Valkey does).
    pub(crate) fn slots(&self, nodes: &[Node]) -> Vec<u8> {
        let mut ranges = Vec::new();
        for primary in nodes.iter().filter(|n| n.is_primary()) {
            let mut entries = vec![self.slots_entry(primary)];
            entries.extend(
                nodes
                    .iter()
                    .filter(|n| n.replica_of(primary) && !n.failed())
                    .map(|n| self.slots_entry(n)),
            );
            for &(first, last) in &primary.slots {
                let mut range = vec![resp::int(first.into()), resp::int(last.into())];
                range.extend(entries.iter().cloned());
                ranges.push(resp::array(&range));
            }
        }
        resp::array(&ranges)
    }

    fn slots_entry(&self, node: &Node) -> Vec<u8> {
        let port = self.front_port(node.port).unwrap_or(node.port);
        resp::array(&[
            resp::bulk(self.host.as_bytes()),
            resp::int(port.into()),
            resp::bulk(node.id.as_bytes()),
        ])
    }

    /// `CLUSTER SHARDS` for `nodes`: one entry per primary, with its slots and
    /// every node of the shard. (A failed primary that a replica took over
    /// from owns nothing and follows no one in `CLUSTER NODES`: it is left
    /// out until it rejoins as a replica.)
    pub(crate) fn shards(&self, nodes: &[Node], resp3: bool) -> Vec<u8> {
        let mut shards = Vec::new();
        let primaries = nodes
            .iter()
            .filter(|n| n.flag("master") && !(n.failed() && n.slots.is_empty()));
        for primary in primaries {
            let slots: Vec<Vec<u8>> = primary
                .slots
                .iter()
                .flat_map(|&(a, b)| [resp::int(a.into()), resp::int(b.into())])
                .collect();
            let members: Vec<Vec<u8>> = std::iter::once(primary)
                .chain(nodes.iter().filter(|n| n.replica_of(primary)))
                .map(|node| self.shard_member(node, resp3))
                .collect();
            shards.push(resp::map(
                &[
                    (resp::bulk(b"slots"), resp::array(&slots)),
                    (resp::bulk(b"nodes"), resp::array(&members)),
                ],
                resp3,
            ));
        }
        resp::array(&shards)
    }

    fn shard_member(&self, node: &Node, resp3: bool) -> Vec<u8> {
        let host = self.host.as_bytes();
        let port = self.front_port(node.port).unwrap_or(node.port);
        let role: &[u8] = if node.flag("master") {
            b"master"
        } else {
            b"replica"
        };
        let health: &[u8] = if node.failed() { b"fail" } else { b"online" };
        resp::map(
            &[
                (resp::bulk(b"id"), resp::bulk(node.id.as_bytes())),
                (resp::bulk(b"port"), resp::int(port.into())),
                (resp::bulk(b"ip"), resp::bulk(host)),
                (resp::bulk(b"endpoint"), resp::bulk(host)),
                (resp::bulk(b"role"), resp::bulk(role)),
                (resp::bulk(b"replication-offset"), resp::int(0)),
                (resp::bulk(b"health"), resp::bulk(health)),
            ],
            resp3,
        )
    }
}

/// One line of `CLUSTER NODES`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Node {
    pub(crate) id: String,
    /// The server's port.
    pub(crate) port: u16,
    flags: Vec<String>,
    /// The primary's id for a replica.
    master: Option<String>,
    /// Slot ranges owned, inclusive (not the importing or migrating marks).
    pub(crate) slots: Vec<(u16, u16)>,
}

impl Node {
    /// Every node in a `CLUSTER NODES` reply (lines that do not parse are
    /// left out).
    pub(crate) fn parse_all(text: &str) -> Vec<Self> {
        text.lines().filter_map(Self::parse).collect()
    }

    fn parse(line: &str) -> Option<Self> {
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.len() < 8 {
            return None;
        }
        let addr = fields[1].split(['@', ',']).next()?;
        let port = addr.rsplit_once(':')?.1.parse().ok()?;
        let slots = fields[8..]
            .iter()
            .filter(|s| !s.starts_with('['))
            .filter_map(|s| match s.split_once('-') {
                Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                None => s.parse().ok().map(|n| (n, n)),
            })
            .collect();
        Some(Self {
            id: fields[0].to_owned(),
            port,
            flags: fields[2].split(',').map(str::to_owned).collect(),
            master: Some(fields[3]).filter(|m| *m != "-").map(str::to_owned),
            slots,
        })
    }

    /// The primary's id, for a replica.
    pub(crate) fn master_id(&self) -> Option<&str> {
        self.master.as_deref()
    }

    pub(crate) fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }

    pub(crate) fn failed(&self) -> bool {
        self.flag("fail") || self.flag("noaddr")
    }

    /// A primary that owns slots and is not failed.
    pub(crate) fn is_primary(&self) -> bool {
        self.flag("master") && !self.failed() && !self.slots.is_empty()
    }

    pub(crate) fn replica_of(&self, primary: &Self) -> bool {
        (self.flag("slave") || self.flag("replica"))
            && self.master.as_deref() == Some(primary.id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = "\
aaa 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460 [5461->-ccc]\n\
bbb 127.0.0.1:7002@17002,host2 master - 0 0 2 connected 5461-10922 16000\n\
ccc 127.0.0.1:7003@17003 slave aaa 0 0 1 connected\n\
ddd 127.0.0.1:7004@17004 slave,fail bbb 0 0 2 disconnected\n\
eee 127.0.0.1:7005@17005 master,fail - 0 0 3 disconnected\n";

    fn addresses() -> Addresses {
        Addresses::new(
            "127.0.0.1",
            [
                (7001, 6001),
                (7002, 6002),
                (7003, 6003),
                (7004, 6004),
                (7005, 6005),
            ],
        )
    }

    #[test]
    fn nodes_lines_are_read() {
        let nodes = Node::parse_all(NODES);
        assert_eq!(nodes.len(), 5);
        assert_eq!(
            nodes[0].slots,
            vec![(0, 5460)],
            "the migrating mark is no range"
        );
        assert_eq!(nodes[1].slots, vec![(5461, 10922), (16000, 16000)]);
        assert_eq!(nodes[1].port, 7002);
        assert!(nodes[2].replica_of(&nodes[0]));
        assert!(nodes[3].failed());
    }

    #[test]
    fn redirects_name_the_front() {
        let a = addresses();
        assert_eq!(
            a.redirect(b"-MOVED 3999 127.0.0.1:7002\r\n").unwrap(),
            b"-MOVED 3999 127.0.0.1:6002\r\n"
        );
        assert_eq!(
            a.redirect(b"-ASK 1 127.0.0.1:7003\r\n").unwrap(),
            b"-ASK 1 127.0.0.1:6003\r\n"
        );
        assert!(a.redirect(b"-ERR MOVED 1 127.0.0.1:7002\r\n").is_none());
        assert!(a.redirect(b"+MOVED 1 127.0.0.1:7002\r\n").is_none());
        assert!(a.redirect(b"-MOVED 1 127.0.0.1:9999\r\n").is_none());
    }

    #[test]
    fn nodes_text_names_only_fronts() {
        let text = addresses().nodes_text(NODES);
        assert!(!text.contains(":700"), "{text}");
        assert!(text.contains("bbb 127.0.0.1:6002@6002 master"), "{text}");
        assert!(text.contains("[5461->-ccc]"), "{text}");
        assert_eq!(text.lines().count(), 5);
    }

    #[test]
    fn slots_and_shards_name_only_fronts() {
        let a = addresses();
        let nodes = Node::parse_all(NODES);
        let slots = String::from_utf8(a.slots(&nodes)).unwrap();
        assert!(!slots.contains("700"), "{slots}");
        // Three ranges; the first with its replica, the failed replica left out.
        assert!(slots.starts_with("*3\r\n*4\r\n:0\r\n:5460\r\n"), "{slots}");
        assert!(slots.contains(":6003\r\n"), "{slots}");
        assert!(!slots.contains(":6004\r\n"), "{slots}");
        let shards = String::from_utf8(a.shards(&nodes, true)).unwrap();
        // Two shards: the failed primary that owns nothing is no shard.
        assert!(shards.starts_with("*2\r\n%2\r\n"), "{shards}");
        assert!(!shards.contains(":6005\r\n"), "{shards}");
        assert!(shards.contains(":6004\r\n") && shards.contains("$4\r\nfail\r\n"));
        assert!(!shards.contains("700"), "{shards}");
    }
}
