//! The `chainsmith` binary: parses the command line and hands it to the library's CLI face
//! ([`chainsmith::cli`]); with no command it opens the TUI.

use clap::{CommandFactory, FromArgMatches};

fn main() {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // `--color` is read first so that clap's own help and usage errors follow it as well.
    let command = chainsmith::cli::Cli::command().color(chainsmith::cli::color_in_args(&argv));
    let args = match command
        .try_get_matches_from(argv)
        .and_then(|m| chainsmith::cli::Cli::from_arg_matches(&m))
    {
        Ok(args) => args,
        Err(e) => std::process::exit(chainsmith::cli::usage_error(e)),
    };
    std::process::exit(chainsmith::cli::run(args));
}
