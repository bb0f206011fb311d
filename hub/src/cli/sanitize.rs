//! Text from the fleet (module output, trap messages, labels, env values) shown on an
//! operator's terminal with every control character made visible.
//!
//! A module that prints `ESC ] 0 ; … BEL` would retitle the terminal, `ESC [ 2 J` clear it,
//! and worse sequences rewrite what the operator sees or (on some terminals) answer back
//! into the shell. Escape sequences and other C0/C1 controls, DEL, and the Unicode bidi
//! overrides that reorder text are printed as `\x1b`, `\u{202e}` and the like. Machine output
//! (`-o json`, `-o yaml`) keeps the exact text; JSON and YAML escape controls themselves.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Characters a terminal would act on rather than show.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every control character (newlines and tabs included: one value, one line)
/// replaced by an escape sequence. Borrows when nothing needs escaping.
pub fn visible(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe(c) && (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_make_terminal_attacks_visible() {
        assert_eq!(visible("\x1b]0;pwned\x07"), "\\x1b]0;pwned\\x07");
        assert_eq!(visible("\x1b[2J\x1b[H"), "\\x1b[2J\\x1b[H");
        assert_eq!(visible("a\u{9b}31m"), "a\\x9b31m", "C1 CSI");
        assert_eq!(visible("x\u{7f}"), "x\\x7f");
        assert_eq!(visible("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
        assert_eq!(visible("two\nlines\ttab\r"), "two\\nlines\\ttab\\r");
    }

    #[test]
    fn ordinary_text_is_untouched_and_borrowed() {
        for t in ["hi from hello-0 on node-a #1", "température 23,4 °C ✓", ""] {
            assert!(matches!(visible(t), Cow::Borrowed(s) if s == t));
        }
    }
}
