//! Text from certificates, files, specs and network peers on its way to a terminal.
//!
//! A subject, a PEM label, an MQTT client id or a telemetry payload is chosen by whoever made
//! it. Written raw, `ESC ] 0 ; … BEL` retitles the terminal, `ESC ] 52` writes the clipboard,
//! `ESC [ 2 J` clears the screen and U+202E reverses what the user reads. Every text face
//! (CLI text, errors, the hub log, the TUI) passes such text through [`escape_controls`] or
//! [`escape_layout`] so it is shown, never obeyed; `--json` output keeps the exact strings
//! (JSON escaping already encodes C0 controls, and JSON is read by programs).
//!
//! What is escaped: C0 controls and NUL (`\e`, `\a`, `\0`, `\x01`, …), DEL (`\x7f`), C1 controls
//! (U+0080–U+009F as `\x9b`), and the bidi controls U+061C, U+200E, U+200F, U+202A–U+202E,
//! U+2066–U+2069 (as `\u{202e}`). Newline and tab are escaped too, except by
//! [`escape_layout`], which keeps them for multi-line output that we lay out ourselves.
//! Everything else, é and 日本 included, is left alone.
//!
//! `--json` output keeps the exact strings, but is read on terminals too (`hub monitor --json`
//! in a shell): JSON escaping encodes C0 controls, not C1 or bidi controls, so
//! [`escape_json`] writes those as `\uXXXX`, which parses back to the same string.
//!
//! A literal backslash is left as it is, by decision: the escaped text never contains a control
//! character, so escaping it again changes nothing. That makes it safe to escape a field for one
//! line and then again at the output boundary, which is how the faces use it. The price is that
//! a subject spelled `\e` and one holding ESC read the same in text output; `--json` tells them
//! apart.

use std::borrow::Cow;
use std::fmt::Write as _;

/// A name as one shell word, for a command a person copies from a hint: as is when it holds
/// only characters a shell leaves alone, otherwise single-quoted (device ids may hold
/// `$ ( ) ! * ? '`).
pub fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._:/@%+=,".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `s` with every control, DEL, C1 and bidi control character written visibly; for single-line
/// fields (a CN, a client id, a log line), so newline and tab are escaped as well.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

/// Like [`escape_controls`], but newline and tab pass: for text we lay out in lines ourselves
/// (a whole `inspect` report, an error with a hint on its second line).
pub fn escape_layout(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

/// Whether `c` must not reach a terminal raw (newline and tab included).
pub fn is_unsafe(c: char) -> bool {
    c.is_control() || is_bidi_control(c)
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Serialized JSON with every DEL, C1 and bidi control written as a `\uXXXX` escape: still
/// valid JSON that parses to the same value, but nothing a terminal would obey. Outside
/// strings JSON text is ASCII, and serde_json already escapes C0 controls inside them, so
/// escaping every such character of the whole text is escaping it inside the strings.
pub fn escape_json(json: &str) -> Cow<'_, str> {
    let needs = |c: char| (c as u32) >= 0x7f && is_unsafe(c);
    let Some(first) = json.find(needs) else {
        return Cow::Borrowed(json);
    };
    let mut out = String::with_capacity(json.len() + 16);
    out.push_str(&json[..first]);
    for c in json[first..].chars() {
        if needs(c) {
            // Every such character is in the Basic Multilingual Plane: one \uXXXX.
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn escape(s: &str, keep_layout: bool) -> Cow<'_, str> {
    let needs = |c: char| is_unsafe(c) && !(keep_layout && (c == '\n' || c == '\t'));
    let Some(first) = s.find(needs) else {
        return Cow::Borrowed(s);
    };
    let mut out = String::with_capacity(s.len() + 16);
    out.push_str(&s[..first]);
    for c in s[first..].chars() {
        if !needs(c) {
            out.push(c);
            continue;
        }
        match c {
            '\x1b' => out.push_str("\\e"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\x0b' => out.push_str("\\v"),
            '\x0c' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            c if (c as u32) <= 0xff => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(s: &str) -> bool {
        !s.chars().any(is_unsafe)
    }

    #[test]
    fn c0_controls_are_named_or_hex() {
        assert_eq!(escape_controls("ca\x1b]0;pwned\x07"), "ca\\e]0;pwned\\a");
        assert_eq!(escape_controls("a\x1b[2Jb"), "a\\e[2Jb");
        assert_eq!(
            escape_controls("\0\x01\x08\x0b\x0c\r\x1f"),
            "\\0\\x01\\b\\v\\f\\r\\x1f"
        );
        for b in 0u8..0x20 {
            let s = (b as char).to_string();
            assert!(clean(&escape_controls(&s)), "{b:#x}");
        }
    }

    #[test]
    fn newline_and_tab_are_kept_only_for_layout() {
        assert_eq!(escape_controls("a\nb\tc"), "a\\nb\\tc");
        assert_eq!(escape_layout("a\nb\tc\x1bd"), "a\nb\tc\\ed");
    }

    #[test]
    fn del_and_c1_are_hex() {
        assert_eq!(escape_controls("a\x7fb"), "a\\x7fb");
        assert_eq!(
            escape_controls("\u{9b}31m\u{90}q\u{9c}"),
            "\\x9b31m\\x90q\\x9c"
        );
        for c in '\u{80}'..='\u{9f}' {
            let e = escape_layout(&c.to_string()).into_owned();
            assert!(clean(&e) && e.is_ascii(), "{c:?}");
        }
    }

    #[test]
    fn bidi_controls_are_shown_as_code_points() {
        assert_eq!(escape_controls("abc\u{202e}gpj.exe"), "abc\\u{202e}gpj.exe");
        for c in [
            '\u{061C}', '\u{200E}', '\u{200F}', '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}',
            '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
        ] {
            let e = escape_layout(&c.to_string()).into_owned();
            assert!(e.starts_with("\\u{") && clean(&e), "{c:?}");
        }
    }

    #[test]
    fn json_keeps_its_value_and_loses_c1_and_bidi_controls() {
        let value = serde_json::json!({"s": "a\u{9b}31m\u{202e}b\u{2066}\x7f\x1b é 日本", "n": 1});
        for text in [
            serde_json::to_string(&value).unwrap(),
            serde_json::to_string_pretty(&value).unwrap(),
        ] {
            let escaped = escape_json(&text).into_owned();
            assert!(
                escaped.contains("\\u009b31m\\u202eb\\u2066\\u007f"),
                "{escaped}"
            );
            assert!(clean(&escaped.replace('\n', "")), "{escaped}");
            let back: serde_json::Value = serde_json::from_str(&escaped).unwrap();
            assert_eq!(back, value);
        }
        assert!(matches!(escape_json("{\"a\":\"é\"}"), Cow::Borrowed(_)));
    }

    #[test]
    fn ordinary_text_is_untouched_and_not_copied() {
        for s in ["CN=dev-01, O=Contoso", "é 日本 🐻‍❄️", "C:\\path", ""] {
            assert!(matches!(escape_controls(s), Cow::Borrowed(_)), "{s}");
            assert_eq!(escape_controls(s), s);
        }
    }

    #[test]
    fn escaping_twice_changes_nothing() {
        let nasty = "x\x1bP+q\x1b\\\u{9b}\u{202e}\0\n\t\\e é";
        let once = escape_controls(nasty).into_owned();
        assert!(clean(&once));
        assert_eq!(escape_controls(&once), once);
        assert_eq!(escape_layout(&once), once);
        let layout = escape_layout(nasty).into_owned();
        assert_eq!(escape_layout(&layout), layout);
        // A literal backslash stays single (see the module comment).
        assert_eq!(escape_controls("a\\b"), "a\\b");
    }
}
