//! The echo transform every model serves: ASCII `a`-`z` become `A`-`Z`, every
//! other byte (0-255) is sent back unchanged. It works byte by byte, so a
//! request split across any number of reads transforms the same way.

/// Transforms one byte.
pub fn transform(byte: u8) -> u8 {
    byte.to_ascii_uppercase()
}

/// Transforms a buffer in place, just read and about to be written back.
pub fn transform_in_place(bytes: &mut [u8]) {
    bytes.make_ascii_uppercase();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowercase_ascii_becomes_uppercase_and_nothing_else_changes() {
        for byte in 0..=255u8 {
            let expected = if byte.is_ascii_lowercase() {
                byte - b'a' + b'A'
            } else {
                byte
            };
            assert_eq!(transform(byte), expected, "byte {byte:#04x}");
        }
    }

    #[test]
    fn in_place_matches_byte_by_byte() {
        let mut all: Vec<u8> = (0..=255u8).collect();
        transform_in_place(&mut all);
        for (byte, out) in (0..=255u8).zip(all) {
            assert_eq!(out, transform(byte));
        }
    }
}
