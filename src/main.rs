//! The `chainsmith` binary: parses the command line and hands it to the library's CLI face
//! ([`chainsmith::cli`]); with no command it opens the TUI.

use clap::Parser;

fn main() {
    let args = match chainsmith::cli::Cli::try_parse() {
        Ok(args) => args,
        Err(e) => std::process::exit(chainsmith::cli::usage_error(e)),
    };
    std::process::exit(chainsmith::cli::run(args));
}
