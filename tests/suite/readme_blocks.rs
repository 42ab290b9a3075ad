//! README.md's ```sh blocks, then the book's (`docs/`, its chapters in `docs/SUMMARY.md` order),
//! run in order as a newcomer types them (issue 27, item 3; issue 26 moved most of them into the
//! book): a ```sh block means "runnable"; usage lines and commands that need what this machine
//! lacks use another fence (```text, ```sh-external), as the book's "Command blocks" section says.
//!
//! Every ```sh block but the README's first (the set-up line that CI runs itself, `.ci/run`) runs in one
//! fresh temporary directory, one `bash -euo pipefail` per block, with the real `chainsmith` first
//! on PATH and `CHAINSMITH_WORKSPACE=$PWD/pki` (what the walkthrough exports). Where a block says
//! `# (in another terminal) chainsmith hub serve …`, the test starts that hub in the background,
//! waits for its control socket, and runs the rest of the block; the hub runs until the next such
//! line replaces it or the last chapter ends. The whole run is in its own network namespace, where the
//! hub's fixed ports (8883, 5671, 443) are free.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::isolated;

/// The fence info string of a block the test runs.
const RUNNABLE_FENCE: &str = "sh";

/// A comment line that tells the reader to start the hub in a second terminal; the test starts
/// the `chainsmith hub serve …` that follows it on the line.
const HUB_MARKER: &str = "# (in another terminal";
const HUB_COMMAND: &str = "chainsmith hub serve";

/// Longest a block may run. The slowest blocks (two `connect --dps` tests of 5 messages a second
/// apart; the fleet's 15 s run with its storm) take about 16 s on the shared 2-core machine; 90 s
/// leaves room for load while a command that hangs still ends the test, well inside the
/// 2 minutes the whole README should take.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(90);

/// Longest wait for a started `hub serve` to answer on its control socket (it does within a
/// second: it makes its TLS certificate and binds three ports).
const HUB_START_TIMEOUT: Duration = Duration::from_secs(30);

/// One ```sh block of a Markdown text.
#[derive(Debug, Clone)]
struct Block {
    /// The Markdown file it is in, relative to the repository root (for messages).
    file: String,
    /// 1-based line number of the block's first command line in the Markdown file.
    line: usize,
    /// Its lines, each with its 1-based line number.
    lines: Vec<(usize, String)>,
}

impl Block {
    fn first(&self) -> &str {
        self.lines.first().map(|(_, l)| l.as_str()).unwrap_or("")
    }
}

/// A piece of a block: shell lines, or the hub a marker line starts.
enum Step<'a> {
    Shell(&'a [(usize, String)]),
    Hub { line: usize, command: String },
}

/// Every block fenced ```` ```sh ```` of `file`, whose text is `markdown`, in order.
fn sh_blocks(file: &str, markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, Block)> = None;
    for (i, text) in markdown.lines().enumerate() {
        let n = i + 1;
        match open.take() {
            None => {
                if let Some(info) = text.strip_prefix("```") {
                    let block = Block {
                        file: file.to_string(),
                        line: n + 1,
                        lines: Vec::new(),
                    };
                    open = Some((info.trim().to_string(), block));
                }
            }
            Some((info, block)) if text.trim_end() == "```" => {
                if info == RUNNABLE_FENCE {
                    blocks.push(block);
                }
            }
            Some((info, mut block)) => {
                block.lines.push((n, text.to_string()));
                open = Some((info, block));
            }
        }
    }
    blocks
}

/// A block cut at its hub markers.
fn steps(block: &Block) -> Vec<Step<'_>> {
    let mut steps = Vec::new();
    let mut from = 0;
    for (i, (n, text)) in block.lines.iter().enumerate() {
        if !text.trim_start().starts_with(HUB_MARKER) {
            continue;
        }
        if let Some(at) = text.find(HUB_COMMAND) {
            steps.push(Step::Shell(&block.lines[from..i]));
            // The command ends where its own comment starts.
            let command = text[at..].split(" #").next().unwrap_or("").trim();
            steps.push(Step::Hub {
                line: *n,
                command: command.to_string(),
            });
            from = i + 1;
        }
    }
    steps.push(Step::Shell(&block.lines[from..]));
    steps
}

/// `set -e` does not stop at a command negated with `!`, so one is only checked when it is the
/// last command of its step (its status is the shell's). Anything after it is refused here.
fn negation_is_last(file: &str, lines: &[(usize, String)]) -> Result<(), String> {
    let mut negated_at = None;
    let mut continued = false;
    for (n, text) in lines {
        let t = text.trim();
        let command = !continued && !t.is_empty() && !t.starts_with('#');
        if command {
            if let Some(at) = negated_at {
                return Err(format!(
                    "{file} line {at}: a command negated with `!` must end its block (set -e \
                     does not stop at it), but line {n} follows: {t}"
                ));
            }
            if t.starts_with("! ") {
                negated_at = Some(*n);
            }
        }
        continued = t
            .split(" #")
            .next()
            .unwrap_or("")
            .trim_end()
            .ends_with('\\');
    }
    Ok(())
}

/// Where the blocks run, and the hub a marker started.
struct Runner {
    dir: PathBuf,
    path: OsString,
    hub: Option<Hub>,
}

struct Hub {
    child: Child,
    log: PathBuf,
}

impl Hub {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        // Ctrl-C's effect (the hub stops on SIGINT and SIGTERM alike), then make sure.
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + HUB_START_TIMEOUT;
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Runner {
    fn new(dir: &Path) -> Runner {
        let bin = assert_cmd::cargo::cargo_bin("chainsmith");
        let mut path = bin.parent().unwrap().as_os_str().to_owned();
        if let Some(old) = std::env::var_os("PATH") {
            path.push(":");
            path.push(old);
        }
        std::fs::create_dir_all(dir.join("home")).unwrap();
        Runner {
            dir: dir.to_path_buf(),
            path,
            hub: None,
        }
    }

    fn workspace(&self) -> PathBuf {
        self.dir.join("pki")
    }

    /// A command in the README's world: a fresh directory, its own HOME, none of the variables
    /// that would change what chainsmith does (a fixed clock, a password, a shard).
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.current_dir(&self.dir)
            .env("PATH", &self.path)
            .env("HOME", self.dir.join("home"))
            .env("CHAINSMITH_WORKSPACE", self.workspace())
            .env_remove("CHAINSMITH_NOW")
            .env_remove("CHAINSMITH_PFX_PASSWORD")
            .env_remove("CHAINSMITH_SHARDS")
            .env_remove("JOB_COMPLETION_INDEX")
            .stdin(Stdio::null());
        c
    }

    fn run(&mut self, block: &Block) -> Result<(), String> {
        for step in steps(block) {
            match step {
                Step::Shell(lines) => self.shell(block, lines)?,
                Step::Hub { line, command } => self.start_hub(block, line, &command)?,
            }
        }
        Ok(())
    }

    fn shell(&self, block: &Block, lines: &[(usize, String)]) -> Result<(), String> {
        negation_is_last(&block.file, lines)?;
        let script: String = lines.iter().map(|(_, l)| format!("{l}\n")).collect();
        if script.trim().is_empty() {
            return Ok(());
        }
        let out = self
            .command("timeout")
            .arg(BLOCK_TIMEOUT.as_secs().to_string())
            .args(["bash", "-euo", "pipefail", "-c", &script])
            .output()
            .map_err(|e| format!("cannot run bash under timeout: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        let how = match out.status.code() {
            Some(124) => format!("timed out after {} s", BLOCK_TIMEOUT.as_secs()),
            _ => format!("failed ({})", out.status),
        };
        let mut msg = format!(
            "{} block at line {} (`{}`), lines {}-{}, {how}\n--- stdout\n{}\n--- stderr\n{}",
            block.file,
            block.line,
            block.first(),
            lines.first().map_or(block.line, |l| l.0),
            lines.last().map_or(block.line, |l| l.0),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        if let Some(hub) = &self.hub {
            let _ = write!(msg, "\n--- hub log\n{}", hub.log());
        }
        Err(msg)
    }

    /// Start the hub the marker names (stopping one an earlier marker started: the reader's
    /// second terminal has one hub), and wait until it answers on its control socket.
    fn start_hub(&mut self, block: &Block, line: usize, command: &str) -> Result<(), String> {
        self.hub = None;
        let log = self.dir.join(format!("hub-line-{line}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = self
            .command("bash")
            .args(["-c", &format!("exec {command}")])
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .map_err(|e| format!("cannot start `{command}`: {e}"))?;
        let hub = Hub { child, log };
        let control = self.workspace().join("hub/control.sock");
        let started = Instant::now();
        let mut hub = hub;
        while UnixStream::connect(&control).is_err() {
            let ended = hub.child.try_wait().ok().flatten();
            if ended.is_some() || started.elapsed() > HUB_START_TIMEOUT {
                let why = ended.map_or_else(
                    || format!("did not answer within {} s", HUB_START_TIMEOUT.as_secs()),
                    |s| format!("exited ({s})"),
                );
                return Err(format!(
                    "{} block at line {} (`{}`): the hub of line {line} (`{command}`) {why}\n--- hub log\n{}",
                    block.file,
                    block.line,
                    block.first(),
                    hub.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.hub = Some(hub);
        Ok(())
    }
}

/// Run `blocks` in order in `dir`; the first failure, named, with its output.
fn run_all(blocks: &[Block], dir: &Path) -> Result<(), String> {
    let mut runner = Runner::new(dir);
    for block in blocks {
        runner.run(block)?;
    }
    Ok(())
}

#[test]
fn every_sh_block_runs_in_order() {
    if !isolated::in_own_netns("readme_blocks::every_sh_block_runs_in_order") {
        return;
    }
    let read = |file: &Path| {
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap()
    };
    let blocks = sh_blocks("README.md", &read(Path::new("README.md")));
    // The set-up block (apt, cargo install, .ci/run) is CI's own first step: skip exactly it.
    let (setup, readme) = blocks.split_first().expect("README.md has ```sh blocks");
    assert!(
        setup.first().contains("cargo install") && setup.lines.len() == 2,
        "the README's first ```sh block should be the two set-up commands: {setup:?}"
    );
    // The walkthrough first, then the book, chapter after chapter as a reader goes.
    let mut rest: Vec<Block> = readme.to_vec();
    for chapter in crate::docs::book_chapters() {
        rest.extend(sh_blocks(&chapter.to_string_lossy(), &read(&chapter)));
    }
    assert!(rest.len() > 20, "only {} runnable blocks found", rest.len());
    let dir = tempfile::tempdir().unwrap();
    if let Err(e) = run_all(&rest, dir.path()) {
        panic!("{e}");
    }
}

#[test]
fn a_failing_block_is_named_with_its_output() {
    let markdown = "# t\n\n```text\nnot run [--opt]\n```\n\n```sh\necho ran-first\n```\n\n```sh\necho before-the-failure\nfalse\necho never\n```\n";
    let blocks = sh_blocks("t.md", markdown);
    assert_eq!(blocks.len(), 2, "{blocks:?}");
    let dir = tempfile::tempdir().unwrap();
    let err = run_all(&blocks, dir.path()).unwrap_err();
    assert!(
        err.contains("t.md block at line 12 (`echo before-the-failure`)"),
        "{err}"
    );
    assert!(err.contains("before-the-failure\n"), "{err}");
    assert!(!err.contains("\nnever"), "{err}");
    assert!(dir.path().join("home").is_dir());
}

#[test]
fn a_negation_must_end_its_block() {
    let markdown = "```sh\n! false \\\n  --flag   # refused\n# a comment\n```\n```sh\n! true\necho after\n```\n";
    let blocks = sh_blocks("t.md", markdown);
    assert!(negation_is_last("t.md", &blocks[0].lines).is_ok());
    let err = negation_is_last("t.md", &blocks[1].lines).unwrap_err();
    assert!(
        err.contains("t.md line 7") && err.contains("line 8"),
        "{err}"
    );
}
