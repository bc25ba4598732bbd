//! Host name normalisation: the one place that decides what a name looks like to the rules.

/// Longest DNS name in presentation form, without the trailing dot (RFC 1035 §2.3.4).
pub(crate) const MAX_NAME_LEN: usize = 253;
/// Longest DNS label (RFC 1035 §2.3.4).
const MAX_LABEL_LEN: usize = 63;

/// A name after [`normalise`].
pub(crate) enum Normalised<'a> {
    /// Nothing to judge.
    Empty,
    /// Not a DNS host name: too long, an empty or overlong label, or a byte outside
    /// `[a-z0-9._-]`.
    Invalid,
    /// Lowercase ASCII without the trailing dot.
    Name(&'a [u8]),
}

/// Trims, strips one trailing dot, lowercases into `buf` and checks the syntax.
/// Never allocates, whatever the input's size.
pub(crate) fn normalise<'a>(raw: &str, buf: &'a mut [u8; MAX_NAME_LEN]) -> Normalised<'a> {
    let trimmed = raw.trim();
    let trimmed = trimmed.strip_suffix('.').unwrap_or(trimmed);
    if trimmed.is_empty() {
        return Normalised::Empty;
    }
    let bytes = trimmed.as_bytes();
    if bytes.len() > MAX_NAME_LEN {
        return Normalised::Invalid;
    }
    let name = &mut buf[..bytes.len()];
    for (out, byte) in name.iter_mut().zip(bytes) {
        *out = byte.to_ascii_lowercase();
    }
    if is_valid_name(name) {
        Normalised::Name(name)
    } else {
        Normalised::Invalid
    }
}

/// A lowercase host name: labels of 1-63 bytes from `[a-z0-9_-]` joined by dots.
/// `_` is allowed because it occurs in real PTR records, though not in host names proper.
pub(crate) fn is_valid_name(name: &[u8]) -> bool {
    name.len() <= MAX_NAME_LEN
        && name.split(|&b| b == b'.').all(|label| {
            (1..=MAX_LABEL_LEN).contains(&label.len())
                && label.iter().all(|&b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(raw: &str) -> Option<Option<String>> {
        let mut buf = [0; MAX_NAME_LEN];
        match normalise(raw, &mut buf) {
            Normalised::Empty => None,
            Normalised::Invalid => Some(None),
            Normalised::Name(n) => Some(Some(String::from_utf8(n.to_vec()).unwrap())),
        }
    }

    #[test]
    fn normalises_and_validates() {
        let long_label = "a".repeat(64);
        let max_name = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61),
        ]
        .join(".");
        assert_eq!(max_name.len(), 253);
        let cases: &[(&str, Option<Option<&str>>)] = &[
            ("", None),
            ("  ", None),
            (".", None),
            (" Mail.Example.COM. ", Some(Some("mail.example.com"))),
            ("mail.example.com..", Some(None)),
            ("a..b", Some(None)),
            (".a", Some(None)),
            ("under_score.example", Some(Some("under_score.example"))),
            ("sp ace.example", Some(None)),
            ("exämple.test", Some(None)),
            (&long_label, Some(None)),
            (&max_name, Some(Some(&max_name))),
        ];
        for (raw, expected) in cases {
            let expected = expected.map(|o| o.map(str::to_owned));
            assert_eq!(norm(raw), expected, "input {raw:?}");
        }
        assert_eq!(norm(&format!("{max_name}.")), Some(Some(max_name.clone())));
        assert_eq!(norm(&format!("{max_name}e")), Some(None));
    }
}
