//! Server-sent events framing: the encoder for the gateway's streams and an incremental,
//! bounded parser for streams read from HTTP upstreams.

/// One SSE event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub id: Option<String>,
    pub data: String,
}

/// Encodes one `message` event carrying a JSON-RPC message. JSON never holds a raw line
/// break outside strings after serde encoding, but we split on them anyway.
pub fn encode(data: &[u8], id: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 32);
    out.extend_from_slice(b"event: message\n");
    if let Some(id) = id {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id.as_bytes());
        out.push(b'\n');
    }
    for line in data.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

/// Why a stream was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SSE event larger than {max} bytes")]
pub struct SseTooLarge {
    pub max: usize,
}

/// An incremental SSE parser (WHATWG rules: `\n`, `\r\n` or `\r` line ends; `data` lines
/// joined by `\n`; comments and unknown fields ignored).
#[derive(Debug)]
pub struct SseParser {
    line: Vec<u8>,
    pending_cr: bool,
    current: SseEvent,
    has_data: bool,
    size: usize,
    max: usize,
}

impl SseParser {
    pub fn new(max_event_bytes: usize) -> Self {
        Self {
            line: Vec::new(),
            pending_cr: false,
            current: SseEvent::default(),
            has_data: false,
            size: 0,
            max: max_event_bytes,
        }
    }

    /// Feeds bytes; returns the events completed by them.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, SseTooLarge> {
        let mut out = Vec::new();
        for &b in bytes {
            if self.pending_cr {
                self.pending_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' => self.end_line(&mut out),
                b'\r' => {
                    self.pending_cr = true;
                    self.end_line(&mut out);
                }
                _ => {
                    self.size += 1;
                    if self.size > self.max {
                        return Err(SseTooLarge { max: self.max });
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(out)
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            if self.has_data {
                out.push(std::mem::take(&mut self.current));
            } else {
                self.current = SseEvent::default();
            }
            self.has_data = false;
            self.size = 0;
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (&line[..], &[][..]),
        };
        let value = String::from_utf8_lossy(value);
        match name {
            b"data" => {
                if self.has_data {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(&value);
                self.has_data = true;
            }
            b"event" => self.current.event = Some(value.into_owned()),
            b"id" if !value.contains('\0') => self.current.id = Some(value.into_owned()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_events_across_chunks_and_line_ends() {
        let mut p = SseParser::new(1024);
        let mut all = Vec::new();
        for chunk in [
            &b": comment\r\nevent: message\r\nid: 4\r\ndata: {\"a\""[..],
            b":1}\r\n\r\ndata: x\rdata: y\r\r",
            b"data: z\n\nretry: 5\n\n",
        ] {
            all.extend(p.push(chunk).unwrap());
        }
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].data, "{\"a\":1}");
        assert_eq!(all[0].id.as_deref(), Some("4"));
        assert_eq!(all[0].event.as_deref(), Some("message"));
        assert_eq!(all[1].data, "x\ny");
        assert_eq!(all[2].data, "z");
    }

    #[test]
    fn refuses_oversized_events() {
        let mut p = SseParser::new(8);
        assert!(p.push(b"data: 0123456789\n\n").is_err());
    }

    proptest! {
        #[test]
        fn encode_then_parse_round_trips(data in "[^\r\n]{0,200}", split in 0usize..300) {
            let enc = encode(data.as_bytes(), Some("1"));
            let cut = split.min(enc.len());
            let mut p = SseParser::new(1 << 20);
            let mut ev = p.push(&enc[..cut]).unwrap();
            ev.extend(p.push(&enc[cut..]).unwrap());
            prop_assert_eq!(ev.len(), 1);
            prop_assert_eq!(&ev[0].data, &data);
        }

        #[test]
        fn parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..500)) {
            let mut p = SseParser::new(256);
            let _ = p.push(&bytes);
        }
    }
}
