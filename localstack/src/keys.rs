//! Where a command's keys are, as the server itself says: its `COMMAND`
//! table (arity, flags, first key, key specs, subcommands), read once when
//! the stack starts, and the hash slot of a key.
//!
//! The serverless front routes each command by the slot of its first key.
//! It needs no more than the first: a cluster node refuses keys of several
//! slots with `CROSSSLOT` itself, as ElastiCache does.

use std::collections::HashMap;

use redis::Value;

use crate::cluster::SLOTS;

/// The hash slot of `key`: CRC16 of the key, or of its hash tag (the part
/// between the first `{` and the next `}`, when not empty), modulo 16,384.
pub(crate) fn slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16::State::<crc16::XMODEM>::calculate(tagged.unwrap_or(key)) % SLOTS
}

/// The server's commands, by lower-case name.
#[derive(Debug, Default)]
pub(crate) struct KeyTable {
    commands: HashMap<Vec<u8>, Spec>,
}

/// Where one command's keys are.
#[derive(Debug, Default)]
struct Spec {
    /// It only reads (a replica may serve it after `READONLY`).
    readonly: bool,
    /// Its key specs, in the server's order.
    keys: Vec<KeySpec>,
    /// Its subcommands (`object|encoding`), by lower-case name after the `|`.
    subcommands: HashMap<Vec<u8>, Spec>,
}

/// One key spec: where the search for keys begins, then how they are found.
#[derive(Debug, PartialEq, Eq)]
struct KeySpec {
    begin: Begin,
    find: Find,
}

#[derive(Debug, PartialEq, Eq)]
enum Begin {
    /// At this argument.
    Index(usize),
    /// After this keyword, searched from `from` (from the end if negative).
    Keyword { keyword: Vec<u8>, from: i64 },
}

#[derive(Debug, PartialEq, Eq)]
enum Find {
    /// The keys start where the search began (`lastkey` 0: just one; any
    /// other range has the first key there too).
    Range,
    /// The number of keys is at `numkeys` after the beginning, the first
    /// key at `first` after it.
    KeyNum { numkeys: usize, first: usize },
    /// Not described: no key is known.
    Unknown,
}

impl KeyTable {
    /// Reads the reply to `COMMAND` (RESP2).
    pub(crate) fn parse(reply: &[u8]) -> Result<Self, String> {
        let value = redis::parse_redis_value(reply).map_err(|e| format!("COMMAND: {e}"))?;
        let Value::Array(entries) = value else {
            return Err("COMMAND: not an array".to_owned());
        };
        let mut commands = HashMap::new();
        for entry in &entries {
            if let Some((name, spec)) = Spec::parse(entry) {
                commands.insert(name, spec);
            }
        }
        if commands.is_empty() {
            return Err("COMMAND: no commands".to_owned());
        }
        Ok(Self { commands })
    }

    /// The spec of the command in `args` (its subcommand's, if it has one).
    fn spec(&self, args: &[&[u8]]) -> Option<&Spec> {
        let spec = self.commands.get(&args.first()?.to_ascii_lowercase())?;
        match args.get(1) {
            Some(sub) if !spec.subcommands.is_empty() => {
                spec.subcommands.get(&sub.to_ascii_lowercase())
            }
            _ => Some(spec),
        }
    }

    /// The first key of the command in `args`, if it has one.
    pub(crate) fn first_key<'a>(&self, args: &[&'a [u8]]) -> Option<&'a [u8]> {
        let spec = self.spec(args)?;
        spec.keys.iter().find_map(|key| key.first(args))
    }

    /// Whether the command in `args` only reads.
    pub(crate) fn readonly(&self, args: &[&[u8]]) -> bool {
        self.spec(args).is_some_and(|spec| spec.readonly)
    }
}

impl Spec {
    /// One entry of `COMMAND`: name, arity, flags, first key, last key, step,
    /// ACL categories, tips, key specs, subcommands.
    fn parse(entry: &Value) -> Option<(Vec<u8>, Self)> {
        let Value::Array(fields) = entry else {
            return None;
        };
        let name = bytes(fields.first()?)?.to_ascii_lowercase();
        let readonly = list(fields.get(2)?)
            .iter()
            .any(|flag| bytes(flag).is_some_and(|f| f.eq_ignore_ascii_case(b"readonly")));
        let mut keys: Vec<KeySpec> = fields
            .get(8)
            .map(list)
            .unwrap_or_default()
            .iter()
            .filter_map(KeySpec::parse)
            .collect();
        if keys.is_empty() {
            // A server without key specs (before 7.0): first key, last key.
            let first = int(fields.get(3)?)?;
            if first > 0 {
                keys.push(KeySpec {
                    begin: Begin::Index(usize::try_from(first).ok()?),
                    find: Find::Range,
                });
            }
        }
        let subcommands = fields
            .get(9)
            .map(list)
            .unwrap_or_default()
            .iter()
            .filter_map(Self::parse)
            .filter_map(|(full, spec)| {
                let sub = full.split(|&b| b == b'|').nth(1)?.to_vec();
                Some((sub, spec))
            })
            .collect();
        Some((
            name,
            Self {
                readonly,
                keys,
                subcommands,
            },
        ))
    }
}

impl KeySpec {
    fn parse(value: &Value) -> Option<Self> {
        let spec = fields(value);
        let begin = fields(spec.get("begin_search")?);
        let begin_args = fields(begin.get("spec")?);
        let begin = match begin.get("type").and_then(|t| bytes(t))? {
            b"index" => Begin::Index(usize::try_from(int(begin_args.get("index")?)?).ok()?),
            b"keyword" => Begin::Keyword {
                keyword: bytes(begin_args.get("keyword")?)?.to_vec(),
                from: int(begin_args.get("startfrom")?)?,
            },
            _ => return None,
        };
        let find = fields(spec.get("find_keys")?);
        let find_args = find.get("spec").map(|v| fields(v)).unwrap_or_default();
        let find = match find.get("type").and_then(|t| bytes(t)) {
            Some(b"range") => Find::Range,
            Some(b"keynum") => Find::KeyNum {
                numkeys: usize::try_from(int(find_args.get("keynumidx")?)?).ok()?,
                first: usize::try_from(int(find_args.get("firstkey")?)?).ok()?,
            },
            _ => Find::Unknown,
        };
        Some(Self { begin, find })
    }

    /// The first key this spec finds in `args`.
    fn first<'a>(&self, args: &[&'a [u8]]) -> Option<&'a [u8]> {
        let start = match &self.begin {
            Begin::Index(i) => *i,
            Begin::Keyword { keyword, from } => {
                let len = i64::try_from(args.len()).ok()?;
                let position = |i: i64| {
                    args.get(usize::try_from(i).ok()?)
                        .filter(|a| a.eq_ignore_ascii_case(keyword))
                        .map(|_| i)
                };
                // Negative: backwards from that far from the end.
                let found = if *from >= 0 {
                    (*from..len).find_map(position)
                } else {
                    (1..=len + from).rev().find_map(position)
                };
                usize::try_from(found?).ok()? + 1
            }
        };
        match self.find {
            Find::Range => args.get(start).copied(),
            Find::KeyNum { numkeys, first } => {
                let count: usize = std::str::from_utf8(args.get(start + numkeys)?)
                    .ok()?
                    .parse()
                    .ok()?;
                (count > 0).then(|| args.get(start + first).copied())?
            }
            Find::Unknown => None,
        }
    }
}

fn bytes(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        _ => None,
    }
}

fn list(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(items) | Value::Set(items) => items.clone(),
        _ => Vec::new(),
    }
}

/// A RESP2 flat array of names and values (or a RESP3 map), by name.
fn fields(value: &Value) -> HashMap<&str, &Value> {
    match value {
        Value::Array(items) => items
            .chunks_exact(2)
            .filter_map(|pair| Some((std::str::from_utf8(bytes(&pair[0])?).ok()?, &pair[1])))
            .collect(),
        Value::Map(pairs) => pairs
            .iter()
            .filter_map(|(k, v)| Some((std::str::from_utf8(bytes(k)?).ok()?, v)))
            .collect(),
        _ => HashMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> String {
        format!("${}\r\n{s}\r\n", s.len())
    }

    fn array(items: &[String]) -> String {
        format!("*{}\r\n{}", items.len(), items.concat())
    }

    fn int(n: i64) -> String {
        format!(":{n}\r\n")
    }

    fn key_spec(begin: String, find: String) -> String {
        array(&[
            bulk("flags"),
            array(&[bulk("RW")]),
            bulk("begin_search"),
            begin,
            bulk("find_keys"),
            find,
        ])
    }

    fn index(i: i64) -> String {
        array(&[
            bulk("type"),
            bulk("index"),
            bulk("spec"),
            array(&[bulk("index"), int(i)]),
        ])
    }

    fn range() -> String {
        array(&[
            bulk("type"),
            bulk("range"),
            bulk("spec"),
            array(&[
                bulk("lastkey"),
                int(-1),
                bulk("keystep"),
                int(1),
                bulk("limit"),
                int(0),
            ]),
        ])
    }

    fn command(
        name: &str,
        flags: &[&str],
        first: i64,
        specs: &[String],
        subs: &[String],
    ) -> String {
        array(&[
            bulk(name),
            int(-2),
            array(&flags.iter().map(|f| bulk(f)).collect::<Vec<_>>()),
            int(first),
            int(first),
            int(1),
            array(&[]),
            array(&[]),
            array(specs),
            array(subs),
        ])
    }

    /// A `COMMAND` reply shaped as Valkey's: GET, MGET, EVAL (numkeys),
    /// XREAD (after STREAMS), OBJECT ENCODING (a subcommand), PING.
    fn table() -> KeyTable {
        let keyword = array(&[
            bulk("type"),
            bulk("keyword"),
            bulk("spec"),
            array(&[bulk("keyword"), bulk("STREAMS"), bulk("startfrom"), int(1)]),
        ]);
        let keynum = array(&[
            bulk("type"),
            bulk("keynum"),
            bulk("spec"),
            array(&[
                bulk("keynumidx"),
                int(0),
                bulk("firstkey"),
                int(1),
                bulk("keystep"),
                int(1),
            ]),
        ]);
        let reply = array(&[
            command(
                "get",
                &["readonly", "fast"],
                1,
                &[key_spec(index(1), range())],
                &[],
            ),
            command(
                "mget",
                &["readonly"],
                1,
                &[key_spec(index(1), range())],
                &[],
            ),
            command("eval", &["noscript"], 0, &[key_spec(index(2), keynum)], &[]),
            command(
                "xread",
                &["readonly"],
                0,
                &[key_spec(keyword, range())],
                &[],
            ),
            command(
                "object",
                &[],
                0,
                &[],
                &[command(
                    "object|encoding",
                    &["readonly"],
                    2,
                    &[key_spec(index(2), range())],
                    &[],
                )],
            ),
            command("ping", &["fast"], 0, &[], &[]),
            command("set", &["write"], 1, &[], &[]),
        ]);
        KeyTable::parse(reply.as_bytes()).unwrap()
    }

    fn first<'a>(table: &KeyTable, args: &[&'a str]) -> Option<&'a str> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        table
            .first_key(&args)
            .map(|k| std::str::from_utf8(k).unwrap())
    }

    #[test]
    fn first_keys_as_the_key_specs_say() {
        let table = table();
        assert_eq!(first(&table, &["GET", "a"]), Some("a"));
        assert_eq!(first(&table, &["mget", "b", "c"]), Some("b"));
        assert_eq!(
            first(&table, &["EVAL", "return 1", "2", "k1", "k2"]),
            Some("k1")
        );
        assert_eq!(first(&table, &["EVAL", "return 1", "0"]), None);
        assert_eq!(
            first(
                &table,
                &["XREAD", "COUNT", "2", "STREAMS", "s1", "s2", "0", "0"]
            ),
            Some("s1")
        );
        assert_eq!(first(&table, &["OBJECT", "ENCODING", "o"]), Some("o"));
        assert_eq!(first(&table, &["OBJECT", "HELP"]), None);
        assert_eq!(first(&table, &["PING"]), None);
        // Without key specs: the first-key position.
        assert_eq!(first(&table, &["SET", "s", "v"]), Some("s"));
        assert_eq!(first(&table, &["NOSUCH", "x"]), None);
        assert_eq!(first(&table, &["GET"]), None);
    }

    #[test]
    fn readonly_commands() {
        let table = table();
        let yes = |args: &[&str]| {
            let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
            table.readonly(&args)
        };
        assert!(yes(&["get", "a"]));
        assert!(yes(&["OBJECT", "ENCODING", "a"]));
        assert!(!yes(&["SET", "a", "b"]));
        assert!(!yes(&["EVAL", "return 1", "0"]));
    }

    #[test]
    fn slots_and_hash_tags() {
        // Values from the cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(slot(b"123456789"), 12739);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(slot(b"{user1000}.followers"), slot(b"{user1000}.following"));
        // An empty tag is no tag; only the first `{` counts.
        assert_eq!(slot(b"foo{}{bar}"), slot_of_whole(b"foo{}{bar}"));
        assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
    }

    fn slot_of_whole(key: &[u8]) -> u16 {
        crc16::State::<crc16::XMODEM>::calculate(key) % SLOTS
    }
}
