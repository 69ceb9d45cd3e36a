//! The echo transform every model serves: ASCII `a`-`z` become `A`-`Z`, every
//! other byte (0-255) is sent back unchanged. It works byte by byte, so a
//! request split across any number of reads transforms the same way.

/// Transforms a buffer in place, just read and about to be written back.
pub fn transform_in_place(bytes: &mut [u8]) {
    bytes.make_ascii_uppercase();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowercase_ascii_becomes_uppercase_and_nothing_else_changes() {
        let mut all: Vec<u8> = (0..=255u8).collect();
        transform_in_place(&mut all);
        for (byte, out) in (0..=255u8).zip(all) {
            // The reference, written out rather than borrowed from std.
            let expected = match byte {
                b'a'..=b'z' => byte - b'a' + b'A',
                _ => byte,
            };
            assert_eq!(out, expected, "byte {byte:#04x}");
        }
    }
}
