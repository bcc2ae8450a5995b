//! Reading lines a peer sends (the fault control port, the harakiri connection, a Python worker's
//! answers), bounded: a line longer than the limit is consumed to its end and reported, a line
//! that is not UTF-8 is reported, and in both cases the connection stays usable. Nothing a peer
//! sends makes us buffer more than the limit.

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// The longest command line a control connection accepts.
pub const MAX_COMMAND_LINE: usize = 1024 * 1024;

/// One line, as read.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A line (without its newline).
    Text(String),
    /// A line longer than the limit: its length, its bytes dropped.
    TooLong(usize),
    /// A line that is not UTF-8.
    NotUtf8,
}

impl Line {
    /// The text, or why there is none (for a `{"status": "fail"}` answer).
    pub fn text(self, max: usize) -> Result<String, String> {
        match self {
            Line::Text(text) => Ok(text),
            Line::TooLong(length) => Err(format!(
                "a line of {length} bytes; lines are at most {max} bytes"
            )),
            Line::NotUtf8 => Err("the line is not UTF-8 text".to_string()),
        }
    }
}

/// Lines of at most `max` bytes from a reader.
pub struct BoundedLines<R> {
    reader: BufReader<R>,
    max: usize,
}

impl<R: AsyncRead + Unpin> BoundedLines<R> {
    /// Lines of `reader`, each at most `max` bytes.
    pub fn new(reader: R, max: usize) -> Self {
        BoundedLines {
            reader: BufReader::new(reader),
            max,
        }
    }

    /// The next line; `None` at the end of the stream (a last line without newline counts).
    pub async fn next(&mut self) -> std::io::Result<Option<Line>> {
        let mut line = Vec::new();
        let mut length = 0usize;
        loop {
            let available = self.reader.fill_buf().await?;
            if available.is_empty() {
                return Ok((length > 0).then(|| self.finish(line, length)));
            }
            let (chunk, found_end) = match available.iter().position(|b| *b == b'\n') {
                Some(end) => (&available[..end], true),
                None => (available, false),
            };
            length += chunk.len();
            if length <= self.max {
                line.extend_from_slice(chunk);
            }
            let consumed = chunk.len() + usize::from(found_end);
            self.reader.consume(consumed);
            if found_end {
                return Ok(Some(self.finish(line, length)));
            }
        }
    }

    fn finish(&self, mut line: Vec<u8>, length: usize) -> Line {
        if length > self.max {
            return Line::TooLong(length);
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        match String::from_utf8(line) {
            Ok(text) => Line::Text(text),
            Err(_) => Line::NotUtf8,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn long_and_binary_lines_are_reported_and_the_stream_goes_on() {
        let mut input = Vec::new();
        input.extend_from_slice(b"first\r\n");
        input.extend(std::iter::repeat_n(b'x', 100));
        input.push(b'\n');
        input.extend_from_slice(&[0xff, 0xfe, b'\n']);
        input.extend_from_slice(b"last");
        let mut lines = BoundedLines::new(&input[..], 10);
        assert_eq!(
            lines.next().await.unwrap(),
            Some(Line::Text("first".into()))
        );
        assert_eq!(lines.next().await.unwrap(), Some(Line::TooLong(100)));
        assert_eq!(lines.next().await.unwrap(), Some(Line::NotUtf8));
        assert_eq!(lines.next().await.unwrap(), Some(Line::Text("last".into())));
        assert_eq!(lines.next().await.unwrap(), None);
    }
}
