//! Container detection by magic bytes and capped, streaming decompression.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::Path;

use super::error::PickleError;
use super::limits::Limits;

/// A compressor joblib can wrap a pickle stream in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Zlib,
    Gzip,
    Bz2,
    Xz,
    LzmaAlone,
    Lz4,
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Zlib => "zlib",
            Self::Gzip => "gzip",
            Self::Bz2 => "bz2",
            Self::Xz => "xz",
            Self::LzmaAlone => "lzma",
            Self::Lz4 => "lz4",
        })
    }
}

/// The pickle stream inside a file, decompressed if it was compressed.
pub struct Stream<'a> {
    pub data: std::borrow::Cow<'a, [u8]>,
    pub compression: Option<Compression>,
}

/// Failure to read a file from disk.
pub enum ReadError {
    Io(io::Error),
    TooLarge,
}

/// Reads a whole file, refusing one larger than `cap` bytes without reading past it.
pub fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, ReadError> {
    let file = std::fs::File::open(path).map_err(ReadError::Io)?;
    let mut bytes = Vec::new();
    file.take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > cap {
        return Err(ReadError::TooLarge);
    }
    Ok(bytes)
}

/// Detects the container format and returns the pickle stream inside it.
pub fn open<'a>(bytes: &'a [u8], file: &str, limits: &Limits) -> Result<Stream<'a>, PickleError> {
    let unsupported = |reason: String| PickleError::Unsupported {
        file: file.to_owned(),
        reason,
    };
    if bytes.len() as u64 > limits.max_bytes {
        return Err(PickleError::Limit {
            file: file.to_owned(),
            offset: 0,
            what: format!("input is larger than {} bytes", limits.max_bytes),
        });
    }
    let compression = match bytes {
        [] => return Err(unsupported("the file is empty".into())),
        [0x80, ..] => None,
        [0x78, ..] => Some(Compression::Zlib),
        [0x1f, 0x8b, ..] => Some(Compression::Gzip),
        [b'B', b'Z', b'h', ..] => Some(Compression::Bz2),
        [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => Some(Compression::Xz),
        [0x5d, 0x00, 0x00, ..] => Some(Compression::LzmaAlone),
        [0x04, 0x22, 0x4d, 0x18, ..] => Some(Compression::Lz4),
        [b'Z', b'F', ..] => {
            return Err(unsupported(
                "joblib < 0.10 'ZF' container; re-save the model with a current joblib".into(),
            ));
        }
        [first, ..] if first.is_ascii() => {
            return Err(unsupported(format!(
                "not a protocol 2-5 pickle (starts with {:?}; protocol 0/1 text pickles are not \
                 supported)",
                char::from(*first)
            )));
        }
        [first, ..] => {
            return Err(unsupported(format!(
                "unknown format (first byte 0x{first:02x}); expected a pickle or a joblib file"
            )));
        }
    };
    let Some(method) = compression else {
        return Ok(Stream {
            data: std::borrow::Cow::Borrowed(bytes),
            compression: None,
        });
    };
    let data = decompress(bytes, method, limits.max_bytes).map_err(|e| match e {
        DecompressError::TooLarge => PickleError::Limit {
            file: file.to_owned(),
            offset: limits.max_bytes,
            what: format!(
                "{method} stream decompresses to more than {} bytes",
                limits.max_bytes
            ),
        },
        DecompressError::Corrupt(reason) => {
            unsupported(format!("corrupt {method} stream: {reason}"))
        }
    })?;
    if data.first() != Some(&0x80) {
        return Err(unsupported(format!(
            "the {method} stream does not hold a protocol 2-5 pickle"
        )));
    }
    Ok(Stream {
        data: std::borrow::Cow::Owned(data),
        compression: Some(method),
    })
}

enum DecompressError {
    TooLarge,
    Corrupt(String),
}

/// A writer that refuses to grow past `cap` bytes.
struct CappedWriter {
    data: Vec<u8>,
    cap: u64,
    overflowed: bool,
}

impl Write for CappedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let total = (self.data.len() as u64).saturating_add(buf.len() as u64);
        if total > self.cap {
            self.overflowed = true;
            return Err(io::Error::other("decompressed size cap reached"));
        }
        self.data.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn decompress(bytes: &[u8], method: Compression, cap: u64) -> Result<Vec<u8>, DecompressError> {
    let mut out = CappedWriter {
        data: Vec::new(),
        cap,
        overflowed: false,
    };
    let result: Result<(), String> = match method {
        Compression::Zlib => copy(flate2::read::ZlibDecoder::new(bytes), &mut out),
        Compression::Gzip => copy(flate2::read::MultiGzDecoder::new(bytes), &mut out),
        Compression::Bz2 => copy(bzip2::read::MultiBzDecoder::new(bytes), &mut out),
        Compression::Lz4 => copy(lz4_flex::frame::FrameDecoder::new(bytes), &mut out),
        Compression::Xz => {
            // NOTE: lzma-rs buffers a whole xz block in memory before writing any of it, so the
            // writer's cap would come too late; add up the chunk sizes first instead.
            let size = xz_unpacked_size(bytes).map_err(DecompressError::Corrupt)?;
            if size > cap {
                return Err(DecompressError::TooLarge);
            }
            lzma_rs::xz_decompress(&mut io::BufReader::new(bytes), &mut out)
                .map_err(|e| e.to_string())
        }
        Compression::LzmaAlone => {
            let options = lzma_rs::decompress::Options {
                memlimit: usize::try_from(cap).ok(),
                ..Default::default()
            };
            let result = lzma_rs::lzma_decompress_with_options(
                &mut io::BufReader::new(bytes),
                &mut out,
                &options,
            );
            // NOTE: the dictionary buffer only grows as output is produced, so hitting
            // `memlimit` (= cap) means the output exceeds the cap. lzma-rs reports it only as
            // a message.
            if let Err(lzma_rs::error::Error::LzmaError(message)) = &result
                && message.starts_with("exceeded memory limit")
            {
                return Err(DecompressError::TooLarge);
            }
            result.map_err(|e| e.to_string())
        }
    };
    if out.overflowed {
        return Err(DecompressError::TooLarge);
    }
    result.map_err(DecompressError::Corrupt)?;
    Ok(out.data)
}

/// Adds up the uncompressed sizes of the LZMA2 chunks of an xz stream's blocks without
/// decoding them (xz file format 1.0.4 §2-3; LZMA2 chunk headers).
fn xz_unpacked_size(bytes: &[u8]) -> Result<u64, String> {
    let byte = |at: usize| {
        bytes
            .get(at)
            .copied()
            .ok_or_else(|| "truncated xz stream".to_owned())
    };
    let be16 = |at: usize| -> Result<usize, String> {
        Ok(usize::from(byte(at)?) << 8 | usize::from(byte(at + 1)?))
    };
    // Stream header: magic (6), flags (2), CRC32 (4).
    let check_size = match byte(7)? & 0x0f {
        0 => 0,
        1..=3 => 4,
        4..=6 => 8,
        7..=9 => 16,
        10..=12 => 32,
        _ => 64,
    };
    let mut pos = 12usize;
    let mut total = 0u64;
    loop {
        let header = byte(pos)?;
        if header == 0 {
            // Index indicator: no more blocks.
            return Ok(total);
        }
        pos += (usize::from(header) + 1) * 4;
        loop {
            let control = byte(pos)?;
            match control {
                0x00 => {
                    pos += 1;
                    break;
                }
                0x01 | 0x02 => {
                    let size = be16(pos + 1)? + 1;
                    total += size as u64;
                    pos += 3 + size;
                }
                0x80..=0xff => {
                    let unpacked = (usize::from(control & 0x1f) << 16 | be16(pos + 1)?) + 1;
                    let packed = be16(pos + 3)? + 1;
                    let props = usize::from(control >= 0xc0);
                    total += unpacked as u64;
                    pos += 5 + props + packed;
                }
                _ => return Err(format!("invalid LZMA2 chunk control byte 0x{control:02x}")),
            }
        }
        // Block padding to a multiple of 4, then the check.
        pos = pos.next_multiple_of(4) + check_size;
    }
}

fn copy(mut reader: impl Read, out: &mut CappedWriter) -> Result<(), String> {
    io::copy(&mut reader, out)
        .map(drop)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression as Level;

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), Level::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn raw_pickle_is_borrowed() {
        let s = open(b"\x80\x04N.", "x", &Limits::default()).unwrap();
        assert!(s.compression.is_none());
        assert_eq!(&*s.data, b"\x80\x04N.");
    }

    #[test]
    fn zlib_stream_is_decompressed() {
        let compressed = zlib(b"\x80\x04N.");
        let s = open(&compressed, "x", &Limits::default()).unwrap();
        assert_eq!(s.compression, Some(Compression::Zlib));
        assert_eq!(&*s.data, b"\x80\x04N.");
    }

    #[test]
    fn bomb_hits_the_cap() {
        let limits = Limits {
            max_bytes: 1 << 20,
            ..Limits::default()
        };
        let bomb = zlib(&vec![0u8; 4 << 20]);
        let err = open(&bomb, "bomb", &limits).err().unwrap().to_string();
        assert!(
            err.contains("decompresses to more than 1048576 bytes"),
            "{err}"
        );
    }

    #[test]
    fn old_joblib_and_text_pickles_are_refused() {
        let limits = Limits::default();
        let err = open(b"ZF0x00", "old", &limits).err().unwrap().to_string();
        assert!(err.contains("joblib < 0.10"), "{err}");
        let err = open(b"(lp0\n.", "p0", &limits).err().unwrap().to_string();
        assert!(err.contains("protocol 0/1"), "{err}");
    }
}
