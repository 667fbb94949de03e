//! A server-sent events reader over a byte stream (the `text/event-stream` format both
//! OpenAI and Anthropic stream with): `event:` and `data:` lines, blank line ends an event.

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

#[derive(Debug, Default, Clone, PartialEq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub data: String,
}

pub struct SseReader<S> {
    inner: S,
    buf: Vec<u8>,
    done: bool,
}

impl<S, E> SseReader<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    pub fn new(inner: S) -> Self {
        SseReader { inner, buf: Vec::new(), done: false }
    }

    /// The next complete event; `Ok(None)` at the end of the stream.
    pub async fn next(&mut self) -> Result<Option<SseEvent>, String> {
        loop {
            if let Some(ev) = self.take_event() {
                return Ok(Some(ev));
            }
            if self.done {
                // A final event without its blank line still counts.
                if self.buf.iter().any(|b| !b.is_ascii_whitespace()) {
                    self.buf.extend_from_slice(b"\n\n");
                    continue;
                }
                return Ok(None);
            }
            match self.inner.next().await {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(e)) => return Err(format!("the stream broke: {e}")),
                None => self.done = true,
            }
        }
    }

    fn take_event(&mut self) -> Option<SseEvent> {
        loop {
            let norm_end = find_blank_line(&self.buf)?;
            let (end, skip) = norm_end;
            let block: Vec<u8> = self.buf.drain(..end + skip).take(end).collect();
            let text = String::from_utf8_lossy(&block);
            let mut ev = SseEvent::default();
            let mut data_lines = Vec::new();
            for line in text.split('\n').map(|l| l.trim_end_matches('\r')) {
                if line.starts_with(':') || line.is_empty() {
                    continue;
                }
                let (field, value) = line.split_once(':').map(|(f, v)| (f, v.strip_prefix(' ').unwrap_or(v))).unwrap_or((line, ""));
                match field {
                    "event" => ev.event = Some(value.to_string()),
                    "data" => data_lines.push(value.to_string()),
                    _ => {}
                }
            }
            if data_lines.is_empty() && ev.event.is_none() {
                continue; // comments or keep-alives only
            }
            ev.data = data_lines.join("\n");
            return Some(ev);
        }
    }
}

/// Position of the first blank line (`\n\n` or `\r\n\r\n`) and its length.
fn find_blank_line(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i + 1 < buf.len() {
        if buf[i] == b'\n' && buf[i + 1] == b'\n' {
            return Some((i, 2));
        }
        if buf[i] == b'\n' && buf[i + 1] == b'\r' && buf.get(i + 2) == Some(&b'\n') {
            return Some((i, 3));
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_split_across_chunks_and_crlf_are_read_whole() {
        let chunks: Vec<Result<Bytes, String>> = vec![
            Ok(Bytes::from_static(b": keep-alive\n\nevent: message_start\nda")),
            Ok(Bytes::from_static(b"ta: {\"a\":1}\r\n\r\ndata: x\ndata: y\n\n")),
            Ok(Bytes::from_static(b"data: [DONE]")),
        ];
        let mut r = SseReader::new(futures_util::stream::iter(chunks));
        let e = r.next().await.unwrap().unwrap();
        assert_eq!((e.event.as_deref(), e.data.as_str()), (Some("message_start"), "{\"a\":1}"));
        assert_eq!(r.next().await.unwrap().unwrap().data, "x\ny");
        assert_eq!(r.next().await.unwrap().unwrap().data, "[DONE]");
        assert_eq!(r.next().await.unwrap(), None);
    }
}
