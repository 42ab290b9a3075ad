//! `tui` and `guide`: open the workbench (and `chainsmith` with no arguments does too).

use super::{CliResult, Global};
use crate::tui::{self, Tab};
use clap::Args;

#[derive(Args, Debug, Clone, Default)]
pub struct TuiArgs {}

#[derive(Args, Debug, Clone, Default)]
pub struct GuideArgs {
    /// Print the workshop steps, their status in this workspace and the equivalent
    /// openssl / az commands, instead of opening the TUI.
    #[arg(long)]
    pub text: bool,
    /// With --text or --json: the IoT Central track (DPS; chainsmith / az iot dps commands).
    #[arg(long, conflicts_with = "aws")]
    pub central: bool,
    /// With --text or --json: the AWS IoT Core track (CA registration, JITP, shadow;
    /// chainsmith / aws iot commands).
    #[arg(long)]
    pub aws: bool,
}

pub fn tui(global: &Global, _a: TuiArgs) -> CliResult {
    tui::run(
        &global.workspace_dir(),
        Tab::Pki,
        super::clock()?,
        tui::theme::Theme::for_choice(global.color),
    )
}

pub fn guide(global: &Global, a: GuideArgs) -> CliResult {
    if a.text || global.json {
        let ws = global.workspace()?;
        let (metas, _) = ws.list()?;
        let rows = crate::ops::tree(metas, ws.now());
        let facts = tui::guide::facts_from_disk(&ws, &rows);
        let track = if a.central {
            tui::guide::Track::Central
        } else if a.aws {
            tui::guide::Track::Aws
        } else {
            tui::guide::Track::Hub
        };
        if global.json {
            let steps: Vec<_> = track
                .steps()
                .iter()
                .map(|s| {
                    let l = s.lesson();
                    let (status, detail) = match tui::guide::status(s, &rows, &facts) {
                        tui::guide::StepStatus::Done(d) => ("done", d),
                        tui::guide::StepStatus::Todo => ("todo", String::new()),
                    };
                    serde_json::json!({ "id": s.id, "title": l.title, "status": status, "detail": detail, "tool": track.tool(), "openssl": l.openssl, "az": l.az })
                })
                .collect();
            super::print_json(&serde_json::json!({ "steps": steps }));
        } else {
            super::out(&tui::guide::text_report(track, &rows, &facts));
        }
        return Ok(());
    }
    tui::run(
        &global.workspace_dir(),
        Tab::Guide,
        super::clock()?,
        tui::theme::Theme::for_choice(global.color),
    )
}
