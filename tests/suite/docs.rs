//! The README and the book under `docs/` (issue 26, items 1 and 2) hold together: every relative
//! link resolves, anchors included (by GitHub's rules, since the chapters are read there as plain
//! Markdown); every `chainsmith …` command shown in a ```sh or ```sh-external block parses with
//! the CLI's own clap definition, as the connection test's hints do; `docs/SUMMARY.md` lists every
//! chapter and every chapter it lists exists. The README itself stays short enough to read in
//! five minutes.

use std::collections::{BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};

use clap::Parser as _;

/// The repository root.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The book's table of contents, as mdBook reads it.
const SUMMARY: &str = "docs/SUMMARY.md";

/// What the issue asks of the README: a page a newcomer reads in five minutes.
const README_MAX_LINES: usize = 300;

/// The chapters `docs/SUMMARY.md` lists, in its order, as paths relative to the repository root.
pub(crate) fn book_chapters() -> Vec<PathBuf> {
    let summary = std::fs::read_to_string(root().join(SUMMARY)).unwrap();
    links(&summary)
        .into_iter()
        .map(|(_, target)| Path::new("docs").join(target))
        .collect()
}

/// Every Markdown file of the README and the book, relative to the repository root.
fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![PathBuf::from("README.md")];
    let mut dirs = vec![root().join("docs")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                files.push(path.strip_prefix(root()).unwrap().to_path_buf());
            }
        }
    }
    files.sort();
    files
}

/// Lines outside fenced code blocks, each with its 1-based number.
fn prose_lines(markdown: &str) -> Vec<(usize, &str)> {
    let mut fenced = false;
    let mut out = Vec::new();
    for (i, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            out.push((i + 1, line));
        }
    }
    out
}

/// A line without its code spans (`` `…` ``, ```` ``…`` ````): a link inside one is text.
fn without_code_spans(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(at) = rest.find('`') {
        out.push_str(&rest[..at]);
        let run = rest[at..].chars().take_while(|&c| c == '`').count();
        let ticks = "`".repeat(run);
        let after = &rest[at + run..];
        match after.find(&ticks) {
            Some(end) => rest = &after[end + run..],
            None => {
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The inline links `[text](target)` of a Markdown text, outside code, with their line numbers.
fn links(markdown: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in prose_lines(markdown) {
        let line = without_code_spans(line);
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            out.push((n, after[..end].trim().to_string()));
            rest = &after[end + 1..];
        }
    }
    out
}

/// GitHub's anchor for a heading: lower case; letters, digits, `-` and `_` kept, spaces made
/// `-`, everything else (punctuation, backticks, symbols like `×` or `—`) dropped.
fn github_slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors a Markdown file's headings get on GitHub (a repeated one gets `-1`, `-2`, …).
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = BTreeSet::new();
    for (_, line) in prose_lines(markdown) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let slug = github_slug(&line[hashes..]);
        let count = seen.entry(slug.clone()).or_insert(0);
        out.insert(if *count == 0 {
            slug.clone()
        } else {
            format!("{slug}-{count}")
        });
        *count += 1;
    }
    out
}

/// `a/b/../c` as `a/c`, without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Why a link of `file` (relative to the repository root) does not resolve, if it does not.
fn broken(file: &Path, target: &str) -> Option<String> {
    if target.contains("://") || target.starts_with("mailto:") {
        return None;
    }
    let (path, anchor) = match target.split_once('#') {
        Some((p, a)) => (p, Some(a)),
        None => (target, None),
    };
    let resolved = if path.is_empty() {
        file.to_path_buf()
    } else {
        normalize(&file.parent().unwrap_or(Path::new("")).join(path))
    };
    if resolved.starts_with("..") {
        return Some(format!("{target}: leaves the repository"));
    }
    let full = root().join(&resolved);
    if !full.exists() {
        return Some(format!("{target}: no file {}", resolved.display()));
    }
    let anchor = anchor?;
    if full.extension().is_none_or(|e| e != "md") {
        return Some(format!(
            "{target}: an anchor into a file that is not Markdown"
        ));
    }
    let text = std::fs::read_to_string(&full).unwrap();
    let known = anchors(&text);
    (!known.contains(anchor)).then(|| {
        format!(
            "{target}: {} has no heading with anchor #{anchor} (it has: {})",
            resolved.display(),
            known.iter().cloned().collect::<Vec<_>>().join(", ")
        )
    })
}

/// The words of one shell command line the way a POSIX shell splits them: single and double
/// quotes, backslash escapes, a comment from an unquoted `#` at the start of a word. Command
/// substitutions `$(…)` become the word `SUBST` here; their inner commands are returned in
/// `inner` to be checked too.
struct Split {
    commands: Vec<Vec<String>>,
    inner: Vec<String>,
}

fn shell_split(line: &str) -> Split {
    let mut commands = vec![Vec::new()];
    let mut inner = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    let end_word = |word: &mut String, in_word: &mut bool, commands: &mut Vec<Vec<String>>| {
        if *in_word {
            commands.last_mut().unwrap().push(std::mem::take(word));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    word.push(q);
                }
            }
            '"' => {
                in_word = true;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => word.extend(chars.next()),
                        '$' if chars.peek() == Some(&'(') => {
                            chars.next();
                            inner.push(substitution(&mut chars));
                            word.push_str("SUBST");
                        }
                        q => word.push(q),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.extend(chars.next());
            }
            '$' if chars.peek() == Some(&'(') => {
                chars.next();
                inner.push(substitution(&mut chars));
                in_word = true;
                word.push_str("SUBST");
            }
            '#' if !in_word => break,
            ' ' | '\t' => end_word(&mut word, &mut in_word, &mut commands),
            '|' | '&' | ';' | '>' | '<' => {
                end_word(&mut word, &mut in_word, &mut commands);
                // A redirection's target is not a word of the command: skip it.
                if c == '>' || c == '<' {
                    while chars.peek().is_some_and(|&n| n == ' ' || n == '>') {
                        chars.next();
                    }
                    while chars.peek().is_some_and(|&n| n != ' ') {
                        chars.next();
                    }
                } else {
                    while chars.peek() == Some(&c) {
                        chars.next();
                    }
                    commands.push(Vec::new());
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    end_word(&mut word, &mut in_word, &mut commands);
    commands.retain(|c| !c.is_empty());
    Split { commands, inner }
}

/// The text of a `$(…)` up to its closing parenthesis (nested ones counted).
fn substitution(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> String {
    let mut depth = 1;
    let mut text = String::new();
    for c in chars.by_ref() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            _ => {}
        }
        text.push(c);
    }
    text
}

/// The command lines of the ```sh and ```sh-external blocks of a Markdown text: continuation
/// lines joined, heredoc bodies left out; each with the line number it starts on.
fn shell_commands(markdown: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fence: Option<String> = None;
    let mut pending: Option<(usize, String)> = None;
    let mut heredoc: Option<String> = None;
    for (i, line) in markdown.lines().enumerate() {
        let n = i + 1;
        if let Some(info) = line.strip_prefix("```") {
            fence = match fence {
                None => Some(info.trim().to_string()),
                Some(_) => None,
            };
            continue;
        }
        if !matches!(fence.as_deref(), Some("sh" | "sh-external")) {
            continue;
        }
        if let Some(end) = &heredoc {
            if line.trim() == end {
                heredoc = None;
            }
            continue;
        }
        let (start, mut text) = pending.take().unwrap_or((n, String::new()));
        let code = line.split(" #").next().unwrap_or("");
        if let Some(body) = code.trim_end().strip_suffix('\\') {
            text.push_str(body);
            text.push(' ');
            pending = Some((start, text));
            continue;
        }
        text.push_str(line);
        if let Some(at) = text.find("<<") {
            let marker = text[at + 2..].trim_start_matches('-').trim();
            let marker = marker.split_whitespace().next().unwrap_or("");
            heredoc = Some(marker.trim_matches(|c| c == '\'' || c == '"').to_string());
        }
        out.push((start, text));
    }
    out
}

/// Every `chainsmith …` command of a line (and of its `$(…)`), as words; a leading `!` (a
/// command meant to fail) is not part of it.
fn chainsmith_invocations(line: &str) -> Vec<Vec<String>> {
    let split = shell_split(line);
    let mut out: Vec<Vec<String>> = split
        .commands
        .into_iter()
        .map(|mut words| {
            if words.first().is_some_and(|w| w == "!") {
                words.remove(0);
            }
            words
        })
        .filter(|words| words.first().is_some_and(|w| w == "chainsmith"))
        .collect();
    for inner in split.inner {
        out.extend(chainsmith_invocations(&inner));
    }
    out
}

/// Why the CLI's parser refuses `words`, if it does (help and version requests are fine).
fn refused(words: &[String]) -> Option<String> {
    match chainsmith::cli::Cli::try_parse_from(words) {
        Ok(_) => None,
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            None
        }
        Err(e) => Some(e.to_string()),
    }
}

#[test]
fn the_readme_is_short() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines; the reference belongs in docs/"
    );
    // The map of the book: every chapter is one click away from the README.
    let linked: BTreeSet<PathBuf> = links(&readme)
        .into_iter()
        .map(|(_, t)| PathBuf::from(t.split('#').next().unwrap()))
        .collect();
    for chapter in book_chapters() {
        assert!(
            linked.contains(&chapter),
            "README.md does not link to {}",
            chapter.display()
        );
    }
}

#[test]
fn the_summary_lists_every_chapter_and_every_listed_chapter_exists() {
    let chapters = book_chapters();
    assert!(
        chapters.len() >= 15,
        "only {} chapters listed",
        chapters.len()
    );
    let mut listed = BTreeSet::new();
    for chapter in &chapters {
        assert!(
            root().join(chapter).is_file(),
            "{SUMMARY} lists {}, which does not exist",
            chapter.display()
        );
        assert!(
            listed.insert(chapter.clone()),
            "{SUMMARY} lists {} twice",
            chapter.display()
        );
    }
    for file in markdown_files() {
        if file.starts_with("docs") && file != Path::new(SUMMARY) {
            assert!(
                listed.contains(&file),
                "{} is not in {SUMMARY}",
                file.display()
            );
        }
    }
    assert!(root().join("docs/book.toml").is_file());
}

#[test]
fn every_relative_link_resolves() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in markdown_files() {
        let text = std::fs::read_to_string(root().join(&file)).unwrap();
        for (n, target) in links(&text) {
            checked += 1;
            if let Some(why) = broken(&file, &target) {
                problems.push(format!("{}:{n}: {why}", file.display()));
            }
        }
    }
    assert!(checked > 100, "only {checked} links found");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_chainsmith_command_in_a_shell_block_parses() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in markdown_files() {
        let text = std::fs::read_to_string(root().join(&file)).unwrap();
        for (n, line) in shell_commands(&text) {
            for words in chainsmith_invocations(&line) {
                checked += 1;
                if let Some(why) = refused(&words) {
                    problems.push(format!(
                        "{}:{n}: {}\n{why}",
                        file.display(),
                        words.join(" ")
                    ));
                }
            }
        }
    }
    assert!(checked > 60, "only {checked} commands found");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checks_themselves_fail_on_bad_input() {
    // Anchors by GitHub's rules.
    let md = "# `chainsmith connect`: the connection test\n## 1 PKI (80×24)\n### `[[negative]]` — broken\n## Files (`WS/hub/`)\n## Commands\n## Commands\n```sh\n# not a heading\n```\n";
    let got = anchors(md);
    for a in [
        "chainsmith-connect-the-connection-test",
        "1-pki-8024",
        "negative--broken",
        "files-wshub",
        "commands",
        "commands-1",
    ] {
        assert!(got.contains(a), "{a} not in {got:?}");
    }
    assert!(!got.contains("not-a-heading"));
    // Links: code spans and fences are not links; a missing file and a missing anchor are named.
    let md = "see [a](x.md) and `[b](y.md)` and ``[c](z.md)``\n```text\n[d](w.md)\n```\n";
    assert_eq!(links(md), vec![(1, "x.md".to_string())]);
    let readme = Path::new("README.md");
    assert!(broken(readme, "docs/SUMMARY.md").is_none());
    assert!(
        broken(readme, "docs/no-such-chapter.md")
            .unwrap()
            .contains("no file")
    );
    assert!(
        broken(readme, "#no-such-heading")
            .unwrap()
            .contains("no heading")
    );
    assert!(broken(readme, "https://example.com/x").is_none());
    // Commands: pipes, `!`, comments, continuations, substitutions and heredocs.
    let md = "```sh\n! chainsmith connect d --count 1 \\\n  --qos 1   # refused\nx=$(chainsmith hub trust) | tee f\ncat > s <<'T'\nchainsmith not-a-command\nT\n```\n```text\nchainsmith usage [--opt]\n```\n";
    let lines = shell_commands(md);
    let words: Vec<Vec<String>> = lines
        .iter()
        .flat_map(|(_, l)| chainsmith_invocations(l))
        .collect();
    assert_eq!(
        words,
        vec![
            vec!["chainsmith", "connect", "d", "--count", "1", "--qos", "1"],
            vec!["chainsmith", "hub", "trust"],
        ]
    );
    assert!(refused(&words[0]).is_none());
    let bad: Vec<String> = ["chainsmith", "connect", "d", "--no-such-flag"]
        .map(String::from)
        .to_vec();
    assert!(refused(&bad).unwrap().contains("--no-such-flag"));
}
