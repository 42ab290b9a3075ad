//! The command line: parse with clap, call `ops`, print text or `--json`.

/// `println!` for the CLI faces: a closed pipe ends the program quietly instead of panicking.
macro_rules! say {
    () => {
        $crate::cli::out("\n")
    };
    ($($arg:tt)*) => {
        $crate::cli::out(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprintln!` for the CLI faces: through [`err`], so peer-chosen text is escaped.
macro_rules! complain {
    ($($arg:tt)*) => {
        $crate::cli::err(&format!("{}\n", format_args!($($arg)*)))
    };
}

mod apply;
mod aws;
mod connect;
mod export;
mod fleet;
mod hub;
mod lifecycle;
mod look;
mod new;
mod progress;
mod shell;
mod tui;

pub use hub::hub_log_line;

use anyhow::{Context as _, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use std::io::IsTerminal as _;
use std::path::PathBuf;

use crate::EngineError;
use crate::store::Workspace;

// The explicit `about` and `long_about` below win over the doc comments of this struct and
// of `Global` and `Command` (clap turns doc comments into help text), so `--help` stays as is.
/// The parsed command line: the global flags and the subcommand (none opens the TUI).
#[derive(Parser, Debug)]
#[command(name = "chainsmith", version, about = "A workbench for test PKI in IoT: chains, proof of possession, export and connection tests.", long_about = None)]
pub struct Cli {
    /// `--workspace` and `--json`, accepted before or after the subcommand.
    #[command(flatten)]
    pub global: Global,
    /// The subcommand; None when chainsmith is started without one (the TUI).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The flags every subcommand takes.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// The workspace directory (default: $CHAINSMITH_WORKSPACE, else the platform data directory).
    // Not clap's `env =`: clap counts an environment value as given on the command line and
    // then prints `--workspace <DIR>` in every usage line as if it were required.
    #[arg(long, global = true, value_name = "DIR")]
    pub workspace: Option<PathBuf>,
    /// Print machine-readable JSON (errors too).
    #[arg(long, global = true)]
    pub json: bool,
    /// Print nothing but warnings and errors (the exit status tells the rest); no progress bar.
    #[arg(long, short = 'q', global = true, conflicts_with = "json")]
    pub quiet: bool,
    /// Colour in messages, help and the TUI: auto (on a terminal, unless NO_COLOR is set),
    /// always, never.
    #[arg(long, global = true, value_name = "WHEN", default_value = "auto")]
    pub color: clap::ColorChoice,
}

/// The subcommands, one per workflow family.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a workspace (one is also created on first use).
    Init {
        /// Where (default: --workspace or the platform data directory).
        dir: Option<PathBuf>,
    },
    /// Make a root, intermediate, device or verification certificate.
    #[command(subcommand)]
    New(new::NewCommand),
    /// Sign a device's CSR (PEM or DER) with a workspace CA.
    SignCsr(new::SignCsrArgs),
    /// The hierarchy: roots, intermediates, devices.
    List(look::ListArgs),
    /// Everything about one entity: fields, extensions, thumbprints, chain check, lint.
    Show(look::ShowArgs),
    /// Describe any certificate, chain, CSR, key or PKCS#12 file.
    Inspect(look::InspectArgs),
    /// Check entities for mistakes that stop devices connecting; exits 1 on errors.
    Lint(look::LintArgs),
    /// Write an entity as PEM, DER, PKCS#12, the Azure SDK tool's layout or an IoT Edge snippet.
    Export(export::ExportArgs),
    /// Bring an existing CA or certificate (PEM cert + key, or PKCS#12) into the workspace.
    Import(lifecycle::ImportArgs),
    /// A new certificate with the same subject (and key unless --rekey); the old one goes to history.
    Renew(lifecycle::RenewArgs),
    /// Mark an entity revoked (its CA's CRL lists it). Azure IoT Hub does not check CRLs.
    Revoke(lifecycle::RevokeArgs),
    /// A CRL signed by a CA, listing what it issued that is revoked.
    Crl(lifecycle::CrlArgs),
    /// The interactive workbench (also what `chainsmith` with no arguments opens).
    Tui(tui::TuiArgs),
    /// The guided workshop: the seed tutorial step by step, checked against your workspace.
    Guide(tui::GuideArgs),
    /// Build a whole test PKI from a spec file, idempotently (negative fixtures included).
    Apply(apply::ApplyArgs),
    /// Connect a device over mutual TLS: every step, every round trip, and why it failed.
    Connect(connect::ConnectArgs),
    /// The embedded local IoT Hub: registry, server, twin, C2D, methods.
    #[command(subcommand)]
    Hub(hub::HubCommand),
    /// The local AWS IoT Core: registration code, CAs, certificates, things, policies, templates.
    #[command(subcommand)]
    Aws(aws::AwsCommand),
    /// Many devices at once against a hub or broker: live figures, reports, shards.
    #[command(subcommand)]
    Fleet(fleet::FleetCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(shell::CompletionsArgs),
    /// Print the man page (roff) on standard output: `chainsmith man | man -l -`.
    Man(shell::ManArgs),
}

/// A failure already explained to the user; carries the exit code.
pub(crate) struct Failed(pub(crate) i32);

/// What every subcommand returns: done, or the error `run` prints and turns into an exit code.
pub(crate) type CliResult = Result<(), anyhow::Error>;

/// A command line clap could not parse. With `--json` anywhere on it, the error is JSON on
/// standard output like every other error; otherwise clap's own text (help and version too).
pub fn usage_error(e: clap::Error) -> i32 {
    use clap::error::ErrorKind;
    let wants_json = std::env::args().any(|a| a == "--json");
    let is_info = matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if wants_json && !is_info {
        let message = e.render().to_string();
        let message = message.trim().trim_start_matches("error: ").to_string();
        print_json(&serde_json::json!({ "error": { "kind": "usage", "message": message } }));
        return 2;
    }
    if is_info {
        let _ = e.print();
    } else {
        // clap quotes the offending argument, which a script may have taken from a file or a
        // peer: plain text through the escaper (clap's colours are lost on errors only).
        err(&e.render().to_string());
    }
    e.exit_code()
}

/// Run the parsed command line and return the process exit code: 0 when done, the code a
/// subcommand chose when it already explained its failure (`lint` finding errors), else 1
/// after printing the error as `error: ...` or, with `--json`, as an error object.
pub fn run(cli: Cli) -> i32 {
    use std::sync::atomic::Ordering;
    let json = cli.global.json;
    QUIET.store(cli.global.quiet, Ordering::Relaxed);
    COLOR_STDERR.store(
        wants_color(cli.global.color, std::io::stderr().is_terminal()),
        Ordering::Relaxed,
    );
    // No subcommand: the TUI.
    let command = cli.command.unwrap_or(Command::Tui(tui::TuiArgs::default()));
    let result = match command {
        Command::Init { dir } => init(&cli.global, dir),
        Command::New(c) => new::run(&cli.global, c),
        Command::SignCsr(a) => new::sign_csr(&cli.global, a),
        Command::List(a) => look::list(&cli.global, a),
        Command::Show(a) => look::show(&cli.global, a),
        Command::Inspect(a) => look::inspect(&cli.global, a),
        Command::Lint(a) => look::lint(&cli.global, a),
        Command::Export(a) => export::run(&cli.global, a),
        Command::Import(a) => lifecycle::import(&cli.global, a),
        Command::Renew(a) => lifecycle::renew(&cli.global, a),
        Command::Revoke(a) => lifecycle::revoke(&cli.global, a),
        Command::Crl(a) => lifecycle::crl(&cli.global, a),
        Command::Hub(c) => hub::run(&cli.global, c),
        Command::Aws(c) => aws::run(&cli.global, c),
        Command::Fleet(c) => fleet::run(&cli.global, c),
        Command::Connect(a) => connect::run(&cli.global, a),
        Command::Apply(a) => apply::run(&cli.global, a),
        Command::Tui(a) => tui::tui(&cli.global, a),
        Command::Guide(a) => tui::guide(&cli.global, a),
        Command::Completions(a) => shell::completions(&a),
        Command::Man(a) => shell::man(&a),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            if let Some(Failed(code)) = e.downcast_ref::<Failed>() {
                return *code;
            }
            let kind = error_kind(&e);
            let message = hinted_message(&e);
            if json {
                let mut v = serde_json::json!({ "error": { "kind": kind, "message": message } });
                // A batch that raced another process: which names are whose, for scripts.
                // (Lifecycle calls such as `ops::new_devices_or_slot` carry it inside theirs.)
                let store = engine_errors(&e).find_map(EngineError::store);
                if let Some(crate::store::Error::Raced { made, taken }) = store {
                    v["error"]["made"] = serde_json::json!(made);
                    v["error"]["taken"] = serde_json::json!(taken);
                }
                print_json(&v);
            } else {
                err(&format!("error: {message}\n"));
            }
            1
        }
    }
}

impl std::fmt::Debug for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "failed with exit code {}", self.0)
    }
}
impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "failed with exit code {}", self.0)
    }
}
impl std::error::Error for Failed {}

/// The error and its causes, skipping causes whose words the message already contains
/// (typed errors often repeat their source in their own message).
fn error_message(e: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !message.contains(&text) {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&text);
        }
    }
    message
}

/// The error's message with the CLI's hint for its remedy, as both `error:` and `--json` say it.
fn hinted_message(e: &anyhow::Error) -> String {
    let mut message = error_message(e);
    if let Some(hint) = flag_hint(e) {
        message.push_str(&format!(" ({hint})"));
    }
    message
}

/// The engine errors in a chain, outermost first.
fn engine_errors(e: &anyhow::Error) -> impl Iterator<Item = EngineError<'_>> {
    e.chain().filter_map(EngineError::find)
}

/// The `--json` kind: the engine error's own `kind()`, wherever it sits in the chain.
fn error_kind(e: &anyhow::Error) -> &'static str {
    EngineError::in_chain(e).map_or("error", EngineError::kind)
}

/// The CLI's hint for an engine error's remedy: the engine says the fix in domain words, the
/// CLI names the flag that does it.
fn flag_hint(e: &anyhow::Error) -> Option<String> {
    let remedy = engine_errors(e).find_map(EngineError::remedy)?;
    Some(remedy_hint(remedy, e))
}

/// The CLI's words for a remedy: the flag or command that does it, with the name the error
/// carries where the command needs one (the issuer to create, the directory to make a
/// workspace in, the CA to issue devices under).
fn remedy_hint(remedy: crate::error::Remedy, e: &anyhow::Error) -> String {
    use crate::error::Remedy as R;
    use crate::mqtt::local::PrepareError;
    use crate::{fleet::FleetError, store::Error as S};
    let named = engine_errors(e).find_map(|c| match (remedy, c.store(), c) {
        (R::MakeRoot, Some(S::NoIssuer { name, .. }), _) => Some(format!(
            "`chainsmith new root {name}` creates it; `chainsmith list` shows what exists"
        )),
        (R::InitWorkspace, Some(S::NoWorkspace(dir)), _) => {
            Some(format!("`chainsmith init {}` creates one", dir.display()))
        }
        (R::IssueDevices, _, EngineError::Fleet(FleetError::NoDevicesUnder(ca))) => Some(format!(
            "`chainsmith new device ID --issuer {ca}` makes some"
        )),
        (R::HubTransport, _, EngineError::Prepare(PrepareError::TransportOff(what))) => {
            Some(format!(
                "restart `chainsmith hub serve` with {}",
                if *what == "AMQP" {
                    "--amqp-port 5671 for --transport amqp"
                } else {
                    "--ws-port 443 for --transport mqtt-ws or amqp-ws"
                }
            ))
        }
        _ => None,
    });
    named.unwrap_or_else(|| static_hint(remedy).to_string())
}

/// `--key`: the engine's words, and the CLI's hint where the engine names a fix.
pub(crate) fn parse_key_alg(s: &str) -> Result<crate::pki::KeyAlg, String> {
    s.parse::<crate::pki::KeyAlg>()
        .map_err(|e| match e.remedy() {
            Some(r) => format!("{e} ({})", static_hint(r)),
            None => e.to_string(),
        })
}

/// The CLI's words for a remedy whose flag or command needs no name from the error.
fn static_hint(remedy: crate::error::Remedy) -> &'static str {
    use crate::error::Remedy as R;
    match remedy {
        R::Replace => "pass --force to replace",
        R::Overwrite => "pass --force to overwrite, or choose another --out",
        R::Password => {
            "give it with --password-file FILE, CHAINSMITH_PFX_PASSWORD, or --password P"
        }
        R::Issuer => "choose it with --issuer",
        R::Pathlen => "set it with --pathlen",
        R::CommonName => "give it with --cn NAME, or leave --cn out",
        R::Validity => {
            "--days N (at least 1), --not-before, --not-after: give at most two; an expired fixture takes a past --not-after"
        }
        R::CrlDays => "--days N, at least 1",
        R::Workspace => "--workspace DIR chooses another",
        R::OutDir => "--out DIR chooses it",
        R::Name => "pass --name NAME",
        R::OneFormat => "--stdout takes exactly one --format",
        R::Rekey => "renew with --rekey",
        R::SignCsr => "`chainsmith sign-csr NEW.csr --issuer CA --force`",
        R::ImportIssuer => "`chainsmith import CA.pem CA.key --name NAME`",
        R::CertificatesOnly => "--format pem",
        R::PickCa | R::PickDevice => "`chainsmith list` shows the workspace's entities",
        R::RegisterCa => "`chainsmith hub ca add CA` registers it",
        R::RegisterDevice => "`chainsmith hub device add ID --auth ca|self-signed` registers it",
        R::UnregisterCa => "`chainsmith hub ca remove CA` removes it",
        R::UnregisterDevice => "`chainsmith hub device remove ID` removes it",
        R::Thumbprints => {
            "pass --primary THUMBPRINT, --secondary THUMBPRINT, or --from NAME to take them from a workspace device"
        }
        R::CopyThumbprint => "`chainsmith show DEVICE` prints it",
        R::NoThumbprints => "drop --primary/--secondary/--from, or pass --auth self-signed",
        R::VerificationCertificate => {
            "`chainsmith new verification --issuer CA --code CODE` makes one; `chainsmith hub ca prove CA` (or `hub dps ca prove CA`) does the whole proof"
        }
        R::HubCaFile => "`chainsmith hub trust` prints the hub's CA file",
        R::StartHub => "`chainsmith hub serve` starts it",
        R::ListEntities => "`chainsmith list` shows them",
        R::ShowEntity => "`chainsmith show NAME` shows their issuer and key",
        R::WeakKeyFixture => "`chainsmith apply SPEC` applies it",
        R::Port => "pick another with --port (or --amqp-port, --ws-port)",
        R::Shard => "pass --shard K/N",
        R::NewOutDir => "give --out a new directory",
        R::DeviceFiles => "pass --cert FILE --key FILE",
        R::HubTransport => "restart `chainsmith hub serve` with --amqp-port 5671 or --ws-port 443",
        // Without the name the error carries (`remedy_hint` puts it in).
        R::MakeRoot => "`chainsmith new root NAME` makes one",
        R::InitWorkspace => "`chainsmith init DIR` creates one",
        R::IssueDevices => "`chainsmith new device ID --issuer CA` makes some",
    }
}

/// A JSON value, pretty-printed: every `--json` answer but the streams. Exact once parsed;
/// C1 and bidi controls are `\uXXXX` escapes ([`crate::text::escape_json`]).
pub(crate) fn print_json<T: Serialize>(value: &T) {
    print_json_text(&serde_json::to_string_pretty(value).expect("serialisable"));
}

/// The CA certificates `--ca VALUE` names for `connect` and `fleet run`: a file (PEM with one or
/// more certificates, or one DER certificate), else a workspace entity of that name.
pub(crate) fn read_ca(global: &Global, value: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    let path = std::path::Path::new(value);
    if path.exists() {
        let bytes =
            crate::store::read_input(path).with_context(|| format!("reading --ca {value}"))?;
        let ders: Vec<Vec<u8>> = match pem::parse_many(&bytes) {
            Ok(blocks) if !blocks.is_empty() => blocks
                .into_iter()
                .filter(|b| b.tag() == "CERTIFICATE")
                .map(|b| b.into_contents())
                .collect(),
            _ => vec![bytes],
        };
        for d in &ders {
            crate::pki::inspect::CertView::from_der(d).map_err(|e| anyhow!("--ca {value} is not a certificate file: {e}; give the PEM of the CA that issued the server's certificate"))?;
        }
        if ders.is_empty() {
            bail!(
                "--ca {value} holds no CERTIFICATE; give the PEM of the CA that issued the server's certificate"
            );
        }
        return Ok(ders);
    }
    match global
        .existing_workspace()
        .ok()
        .and_then(|ws| ws.load(value).ok())
    {
        Some(e) => Ok(vec![e.cert_der]),
        None => bail!(
            "--ca {value}: no such file and no workspace entity of that name; give the CA's PEM file"
        ),
    }
}

/// A list: as one JSON array with --json, else a line each (`line`), or `empty` when there are
/// none (nothing when it is None).
pub(crate) fn print_rows<T: Serialize>(
    global: &Global,
    rows: &[T],
    empty: Option<&str>,
    line: impl Fn(&T) -> String,
) {
    if global.json {
        print_json(&rows);
    } else if let (true, Some(empty)) = (rows.is_empty(), empty) {
        say!("{empty}");
    } else {
        for r in rows {
            say!("{}", line(r));
        }
    }
}

/// One JSON value on one line (`hub serve --log json`, `hub monitor --json`), exact once
/// parsed, escaped as [`print_json`] escapes.
pub(crate) fn print_json_line<T: Serialize>(value: &T) {
    print_json_text(&serde_json::to_string(value).expect("serialisable"));
}

/// Every JSON document the CLI prints goes out here, so none carries a raw C1 or bidi control.
fn print_json_text(json: &str) {
    out_raw(&format!("{}\n", crate::text::escape_json(json)));
}

/// `--quiet`: [`out`] prints nothing (errors and warnings go to standard error as ever).
/// Set once by [`run`], before any command prints.
static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether standard error's `error:`, `warning:` and `hint:` are coloured (`--color`,
/// `NO_COLOR`, a terminal). Set once by [`run`].
static COLOR_STDERR: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether to colour a stream: `--color always|never` as said; `auto` on a terminal unless
/// `NO_COLOR` is set or the terminal says it has no colours (`TERM=dumb`).
pub(crate) fn wants_color(choice: clap::ColorChoice, terminal: bool) -> bool {
    match choice {
        clap::ColorChoice::Always => true,
        clap::ColorChoice::Never => false,
        clap::ColorChoice::Auto => {
            terminal
                && !crate::tui::theme::no_color_env()
                && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
        }
    }
}

/// `--color` as the command line gives it, read before clap parses it, so that clap's own
/// help and usage errors follow it too (clap's `auto` already honours `NO_COLOR`).
pub fn color_in_args(args: &[std::ffi::OsString]) -> clap::ColorChoice {
    let mut choice = clap::ColorChoice::Auto;
    let mut words = args.iter().map(|a| a.to_string_lossy());
    while let Some(w) = words.next() {
        if w == "--" {
            break;
        }
        let value = match w.strip_prefix("--color") {
            Some("") => words.next().map(|v| v.into_owned()),
            Some(rest) => rest.strip_prefix('=').map(str::to_string),
            None => None,
        };
        choice = match value.as_deref() {
            Some("always") => clap::ColorChoice::Always,
            Some("never") => clap::ColorChoice::Never,
            Some("auto") => clap::ColorChoice::Auto,
            _ => choice,
        };
    }
    choice
}

/// Text for a person on standard output. Every text line of the CLI comes through here, so
/// this is where control characters from certificates, files and peers are made visible
/// (newline and tab stay: they are our layout). Nothing with `--quiet`.
pub(crate) fn out(text: &str) {
    if QUIET.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    out_raw(&crate::text::escape_layout(text));
}

/// Bytes the user asked for on standard output as they are (a completion script, a man
/// page): printed with `--quiet` too, as `export --stdout` writes its file.
pub(crate) fn out_bytes(bytes: &[u8]) {
    out_raw(&String::from_utf8_lossy(bytes));
}

/// Whether `--quiet` was given: commands that print on standard error for a person (hints)
/// ask before they do.
pub(crate) fn quiet() -> bool {
    QUIET.load(std::sync::atomic::Ordering::Relaxed)
}

/// PEM on standard output, byte for byte (its CRLF line ends included) when it is plain
/// PEM text, as it is meant for files and pipes; escaped like [`out`] if it holds anything else.
pub(crate) fn out_pem(pem: &str) {
    if pem
        .bytes()
        .all(|b| b == b'\r' || b == b'\n' || (0x20..0x7f).contains(&b))
    {
        out_raw(pem);
    } else {
        out(pem);
    }
}

/// Text for a person on standard error (errors, warnings, progress), escaped like [`out`].
pub(crate) fn err(text: &str) {
    use std::io::Write;
    let text = crate::text::escape_layout(text);
    let text = if COLOR_STDERR.load(std::sync::atomic::Ordering::Relaxed) {
        paint_label(&text)
    } else {
        text.into_owned()
    };
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// The colour of each label a standard-error line can start with: bold red errors, bold
/// yellow warnings, cyan hints (SGR codes; eight-colour, so every terminal has them).
const LABEL_COLORS: [(&str, &str); 3] = [
    ("error:", "\x1b[1;31m"),
    ("warning:", "\x1b[1;33m"),
    ("hint:", "\x1b[36m"),
];

/// `text` with its leading label, if it has one, in the label's colour.
fn paint_label(text: &str) -> String {
    for (label, sgr) in LABEL_COLORS {
        if let Some(rest) = text.strip_prefix(label) {
            return format!("{sgr}{label}\x1b[0m{rest}");
        }
    }
    text.to_string()
}

/// Write to standard output as is (JSON, escaped by [`print_json_text`]). A reader that went away
/// (`chainsmith list | head`) ends the program quietly, as it does for other Unix tools,
/// instead of a panic from `println!`.
/// A long-running server's log line on standard output (`hub serve`): when the reader has
/// gone (`hub serve | head -3`, a log shipper that died), the server says so once on standard
/// error and goes on serving without its log, instead of exiting as a one-shot command does
/// on a closed pipe (the hostile pass found the hub gone, with status 0).
pub(crate) fn log_out(line: &str, json: bool) {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    static CLOSED: AtomicBool = AtomicBool::new(false);
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let text = if json {
        format!("{}\n", crate::text::escape_json(line))
    } else {
        format!("{}\n", crate::text::escape_layout(line))
    };
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        && !CLOSED.swap(true, Ordering::Relaxed)
    {
        err(&format!(
            "warning: standard output cannot be written ({e}); the hub goes on serving without its log (`hub monitor` still shows events)\n"
        ));
    }
}

fn out_raw(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

pub(crate) fn warn(global: &Global, warnings: &[String]) {
    if !global.json {
        for w in warnings {
            complain!("warning: {w}");
        }
    }
}

impl Global {
    /// The workspace directory: `--workspace`, else `$CHAINSMITH_WORKSPACE`, else the
    /// platform data directory.
    pub fn workspace_dir(&self) -> PathBuf {
        self.workspace
            .clone()
            .or_else(|| {
                std::env::var_os("CHAINSMITH_WORKSPACE")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
            .unwrap_or_else(Workspace::default_dir)
    }

    /// The workspace, created on first use.
    pub fn workspace(&self) -> anyhow::Result<Workspace> {
        Ok(Workspace::open_or_create(&self.workspace_dir())?.with_clock(clock()?))
    }

    /// The workspace, which must exist (for read-only commands).
    pub fn existing_workspace(&self) -> anyhow::Result<Workspace> {
        Ok(Workspace::open(&self.workspace_dir())?.with_clock(clock()?))
    }
}

/// The clock every command uses: the system's, unless `CHAINSMITH_NOW` fixes it. An
/// environment variable rather than a flag because it exists for tests and reproducible
/// output (every subprocess of a test inherits it), not for everyday use.
pub(crate) fn clock() -> anyhow::Result<crate::clock::Clock> {
    crate::clock::Clock::from_env().map_err(anyhow::Error::from)
}

fn init(global: &Global, dir: Option<PathBuf>) -> CliResult {
    let dir = dir.unwrap_or_else(|| global.workspace_dir());
    let ws = Workspace::init(&dir)?;
    if global.json {
        print_json(&serde_json::json!({ "workspace": ws.root() }));
    } else {
        say!("workspace ready at {}", ws.root().display());
    }
    Ok(())
}
