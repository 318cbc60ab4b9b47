//! Just enough RESP for a proxy: split client input into commands (multibulk
//! arrays or inline commands), find where each upstream reply ends (RESP2 and
//! RESP3), and encode the replies the front gives itself.
//!
//! Nothing here panics on malformed input; limits keep a hostile client from
//! making the stack allocate without bound.

/// The most arguments a command may have (as Valkey's default).
const MAX_ARGS: usize = 1024 * 1024;
/// The largest bulk string in a command (as Valkey's default `proto-max-bulk-len`).
const MAX_BULK: usize = 512 * 1024 * 1024;
/// The longest inline command or header line.
const MAX_INLINE: usize = 64 * 1024;
/// The deepest nesting of reply aggregates followed.
const MAX_DEPTH: usize = 64;

/// A protocol violation; the connection is answered with an error and closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError(pub &'static str);

/// One parsed client command: its argument ranges in the input buffer, and the
/// length of its encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// `(start, end)` of each argument in the buffer.
    pub args: Vec<(usize, usize)>,
    /// Bytes the command occupies at the start of the buffer.
    pub len: usize,
}

impl Command {
    /// Argument `i` as bytes.
    pub fn arg<'a>(&self, buf: &'a [u8], i: usize) -> Option<&'a [u8]> {
        self.args.get(i).map(|&(s, e)| &buf[s..e])
    }

    /// Whether argument `i` equals `name`, ignoring ASCII case.
    pub fn arg_is(&self, buf: &[u8], i: usize, name: &str) -> bool {
        self.arg(buf, i)
            .is_some_and(|a| a.eq_ignore_ascii_case(name.as_bytes()))
    }
}

/// Find the end of the line starting at `from`: the index of its `\r\n`.
fn line_end(buf: &[u8], from: usize) -> Result<Option<usize>, ProtocolError> {
    let window = &buf[from..buf.len().min(from + MAX_INLINE)];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(i) => Ok(Some(from + i)),
        None if window.len() >= MAX_INLINE => Err(ProtocolError("line too long")),
        None => Ok(None),
    }
}

fn parse_int(bytes: &[u8]) -> Result<i64, ProtocolError> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or(ProtocolError("invalid integer"))
}

/// Parse one command at the start of `buf`; `Ok(None)` if it is incomplete.
pub fn parse_command(buf: &[u8]) -> Result<Option<Command>, ProtocolError> {
    if buf.is_empty() {
        return Ok(None);
    }
    if buf[0] != b'*' {
        return parse_inline(buf);
    }
    let Some(end) = line_end(buf, 1)? else {
        return Ok(None);
    };
    let count = parse_int(&buf[1..end])?;
    if count <= 0 {
        // `*0` and `*-1` carry no command; skip them as Valkey does.
        return Ok(Some(Command {
            args: Vec::new(),
            len: end + 2,
        }));
    }
    let count = usize::try_from(count).map_err(|_| ProtocolError("invalid multibulk length"))?;
    if count > MAX_ARGS {
        return Err(ProtocolError("invalid multibulk length"));
    }
    let mut pos = end + 2;
    let mut args = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        if pos >= buf.len() {
            return Ok(None);
        }
        if buf[pos] != b'$' {
            return Err(ProtocolError("expected '$'"));
        }
        let Some(end) = line_end(buf, pos + 1)? else {
            return Ok(None);
        };
        let len = parse_int(&buf[pos + 1..end])?;
        let len = usize::try_from(len).map_err(|_| ProtocolError("invalid bulk length"))?;
        if len > MAX_BULK {
            return Err(ProtocolError("invalid bulk length"));
        }
        let start = end + 2;
        let Some(stop) = start.checked_add(len) else {
            return Err(ProtocolError("invalid bulk length"));
        };
        if buf.len() < stop + 2 {
            return Ok(None);
        }
        if &buf[stop..stop + 2] != b"\r\n" {
            return Err(ProtocolError("bulk string not terminated"));
        }
        args.push((start, stop));
        pos = stop + 2;
    }
    Ok(Some(Command { args, len: pos }))
}

/// An inline command: one line of space-separated words (what `telnet` sends).
fn parse_inline(buf: &[u8]) -> Result<Option<Command>, ProtocolError> {
    let window = &buf[..buf.len().min(MAX_INLINE)];
    let Some(nl) = window.iter().position(|&b| b == b'\n') else {
        return if window.len() >= MAX_INLINE {
            Err(ProtocolError("inline command too long"))
        } else {
            Ok(None)
        };
    };
    let line_len = if nl > 0 && buf[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    let mut args = Vec::new();
    let mut i = 0;
    while i < line_len {
        while i < line_len && buf[i].is_ascii_whitespace() {
            i += 1;
        }
        let start = i;
        while i < line_len && !buf[i].is_ascii_whitespace() {
            i += 1;
        }
        if i > start {
            args.push((start, i));
        }
    }
    Ok(Some(Command { args, len: nl + 1 }))
}

/// The length of the complete reply frame at the start of `buf` (RESP2 or
/// RESP3), or `Ok(None)` if more bytes are needed.
pub fn reply_len(buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
    frame_end(buf, 0, 0)
}

fn frame_end(buf: &[u8], pos: usize, depth: usize) -> Result<Option<usize>, ProtocolError> {
    if depth > MAX_DEPTH {
        return Err(ProtocolError("reply nested too deeply"));
    }
    let Some(&kind) = buf.get(pos) else {
        return Ok(None);
    };
    let Some(end) = line_end(buf, pos + 1)? else {
        return Ok(None);
    };
    let after_line = end + 2;
    match kind {
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => Ok(Some(after_line)),
        b'$' | b'!' | b'=' => {
            let len = parse_int(&buf[pos + 1..end])?;
            if len < 0 {
                return Ok(Some(after_line));
            }
            let stop = usize::try_from(len)
                .ok()
                .and_then(|len| after_line.checked_add(len)?.checked_add(2))
                .ok_or(ProtocolError("invalid bulk length"))?;
            Ok((buf.len() >= stop).then_some(stop))
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let count = parse_int(&buf[pos + 1..end])?;
            if count < 0 {
                return Ok(Some(after_line));
            }
            let items = if matches!(kind, b'%' | b'|') {
                count
                    .checked_mul(2)
                    .ok_or(ProtocolError("invalid aggregate length"))?
            } else {
                count
            };
            let mut at = after_line;
            for _ in 0..items {
                match frame_end(buf, at, depth + 1)? {
                    Some(next) => at = next,
                    None => return Ok(None),
                }
            }
            if kind == b'|' {
                // An attribute map precedes the reply it annotates.
                return frame_end(buf, at, depth + 1);
            }
            Ok(Some(at))
        }
        _ => Err(ProtocolError("unknown reply type")),
    }
}

/// The items of a flat RESP3 push frame (bulk or simple strings, integers as
/// their digits, nulls as `None`), or `None` for any other frame: the kind
/// first (`message`, `subscribe`, ...), then its arguments. `frame` is one
/// complete frame.
pub fn push_items(frame: &[u8]) -> Option<Vec<Option<&[u8]>>> {
    if frame.first() != Some(&b'>') {
        return None;
    }
    flat_items(frame)
}

/// An array's items, when each is a string, an integer or null (such as
/// `CLUSTER GETKEYSINSLOT`'s reply); `None` for any other frame.
pub fn array_items(frame: &[u8]) -> Option<Vec<Option<&[u8]>>> {
    if frame.first() != Some(&b'*') {
        return None;
    }
    flat_items(frame)
}

/// The flat items of an aggregate frame (`*` or `>`).
fn flat_items(frame: &[u8]) -> Option<Vec<Option<&[u8]>>> {
    let header = line_end(frame, 1).ok()??;
    let count = usize::try_from(parse_int(&frame[1..header]).ok()?).ok()?;
    let mut at = header + 2;
    let mut items = Vec::with_capacity(count.min(16));
    for _ in 0..count {
        let line = line_end(frame, at + 1).ok()??;
        let item = match frame.get(at)? {
            b'+' | b':' => {
                let item = Some(&frame[at + 1..line]);
                at = line + 2;
                item
            }
            b'_' => {
                at = line + 2;
                None
            }
            b'$' => {
                let len = usize::try_from(parse_int(&frame[at + 1..line]).ok()?).ok()?;
                let item = frame.get(line + 2..line + 2 + len)?;
                at = line + 4 + len;
                Some(item)
            }
            _ => return None,
        };
        items.push(item);
    }
    Some(items)
}

/// The kind of a RESP3 push frame (its first item), or `None` for any
/// other frame.
pub fn push_kind(frame: &[u8]) -> Option<&[u8]> {
    push_items(frame)?.first().copied().flatten()
}

/// `+OK`-style simple string.
pub fn simple(s: &str) -> Vec<u8> {
    format!("+{s}\r\n").into_bytes()
}

/// An error reply; `msg` starts with its code (`ERR`, `NOAUTH`, `WRONGPASS`).
/// Line breaks in it (from a client's own bytes) become spaces, as Valkey
/// makes them: an error is one line.
pub fn error(msg: &str) -> Vec<u8> {
    format!("-{}\r\n", msg.replace(['\r', '\n'], " ")).into_bytes()
}

/// A bulk string.
pub fn bulk(s: &[u8]) -> Vec<u8> {
    let mut out = format!("${}\r\n", s.len()).into_bytes();
    out.extend_from_slice(s);
    out.extend_from_slice(b"\r\n");
    out
}

/// An integer.
pub fn int(n: i64) -> Vec<u8> {
    format!(":{n}\r\n").into_bytes()
}

/// An array of already encoded items.
pub fn array(items: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", items.len()).into_bytes();
    for item in items {
        out.extend_from_slice(item);
    }
    out
}

/// A map of already encoded keys and values: RESP3 `%`, or a flat RESP2 array.
pub fn map(pairs: &[(Vec<u8>, Vec<u8>)], resp3: bool) -> Vec<u8> {
    let mut out = if resp3 {
        format!("%{}\r\n", pairs.len()).into_bytes()
    } else {
        format!("*{}\r\n", pairs.len() * 2).into_bytes()
    };
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.extend_from_slice(v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_is_one_line() {
        assert_eq!(
            error("ERR Syntax error in HELLO option 'x\r\n+OK'"),
            b"-ERR Syntax error in HELLO option 'x  +OK'\r\n"
        );
    }

    #[test]
    fn push_kinds() {
        let message = b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n";
        assert_eq!(push_kind(message), Some(&b"message"[..]));
        assert_eq!(
            push_kind(b">3\r\n+subscribe\r\n$1\r\na\r\n:1\r\n"),
            Some(&b"subscribe"[..])
        );
        assert_eq!(
            push_kind(b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nb\r\n"),
            None
        );
        assert_eq!(push_kind(b">1\r\n_\r\n"), None);
        assert_eq!(
            push_items(b">3\r\n$11\r\nunsubscribe\r\n_\r\n:0\r\n"),
            Some(vec![Some(&b"unsubscribe"[..]), None, Some(&b"0"[..])])
        );
        assert_eq!(push_kind(b">1\r\n$9\r\nsub"), None);
    }

    #[test]
    fn multibulk_commands_split_and_wait_for_more() {
        let buf = b"*2\r\n$4\r\nAUTH\r\n$3\r\nabc\r\n*1\r\n$4\r\nPING\r\n";
        let cmd = parse_command(buf).unwrap().unwrap();
        assert!(cmd.arg_is(buf, 0, "auth"));
        assert_eq!(cmd.arg(buf, 1), Some(&b"abc"[..]));
        let rest = &buf[cmd.len..];
        assert_eq!(parse_command(rest).unwrap().unwrap().len, rest.len());
        for cut in 0..cmd.len {
            assert_eq!(parse_command(&buf[..cut]).unwrap(), None, "cut at {cut}");
        }
    }

    #[test]
    fn inline_commands() {
        let buf = b"AUTH  user  token\r\nPING\n";
        let cmd = parse_command(buf).unwrap().unwrap();
        assert_eq!(cmd.args.len(), 3);
        assert_eq!(cmd.arg(buf, 2), Some(&b"token"[..]));
        assert_eq!(cmd.len, 19);
    }

    #[test]
    fn malformed_commands_are_errors() {
        assert!(parse_command(b"*x\r\n").is_err());
        assert!(parse_command(b"*1\r\n:1\r\n").is_err());
        assert!(parse_command(b"*1\r\n$-5\r\n").is_err());
        assert!(parse_command(b"*1\r\n$1\r\nab\r\n").is_err());
        assert!(parse_command(b"*99999999999\r\n").is_err());
        assert!(parse_command(&vec![b'a'; MAX_INLINE + 1]).is_err());
    }

    #[test]
    fn reply_lengths_resp2_and_resp3() {
        for frame in [
            &b"+OK\r\n"[..],
            b"-ERR x\r\n",
            b":12\r\n",
            b"$3\r\nabc\r\n",
            b"$-1\r\n",
            b"*2\r\n$1\r\na\r\n:1\r\n",
            b"*-1\r\n",
            b"%1\r\n+k\r\n*1\r\n_\r\n",
            b">2\r\n+invalidate\r\n*1\r\n$1\r\nk\r\n",
            b"|1\r\n+a\r\n+b\r\n:5\r\n",
            b"=7\r\ntxt:abc\r\n",
        ] {
            assert_eq!(reply_len(frame).unwrap(), Some(frame.len()), "{frame:?}");
            for cut in 0..frame.len() {
                assert_eq!(reply_len(&frame[..cut]).unwrap(), None);
            }
        }
        assert!(reply_len(b"?\r\n").is_err());
    }
}
