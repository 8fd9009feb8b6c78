//! Python `int()` emulation, for `-m` (the original reads it with `int(text, 8)`).

use super::model::OptionsError;

/// Unicode code points that Python's `int()` accepts as the digit zero (the digits 1..9 follow
/// each of them), Unicode 14 as in Python 3.11.
const DIGIT_ZEROS: &[u32] = &[
    0x30, 0x660, 0x6f0, 0x7c0, 0x966, 0x9e6, 0xa66, 0xae6, 0xb66, 0xbe6, 0xc66, 0xce6, 0xd66,
    0xde6, 0xe50, 0xed0, 0xf20, 0x1040, 0x1090, 0x17e0, 0x1810, 0x1946, 0x19d0, 0x1a80, 0x1a90,
    0x1b50, 0x1bb0, 0x1c40, 0x1c50, 0xa620, 0xa8d0, 0xa900, 0xa9d0, 0xa9f0, 0xaa50, 0xabf0, 0xff10,
    0x104a0, 0x10d30, 0x11066, 0x110f0, 0x11136, 0x111d0, 0x112f0, 0x11450, 0x114d0, 0x11650,
    0x116c0, 0x11730, 0x118e0, 0x11950, 0x11c50, 0x11d50, 0x11da0, 0x16a60, 0x16ac0, 0x16b50,
    0x1d7ce, 0x1d7d8, 0x1d7e2, 0x1d7ec, 0x1d7f6, 0x1e140, 0x1e2f0, 0x1e950, 0x1fbf0,
];

fn decimal_value(c: char) -> Option<u32> {
    let c = c as u32;
    DIGIT_ZEROS
        .iter()
        .find(|&&z| (z..z + 10).contains(&c))
        .map(|z| c - z)
}

/// Whitespace that Python's `int()` ignores around a number.
fn int_space(c: char) -> bool {
    matches!(
        c,
        ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r' | '\u{85}' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}' | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}'
    )
}

/// Reads a mode as the original does (Python's `int(text, 8)`): surrounding whitespace, a sign,
/// a `0o` prefix and single underscores between digits are accepted; negative modes are not.
/// Modes beyond `u32` (accepted by the original, meaningless to chmod) are rejected.
pub fn parse_octal_mode(text: &str) -> Result<u32, OptionsError> {
    let bad = || {
        OptionsError::Value(format!(
            "The mode must be an octal number such as 640, not {text:?}."
        ))
    };
    let t = text.trim_matches(int_space);
    let (negative, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let t = match t.strip_prefix("0o").or_else(|| t.strip_prefix("0O")) {
        Some(r) => r.strip_prefix('_').unwrap_or(r),
        None => t,
    };
    let mut value: u64 = 0;
    let mut digits = 0;
    let mut after_underscore = false;
    for c in t.chars() {
        if c == '_' {
            if digits == 0 || after_underscore {
                return Err(bad());
            }
            after_underscore = true;
            continue;
        }
        let d = decimal_value(c).filter(|d| *d < 8).ok_or_else(bad)?;
        value = value.saturating_mul(8).saturating_add(u64::from(d));
        digits += 1;
        after_underscore = false;
    }
    if digits == 0 || after_underscore {
        return Err(bad());
    }
    if negative && value != 0 {
        return Err(OptionsError::Value(format!(
            "The mode may not be negative: {text:?}."
        )));
    }
    u32::try_from(value).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_modes() {
        let ok = [
            ("640", 0o640),
            ("0644", 0o644),
            (" 0o17 ", 0o17),
            ("0O7", 7),
            ("1_7", 0o17),
            ("0o_1", 1),
            ("+7", 7),
            ("-0", 0),
            ("\t7\n", 7),
            ("\u{663}", 3),
            ("7\u{3000}", 7),
        ];
        for (t, m) in ok {
            assert_eq!(parse_octal_mode(t), Ok(m), "{t:?}");
        }
        for t in [
            "999",
            "abc",
            "",
            "8",
            "-1",
            "0o",
            "0o_",
            "7_",
            "_7",
            "1__7",
            "+-7",
            "- 7",
            "0x1f",
            "0b1",
            "\x1c7",
            "1 7",
            "77777777777",
        ] {
            assert!(
                matches!(parse_octal_mode(t), Err(OptionsError::Value(_))),
                "{t:?}"
            );
        }
    }
}
