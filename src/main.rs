use clap::Parser;

fn main() {
    let args = match chainsmith::cli::Cli::try_parse() {
        Ok(args) => args,
        Err(e) => std::process::exit(chainsmith::cli::usage_error(e)),
    };
    std::process::exit(chainsmith::cli::run(args));
}
