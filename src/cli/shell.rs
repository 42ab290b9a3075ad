//! `completions SHELL` and `man`: both made from the clap definition of [`super::Cli`], so they
//! list exactly the subcommands and flags this binary takes (docs/reference/install.md says
//! where to put them; `.ci/deb-assets` puts them in the Debian package).

use super::{Cli, CliResult};
use anyhow::Context as _;
use clap::{Args, CommandFactory};
use std::path::PathBuf;

/// `chainsmith completions SHELL`.
#[derive(Args, Debug, Clone)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    pub shell: clap_complete::Shell,
}

/// The shell's completion script on standard output.
pub fn completions(a: &CompletionsArgs) -> CliResult {
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut Cli::command(), "chainsmith", &mut script);
    super::out_bytes(&script);
    Ok(())
}

/// `chainsmith man`.
#[derive(Args, Debug, Clone)]
pub struct ManArgs {
    /// Write every page (chainsmith.1 and one per subcommand, chainsmith-new-device.1, ...)
    /// into DIR instead of printing the main page.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// The man page, roff, on standard output (`chainsmith man | man -l -`), or all of them
/// into a directory (what a package installs under /usr/share/man/man1).
pub fn man(a: &ManArgs) -> CliResult {
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create --out {}", dir.display()))?;
        clap_mangen::generate_to(Cli::command(), dir)
            .with_context(|| format!("cannot write the man pages into {}", dir.display()))?;
        say!("man pages written to {}", dir.display());
        return Ok(());
    }
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut page)?;
    super::out_bytes(&page);
    Ok(())
}
