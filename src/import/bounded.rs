//! Reading untrusted import files with bounds: no line (and no JSON document) may make the
//! importer allocate without limit. A 1.5 GB line or `/dev/zero` is refused with an error that
//! names the line, after reading at most the limit.

use std::io::{self, Read};
use std::path::Path;

use super::line_error;
use crate::Error;

/// The longest line an importer accepts (16 MiB).
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// The largest whole-document JSON file (the Amazon format) an importer accepts (1 GiB).
pub const MAX_JSON_FILE_BYTES: u64 = 1024 * 1024 * 1024;

/// The error a [`BoundedLines`] reader returns for an overlong line.
#[derive(Debug)]
struct LineTooLong {
    line: u64,
}

impl std::fmt::Display for LineTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "line {} is longer than the limit of {} MiB ({MAX_LINE_BYTES} bytes): is this the \
             right file? Split records one per line",
            self.line,
            MAX_LINE_BYTES / (1024 * 1024)
        )
    }
}

impl std::error::Error for LineTooLong {}

/// A reader that fails once a line grows past [`MAX_LINE_BYTES`] (the bytes before the
/// overflow are returned first, so callers see the error on the line that is too long).
pub(crate) struct BoundedLines<R> {
    inner: R,
    /// 1-based number of the line being read.
    line: u64,
    in_line: usize,
    max: usize,
    overflowed: bool,
}

impl<R: Read> BoundedLines<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self::with_limit(inner, MAX_LINE_BYTES)
    }

    fn with_limit(inner: R, max: usize) -> Self {
        BoundedLines {
            inner,
            line: 1,
            in_line: 0,
            max,
            overflowed: false,
        }
    }
}

impl<R: Read> Read for BoundedLines<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.overflowed {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                LineTooLong { line: self.line },
            ));
        }
        let n = self.inner.read(buf)?;
        for (i, b) in buf[..n].iter().enumerate() {
            if *b == b'\n' {
                self.line += 1;
                self.in_line = 0;
            } else {
                self.in_line += 1;
                if self.in_line > self.max {
                    self.overflowed = true;
                    if i == 0 {
                        return self.read(buf);
                    }
                    return Ok(i);
                }
            }
        }
        Ok(n)
    }
}

/// The import error for an I/O error of a [`BoundedLines`] reader: an overlong line names its
/// line; anything else is unreadable at `line` (0 when unknown).
pub(crate) fn read_error(path: &Path, line: u64, e: &io::Error) -> Error {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<LineTooLong>())
    {
        Some(long) => line_error(path, long.line, long.to_string()),
        None => line_error(path, line, format!("unreadable line: {e}")),
    }
}

/// Opens `path` for reading line by line with the bound.
pub(crate) fn open_lines(path: &Path) -> crate::Result<io::BufReader<BoundedLines<std::fs::File>>> {
    let file = std::fs::File::open(path).map_err(|e| super::io_error(path, e))?;
    Ok(io::BufReader::new(BoundedLines::new(file)))
}

/// A reader that fails once more than `max` bytes were read (for whole-document JSON files).
pub(crate) struct BoundedFile<R> {
    inner: R,
    read: u64,
    max: u64,
}

impl<R: Read> BoundedFile<R> {
    pub(crate) fn new(inner: R, max: u64) -> Self {
        BoundedFile {
            inner,
            read: 0,
            max,
        }
    }
}

impl<R: Read> Read for BoundedFile<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.read >= self.max {
            // One byte more tells a file of exactly `max` bytes from a longer one.
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? == 0 {
                return Ok(0);
            }
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the file is larger than the limit of {} MiB ({} bytes)",
                    self.max / (1024 * 1024),
                    self.max
                ),
            ));
        }
        let room = (self.max - self.read).min(buf.len() as u64) as usize;
        let n = self.inner.read(&mut buf[..room])?;
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;

    #[test]
    fn an_overlong_line_is_refused_with_its_number() {
        let text = b"ok\nfine\n0123456789abc\nlater\n";
        let reader = io::BufReader::new(BoundedLines::with_limit(&text[..], 8));
        let mut lines = reader.lines();
        assert_eq!(lines.next().unwrap().unwrap(), "ok");
        assert_eq!(lines.next().unwrap().unwrap(), "fine");
        let err = lines.next().unwrap().unwrap_err();
        let long = err
            .get_ref()
            .unwrap()
            .downcast_ref::<LineTooLong>()
            .unwrap();
        assert_eq!(long.line, 3);
    }

    #[test]
    fn lines_at_the_limit_pass() {
        let text = b"12345678\n12345678";
        let reader = io::BufReader::new(BoundedLines::with_limit(&text[..], 8));
        let lines: Vec<String> = reader.lines().map(|l| l.unwrap()).collect();
        assert_eq!(lines, ["12345678", "12345678"]);
    }

    #[test]
    fn a_file_over_its_limit_is_refused() {
        let mut ok = String::new();
        BoundedFile::new(&b"12345"[..], 5)
            .read_to_string(&mut ok)
            .unwrap();
        assert_eq!(ok, "12345");
        let mut s = String::new();
        let err = BoundedFile::new(&b"123456"[..], 5)
            .read_to_string(&mut s)
            .unwrap_err();
        assert!(err.to_string().contains("larger than the limit"), "{err}");
    }
}
