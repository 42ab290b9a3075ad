//! Small text helpers every screen uses: word wrapping (prose, certificate values, hanging
//! indents), eliding, the log's clock. A leaf: it knows no tab and not the app.

use time::OffsetDateTime;

/// `text` cut to `width` columns from the left, marked with "…": the end of a path is the
/// part that names it.
pub(crate) fn elide_left(text: &str, width: usize) -> String {
    let n = text.chars().count();
    if n <= width {
        return text.to_string();
    }
    let keep: String = text.chars().skip(n - width.saturating_sub(1)).collect();
    format!("…{keep}")
}

/// `text` cut to `width` columns from the right, marked with "…".
pub(crate) fn elide_right(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let keep: String = text.chars().take(width.saturating_sub(1)).collect();
    format!("{keep}…")
}

/// Greedy word wrap for prose and commands: breaks at whitespace and keeps every word whole
/// (a word longer than the width gets a line of its own, so a path stays one piece to copy).
pub(crate) fn wrap_whole_words(text: &str, width: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let w = word.chars().count();
        if !line.is_empty() && line.chars().count() + 1 + w > width {
            out.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() || out.is_empty() {
        out.push(line);
    }
    out
}

/// Wrap for certificate values: never wider than `width` columns (at least 8), broken at
/// spaces where it can and anywhere in a longer word (a hex serial, a key); every space is
/// kept, since two spaces in a certificate's text are not one.
pub(crate) fn wrap_cutting_words(text: &str, width: usize) -> Vec<String> {
    let width = width.max(8);
    let mut lines = vec![String::new()];
    for word in text.split(' ') {
        let cur = lines.last_mut().expect("one line");
        let cur_len = cur.chars().count();
        let wlen = word.chars().count();
        if cur_len > 0 && cur_len + 1 + wlen <= width {
            cur.push(' ');
            cur.push_str(word);
            continue;
        }
        if cur_len > 0 {
            lines.push(String::new());
        }
        let chars: Vec<char> = word.chars().collect();
        for (i, chunk) in chars.chunks(width).enumerate() {
            if i > 0 {
                lines.push(String::new());
            }
            lines.last_mut().expect("one line").extend(chunk);
        }
    }
    lines
}

/// Word wrap with a hanging indent: lines after the first start with `indent` spaces. The
/// spaces inside a line are kept as they are (a step list pads its names into a column),
/// except where a line breaks.
pub(crate) fn wrap_hanging(text: &str, width: usize, indent: usize) -> Vec<String> {
    let width = width.max(indent + 10);
    let mut out: Vec<String> = Vec::new();
    let mut line = String::new();
    for token in words_with_spaces(text) {
        let lead = if out.is_empty() { 0 } else { indent };
        let word = token.trim_end().chars().count();
        if !line.trim().is_empty() && lead + line.chars().count() + word > width {
            out.push(format!("{}{}", " ".repeat(lead), line.trim_end()));
            line.clear();
        }
        if line.is_empty() && !out.is_empty() {
            line.push_str(token.trim_start());
        } else {
            line.push_str(&token);
        }
    }
    let lead = if out.is_empty() { 0 } else { indent };
    out.push(format!("{}{}", " ".repeat(lead), line.trim_end()));
    out
}

/// `text` as words, each with the spaces that follow it (other whitespace shown as spaces);
/// spaces before the first word make a token of their own.
fn words_with_spaces(text: &str) -> Vec<String> {
    let mut tokens: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut in_space = false;
    for c in text.chars() {
        let space = c.is_whitespace();
        if !space && in_space && !cur.is_empty() {
            tokens.push(std::mem::take(&mut cur));
        }
        in_space = space;
        cur.push(if space { ' ' } else { c });
    }
    if !cur.is_empty() {
        tokens.push(cur);
    }
    tokens
}

/// `HH:MM:SS` of a time, for logs.
pub(crate) fn clock(t: OffsetDateTime) -> String {
    format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Prose keeps a long word whole on its own line; a certificate value is cut to the width
    /// and keeps its spaces.
    #[test]
    fn whole_words_for_prose_cut_words_for_certificate_values() {
        let text = "serial 0123456789ABCDEF0123 end";
        assert_eq!(
            wrap_whole_words(text, 10),
            vec!["serial", "0123456789ABCDEF0123", "end"]
        );
        assert_eq!(
            wrap_cutting_words(text, 10),
            vec!["serial", "0123456789", "ABCDEF0123", "end"]
        );
        assert_eq!(
            wrap_cutting_words("ECDSA P-256 (256 bits), signed ecdsa-with-SHA256", 24),
            vec!["ECDSA P-256 (256 bits),", "signed ecdsa-with-SHA256"]
        );
        assert_eq!(wrap_whole_words("a  b\nc", 10), vec!["a b c"]);
        assert_eq!(wrap_cutting_words("CN=a  b", 10), vec!["CN=a  b"]);
        assert_eq!(wrap_cutting_words("", 10), vec![""]);
        assert_eq!(wrap_whole_words("", 10), vec![""]);
    }
}
