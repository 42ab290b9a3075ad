//! `apply SPEC.toml`: build the PKI a spec describes (docs/reference/spec.md).

use super::{CliResult, Global, print_json};
use crate::fixtures::{self, ApplyOptions};
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct ApplyArgs {
    /// The spec file (TOML: [[ca]], [[device]], [[verification]], [[negative]]).
    pub spec: PathBuf,
    /// Write each entry's exports (its `export = {...}` table) under DIR, with stable names.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Replace entities of the same names that `apply` did not make (imported or made by hand),
    /// and files under --out that hold something else than apply wrote there.
    #[arg(long)]
    pub force: bool,
    /// Only check the spec; make nothing.
    #[arg(long)]
    pub check: bool,
}

pub fn run(global: &Global, args: ApplyArgs) -> CliResult {
    let text = crate::store::read_input_text(&args.spec)
        .with_context(|| format!("reading the spec {}; give the path of a TOML spec file (see assets/fixtures/example.toml)", args.spec.display()))?;
    let file = args.spec.display().to_string();
    if args.check {
        let plan = fixtures::load_plan(&file, &text, super::clock()?.now())?;
        if global.json {
            print_json(&serde_json::json!({ "spec": file, "entries": plan.len() }));
        } else {
            say!(
                "{file}: OK, {} entries ({} CAs)",
                plan.len(),
                plan.cas.len()
            );
        }
        return Ok(());
    }
    let ws = global.workspace()?;
    let bar = super::progress::WorkBar::new(global);
    let manifest = fixtures::apply_watched(
        &ws,
        &file,
        &text,
        &ApplyOptions {
            out: args.out.clone(),
            force: args.force,
        },
        &bar,
    )?;
    drop(bar);
    if global.json {
        print_json(&manifest);
    } else {
        say!(
            "{}: {} made, {} re-issued, {} unchanged (workspace {})",
            file,
            manifest.made,
            manifest.reissued,
            manifest.unchanged,
            manifest.workspace.display()
        );
        for e in manifest.entries.iter().filter(|e| e.fixture.is_some()) {
            say!(
                "  negative fixture {:<24} {}",
                e.name,
                e.fixture.as_deref().unwrap_or_default()
            );
        }
        if let Some(out) = &args.out {
            say!("exports under {}", out.display());
        }
    }
    Ok(())
}
