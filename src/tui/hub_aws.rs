//! The Hub tab's AWS side (`c` switches Azure | AWS): the local AWS IoT Core's registry (CAs
//! and certificates with their status, things, policies, provisioning templates) and whether
//! `aws serve` runs, with its endpoint. Read off the render loop by `Command::HubRegistry`
//! (the same background read that refreshes the Azure side) and delivered as
//! `HubAction::Aws`; drawn here from that state alone.

use super::theme::Theme;
use crate::store::Workspace;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

/// Rows read per list: AWS allows far more (its quotas go to millions of certificates), but
/// the tab shows a screenful and counts the rest, so a huge registry costs one read.
pub const MAX_ROWS: usize = 200;

/// One CA or certificate: its name (workspace name, else its certificate id) and status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusRow {
    /// The workspace name it was registered from, or its certificate id.
    pub name: String,
    /// AWS's status word (ACTIVE, INACTIVE, REVOKED, PENDING_ACTIVATION, …).
    pub status: String,
    /// CAs: auto-registration on (JITR/JITP).
    pub auto_registration: bool,
}

/// What the Hub tab shows of the local AWS IoT Core.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AwsView {
    /// `aws serve` answers on the control socket: its endpoint `host:port`.
    pub serving: Option<String>,
    /// The registry's CAs.
    pub cas: Vec<StatusRow>,
    /// The registry's device certificates.
    pub certificates: Vec<StatusRow>,
    /// Thing names.
    pub things: Vec<String>,
    /// Policy names.
    pub policies: Vec<String>,
    /// Provisioning template names.
    pub templates: Vec<String>,
    /// Totals (the lists hold at most [`MAX_ROWS`]): CAs, certificates, things, policies, templates.
    pub totals: [usize; 5],
    /// No registry yet (`chainsmith aws registration-code` or `aws ca register` makes one).
    pub empty: bool,
}

/// Read the local AWS IoT Core's registry and whether `aws serve` answers (blocking: run it
/// off the render loop). The registry is not made when there is none (reading never writes).
pub fn load(ws: &Workspace) -> Result<AwsView, String> {
    use chainsmith_aws::broker::{control, endpoint};
    let serving = std::os::unix::net::UnixStream::connect(control::socket_path(ws))
        .ok()
        .map(|_| endpoint::Endpoint::load(ws).address());
    let dir = ws.root().join("aws");
    if !dir.join("registry.json").exists() {
        return Ok(AwsView {
            serving,
            empty: true,
            ..AwsView::default()
        });
    }
    let state = chainsmith_aws::registry::Registry::open(&dir, ws.clock())
        .and_then(|r| r.snapshot())
        .map_err(|e| e.to_string())?;
    let row = |name: &Option<String>, id: &str, status: String, auto: bool| StatusRow {
        name: name.clone().unwrap_or_else(|| id.to_string()),
        status,
        auto_registration: auto,
    };
    Ok(AwsView {
        serving,
        cas: state
            .cas
            .values()
            .take(MAX_ROWS)
            .map(|c| row(&c.name, &c.id, c.status.to_string(), c.auto_registration))
            .collect(),
        certificates: state
            .certificates
            .values()
            .take(MAX_ROWS)
            .map(|c| row(&c.name, &c.id, c.status.to_string(), false))
            .collect(),
        things: state.things.keys().take(MAX_ROWS).cloned().collect(),
        policies: state.policies.keys().take(MAX_ROWS).cloned().collect(),
        templates: state.templates.keys().take(MAX_ROWS).cloned().collect(),
        totals: [
            state.cas.len(),
            state.certificates.len(),
            state.things.len(),
            state.policies.len(),
            state.templates.len(),
        ],
        empty: false,
    })
}

fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    crate::text::escape_controls(s)
}

fn block(t: Theme, title: String) -> Block<'static> {
    Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(format!(" {title} "), t.title()))
}

fn status_line(r: &StatusRow, t: Theme) -> Line<'static> {
    let style = match r.status.as_str() {
        "ACTIVE" => t.ok(),
        "REVOKED" => t.bad(),
        _ => t.warn(),
    };
    let auto = if r.auto_registration {
        "  auto-registration"
    } else {
        ""
    };
    Line::from(vec![
        Span::styled(format!("{:<18}", r.status), style),
        Span::raw(format!(" {}{auto}", esc(&r.name))),
    ])
}

/// The AWS side of the Hub tab: the service line, CAs and certificates, then things,
/// policies and templates. `view` None: not read yet.
pub(crate) fn render(
    f: &mut Frame,
    area: Rect,
    view: Option<&AwsView>,
    error: Option<&str>,
    t: Theme,
) {
    let [status_area, top, bottom] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Percentage(50),
        Constraint::Min(3),
    ])
    .areas(area);
    let status = match (view, error) {
        (_, Some(e)) => Line::from(vec![
            Span::styled("✗ ", t.bad()),
            Span::raw(format!("AWS registry: {}", esc(e))),
        ]),
        (None, None) => Line::styled("… reading the AWS registry", t.dim()),
        (Some(v), None) => match &v.serving {
            Some(at) => Line::from(vec![
                Span::styled("● ", t.ok()),
                Span::raw(format!("aws serve running · endpoint {}", esc(at))),
            ]),
            None => Line::from(vec![
                Span::styled("○ ", t.dim()),
                Span::raw("aws serve not running · start it with `chainsmith aws serve`"),
            ]),
        },
    };
    f.render_widget(
        Paragraph::new(status).block(block(t, "AWS IoT Core (local) · c: Azure".into())),
        status_area,
    );
    let v = view.cloned().unwrap_or_default();
    let [cas_area, certs_area] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(top);
    let mut ca_lines: Vec<Line> = v.cas.iter().map(|r| status_line(r, t)).collect();
    if v.empty {
        ca_lines.push(Line::styled(
            "no AWS registry yet: chainsmith aws ca register CA …",
            t.dim(),
        ));
    }
    f.render_widget(
        Paragraph::new(ca_lines).block(block(t, format!("CAs · {}", v.totals[0]))),
        cas_area,
    );
    let cert_lines: Vec<Line> = v.certificates.iter().map(|r| status_line(r, t)).collect();
    f.render_widget(
        Paragraph::new(cert_lines).block(block(t, format!("Certificates · {}", v.totals[1]))),
        certs_area,
    );
    let cols: [Rect; 3] = Layout::horizontal([Constraint::Ratio(1, 3); 3]).areas(bottom);
    let lists = [
        ("Things", &v.things, v.totals[2]),
        ("Policies", &v.policies, v.totals[3]),
        ("Templates", &v.templates, v.totals[4]),
    ];
    for ((title, names, total), col) in lists.into_iter().zip(cols) {
        let lines: Vec<Line> = names
            .iter()
            .map(|n| Line::raw(esc(n).into_owned()))
            .collect();
        f.render_widget(
            Paragraph::new(lines).block(block(t, format!("{title} · {total}"))),
            col,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names from the registry reach the screen escaped: an ESC in a certificate's name
    /// (a file's CN) is drawn as text, never sent to the terminal.
    #[test]
    fn registry_names_are_escaped_and_statuses_shown() {
        let hostile = "evil\u{1b}[2Jname";
        let view = AwsView {
            serving: Some("localhost:8883".into()),
            cas: vec![StatusRow {
                name: "root".into(),
                status: "ACTIVE".into(),
                auto_registration: true,
            }],
            certificates: vec![StatusRow {
                name: hostile.into(),
                status: "PENDING_ACTIVATION".into(),
                auto_registration: false,
            }],
            things: vec![hostile.into()],
            totals: [1, 1, 1, 0, 0],
            ..AwsView::default()
        };
        let backend = ratatui::backend::TestBackend::new(100, 24);
        let mut term = ratatui::Terminal::new(backend).unwrap();
        term.draw(|f| render(f, f.area(), Some(&view), None, Theme::plain()))
            .unwrap();
        let text: String = term
            .backend()
            .buffer()
            .content()
            .iter()
            .map(|c| c.symbol())
            .collect();
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains("evil\\e[2Jname"), "{text}");
        assert!(text.contains("PENDING_ACTIVATION"), "{text}");
        assert!(text.contains("auto-registration"), "{text}");
        assert!(text.contains("endpoint localhost:8883"), "{text}");
    }
}
