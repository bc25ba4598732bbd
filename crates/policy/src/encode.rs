//! Server side: writing the reply.

/// Most bytes of action text written after `action=`. Postfix turns the text into an SMTP
/// reply, and an SMTP reply line holds at most 512 octets (RFC 5321 §4.5.3.1.5).
pub const MAX_ACTION_LEN: usize = 512;

/// Writes `action=<text>\n\n`. Control characters (CR, LF, NUL, ...) in `action` become
/// spaces, so the text can never end the reply early or smuggle a second line, and the text
/// is cut to [`MAX_ACTION_LEN`] bytes at a char boundary.
pub fn encode_action(action: &str, out: &mut Vec<u8>) {
    // Sanitising never makes text longer, so cutting the input first bounds the output.
    let action = &action[..action.floor_char_boundary(MAX_ACTION_LEN)];
    out.reserve(action.len() + 9);
    out.extend_from_slice(b"action=");
    if action.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        out.extend_from_slice(action.as_bytes());
    } else {
        let mut utf8 = [0; 4];
        for c in action.chars() {
            let c = if c.is_control() { ' ' } else { c };
            out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
        }
    }
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(action: &str, expected: &str) {
        let mut out = Vec::new();
        encode_action(action, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("action={expected}\n\n")
        );
    }

    #[test]
    fn sanitises_and_caps() {
        check("DUNNO", "DUNNO");
        check(
            "DEFER_IF_PERMIT 4.7.1 S25R check, be patient",
            "DEFER_IF_PERMIT 4.7.1 S25R check, be patient",
        );
        check("REJECT a\nb\r\nc\0d", "REJECT a b  c d");
        check("450 x\u{85}y\u{7f}", "450 x y ");
        check(&"x".repeat(600), &"x".repeat(MAX_ACTION_LEN));
        // 511 ASCII bytes leave no room for a 2-byte char: cut before it, not inside it.
        let text = format!("{}é", "x".repeat(511));
        check(&text, &"x".repeat(511));
        check("", "");
    }

    #[test]
    fn appends_to_existing_output() {
        let mut out = b"action=OK\n\n".to_vec();
        encode_action("DUNNO", &mut out);
        assert_eq!(out, b"action=OK\n\naction=DUNNO\n\n");
    }
}
