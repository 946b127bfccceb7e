//! How an event's payload sits in a SQLite row: as text, or as an LZ4 block.
//!
//! An event row of a 2 KiB payload fills a 4 KiB page on its own (two do not fit), and every
//! page an ingest touches is written twice: into the WAL at commit and into the database file at
//! the checkpoint. JSON repeats itself (keys, URLs, names), so SQLite rows hold a payload of at
//! least [`MIN_COMPRESSED`] bytes as a BLOB, `[LZ4_BLOCK, size as u32 LE, LZ4 block]`, when
//! that saves at least an eighth; other payloads stay TEXT, as rows written before this did.
//! Readers take either ([`PayloadColumn`]). PostgreSQL compresses long values itself (TOAST),
//! so its rows hold text.

use sqlx::error::BoxDynError;
use sqlx::{Decode, Postgres, Sqlite, Type, TypeInfo, ValueRef};

/// The tag byte of a compressed payload: an LZ4 block, its size before it.
const LZ4_BLOCK: u8 = 1;
/// Shorter payloads are stored as they are: too little to save.
const MIN_COMPRESSED: usize = 256;
/// The largest payload a blob may claim to hold; a larger claim is a damaged row, not a
/// reason to allocate gigabytes. (Bodies are capped far below this at ingress.)
const MAX_PAYLOAD: usize = 256 << 20;

/// A payload as a SQLite row holds it.
#[derive(Debug)]
pub(crate) enum Packed<'a> {
    Text(&'a str),
    Compressed(Vec<u8>),
}

/// The row form of `payload`: compressed when that saves at least an eighth of it.
pub(crate) fn pack(payload: &str) -> Packed<'_> {
    let bytes = payload.as_bytes();
    if bytes.len() < MIN_COMPRESSED || bytes.len() > MAX_PAYLOAD {
        return Packed::Text(payload);
    }
    let block = lz4_flex::block::compress(bytes);
    let packed_len = block.len() + 5;
    if packed_len > bytes.len() - bytes.len() / 8 {
        return Packed::Text(payload);
    }
    let mut out = Vec::with_capacity(packed_len);
    out.push(LZ4_BLOCK);
    // MAX_PAYLOAD keeps the length within u32.
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(&block);
    Packed::Compressed(out)
}

/// A stored payload blob that cannot be read back.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UnpackError {
    #[error("payload blob of {0} bytes has no header")]
    Short(usize),
    #[error("payload blob has unknown format {0}")]
    Format(u8),
    #[error("payload blob claims {0} bytes, more than any payload")]
    TooLarge(usize),
    #[error("payload blob does not decompress: {0}")]
    Lz4(#[from] lz4_flex::block::DecompressError),
    #[error("payload blob decompresses to {got} bytes, not the {claimed} it claims")]
    Length { claimed: usize, got: usize },
    #[error("payload blob is not UTF-8: {0}")]
    Utf8(#[from] std::string::FromUtf8Error),
}

/// The payload text a blob written by [`pack`] holds.
pub(crate) fn unpack(blob: &[u8]) -> Result<String, UnpackError> {
    let [tag, a, b, c, d, block @ ..] = blob else {
        return Err(UnpackError::Short(blob.len()));
    };
    if *tag != LZ4_BLOCK {
        return Err(UnpackError::Format(*tag));
    }
    let claimed = u32::from_le_bytes([*a, *b, *c, *d]) as usize;
    if claimed > MAX_PAYLOAD {
        return Err(UnpackError::TooLarge(claimed));
    }
    let bytes = lz4_flex::block::decompress(block, claimed)?;
    if bytes.len() != claimed {
        return Err(UnpackError::Length {
            claimed,
            got: bytes.len(),
        });
    }
    Ok(String::from_utf8(bytes)?)
}

/// The `payload` column as read: text, or (SQLite) a blob from [`pack`].
#[derive(Debug)]
pub(crate) struct PayloadColumn(pub String);

impl Type<Sqlite> for PayloadColumn {
    fn type_info() -> <Sqlite as sqlx::Database>::TypeInfo {
        <String as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &<Sqlite as sqlx::Database>::TypeInfo) -> bool {
        <String as Type<Sqlite>>::compatible(ty) || <Vec<u8> as Type<Sqlite>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Sqlite> for PayloadColumn {
    fn decode(value: <Sqlite as sqlx::Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        let is_blob = value.type_info().name() == "BLOB";
        if is_blob {
            let blob = <&[u8] as Decode<Sqlite>>::decode(value)?;
            Ok(PayloadColumn(unpack(blob)?))
        } else {
            Ok(PayloadColumn(<String as Decode<Sqlite>>::decode(value)?))
        }
    }
}

impl Type<Postgres> for PayloadColumn {
    fn type_info() -> <Postgres as sqlx::Database>::TypeInfo {
        <String as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &<Postgres as sqlx::Database>::TypeInfo) -> bool {
        <String as Type<Postgres>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Postgres> for PayloadColumn {
    fn decode(value: <Postgres as sqlx::Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(PayloadColumn(<String as Decode<Postgres>>::decode(value)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn github_push() -> String {
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/payloads/github/push.json"
        ))
        .expect("fixture")
    }

    #[test]
    fn json_payloads_are_compressed_and_read_back_whole() {
        let payload = github_push();
        let packed = pack(&payload);
        let Packed::Compressed(blob) = &packed else {
            panic!("a GitHub push should compress: {packed:?}");
        };
        assert!(
            blob.len() < payload.len() - payload.len() / 4,
            "{} of {}",
            blob.len(),
            payload.len()
        );
        assert_eq!(unpack(blob).unwrap(), payload);
    }

    #[test]
    fn short_or_incompressible_payloads_stay_text() {
        assert!(matches!(pack(r#"{"a":1}"#), Packed::Text(_)));
        // Hex of a hash chain: no repeats for LZ4 to find.
        let mut noise = String::from("\"");
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        while noise.len() < 4096 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            noise.push_str(&format!("{x:016x}"));
        }
        noise.push('"');
        assert!(matches!(pack(&noise), Packed::Text(_)));
    }

    #[test]
    fn damaged_blobs_are_errors_not_panics() {
        let payload = github_push();
        let Packed::Compressed(blob) = pack(&payload) else {
            panic!("compressible");
        };
        assert!(matches!(unpack(&blob[..3]), Err(UnpackError::Short(3))));
        let mut other = blob.clone();
        other[0] = 9;
        assert!(matches!(unpack(&other), Err(UnpackError::Format(9))));
        let mut huge = blob.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(unpack(&huge), Err(UnpackError::TooLarge(_))));
        let mut short_claim = blob.clone();
        short_claim[1..5].copy_from_slice(&10u32.to_le_bytes());
        assert!(unpack(&short_claim).is_err());
        let truncated = &blob[..blob.len() - 7];
        assert!(unpack(truncated).is_err());
        // Every cut and every flipped byte: an error or some text, never a panic.
        for cut in 0..blob.len() {
            let _ = unpack(&blob[..cut]);
        }
        for i in 5..blob.len() {
            let mut flipped = blob.clone();
            flipped[i] ^= 0xff;
            let _ = unpack(&flipped);
        }
    }
}
