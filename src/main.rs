use clap::Parser;

fn main() {
    let args = chainsmith::cli::Cli::parse();
    std::process::exit(chainsmith::cli::run(args));
}
