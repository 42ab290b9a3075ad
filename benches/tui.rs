//! TUI figures on a large workspace: time to first frame, list load, frame times while
//! scrolling and filtering, a burst of hub events. Run with `cargo bench --bench tui`.
//!
//! The workspace is made once (root + N devices, default 100,000) and kept in
//! `target/tui-bench-ws-N` (or `CHAINSMITH_BENCH_WS`); `CHAINSMITH_BENCH_N` changes N.

#![allow(clippy::unwrap_used)] // a bench that cannot set up should stop loudly
#![allow(clippy::too_many_lines)] // a bench reads top to bottom; the 150-line limit is for the product

use chainsmith::ops::{self, DeviceRequest};
use chainsmith::store::Workspace;
use chainsmith::tui::theme::Theme;
use chainsmith::tui::{Action, App, Command, hub, perform, perform_each, ui};
use chainsmith_test_support::workspace::new_ca;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

fn key(c: KeyCode) -> Action {
    Action::Key(KeyEvent::new(c, KeyModifiers::NONE))
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn stats(mut v: Vec<Duration>) -> String {
    v.sort();
    let mean = v.iter().sum::<Duration>() / v.len() as u32;
    format!(
        "mean {}, p99 {}, max {}",
        ms(mean),
        ms(v[v.len() * 99 / 100]),
        ms(*v.last().unwrap())
    )
}

fn main() {
    let n: usize = std::env::var("CHAINSMITH_BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let dir = std::env::var_os("CHAINSMITH_BENCH_WS")
        .map(Into::into)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join(format!("target/tui-bench-ws-{n}"))
        });
    let ws = Workspace::open_or_create(&dir).unwrap();
    if ws.names().unwrap().len() < n + 1 {
        let t = Instant::now();
        if !ws.exists("bench-root") {
            new_ca(&ws, "bench-root", None);
        }
        let width = n.to_string().len();
        let pattern = format!("d-{{{:0width$}..{n}}}", 1);
        ops::new_devices(
            &ws,
            &DeviceRequest {
                ids: vec![pattern],
                issuer: Some("bench-root".into()),
                force: true,
                ..Default::default()
            },
        )
        .unwrap();
        println!(
            "made the workspace: root + {n} devices in {:.1} s ({})",
            t.elapsed().as_secs_f64(),
            dir.display()
        );
    }
    println!("workspace: {} ({} entities)", dir.display(), n + 1);
    let size = (120u16, 40u16);
    let mut term = Terminal::new(TestBackend::new(size.0, size.1)).unwrap();

    // First frame: what the user sees before the list has been read.
    let t = Instant::now();
    let ws = Workspace::open(&dir).unwrap();
    let mut app = App::new(
        ws.root().to_path_buf(),
        Theme::from_env(),
        OffsetDateTime::now_utc(),
        size,
    );
    let first = app.start();
    term.draw(|f| ui::render(f, &app)).unwrap();
    let first_frame = t.elapsed();
    println!(
        "time to first frame (open workspace, draw \"reading…\"):   {}",
        ms(first_frame)
    );

    // The list, read in the background in the app (here on this thread, timed): through the
    // workspace index, then the tree.
    let t = Instant::now();
    let mut results = Vec::new();
    perform_each(&ws, first.unwrap(), &mut |a| results.push((t.elapsed(), a)));
    let mut next = None;
    for (at, a) in results {
        let t2 = Instant::now();
        next = app.update(a);
        term.draw(|f| ui::render(f, &app)).unwrap();
        println!(
            "list read (Workspace::list + tree)            {} rows at {}, + update + frame {}",
            app.pki.rows.len(),
            ms(at),
            ms(t2.elapsed())
        );
        println!(
            "open → tree on screen:                                   {}",
            ms(first_frame + at + t2.elapsed())
        );
    }
    let t = Instant::now();
    if let Some(Command::LoadReport(name)) = next {
        let r = perform(&ws, Command::LoadReport(name)).unwrap();
        app.update(r);
    }
    println!(
        "one report (ops::report, off the draw loop):             {}",
        ms(t.elapsed())
    );

    // Scrolling: one key + one frame, 2000 times, then page jumps.
    let mut frames = Vec::new();
    for i in 0..2000 {
        let t = Instant::now();
        app.update(key(if i % 500 < 400 {
            KeyCode::Down
        } else {
            KeyCode::PageDown
        }));
        term.draw(|f| ui::render(f, &app)).unwrap();
        frames.push(t.elapsed());
    }
    println!(
        "scroll, key + frame (2000 frames):                       {}",
        stats(frames)
    );
    let t = Instant::now();
    app.update(key(KeyCode::End));
    term.draw(|f| ui::render(f, &app)).unwrap();
    println!(
        "End (jump to row {}) + frame:                         {}",
        app.pki.selected,
        ms(t.elapsed())
    );

    // Filtering: each keystroke refilters every row.
    app.update(Action::Key(KeyEvent::new(
        KeyCode::Char('/'),
        KeyModifiers::NONE,
    )));
    let mut frames = Vec::new();
    for c in "d-0999".chars() {
        let t = Instant::now();
        app.update(key(KeyCode::Char(c)));
        term.draw(|f| ui::render(f, &app)).unwrap();
        frames.push(t.elapsed());
    }
    println!(
        "filter keystroke + frame over {} rows (6 keys):      {}  ({} match)",
        app.pki.rows.len(),
        stats(frames),
        app.pki.visible.len()
    );

    // A burst of 1000 hub events drained in one go, then one frame.
    app.update(key(KeyCode::Esc));
    app.update(key(KeyCode::Char('2')));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..1000 {
        tx.send(Action::Hub(hub::HubAction::Event(hub::LogLine {
            at: OffsetDateTime::now_utc(),
            kind: hub::LogKind::Telemetry,
            device: "dev1".into(),
            text: format!("message {i}"),
        })))
        .unwrap();
    }
    let t = Instant::now();
    let first = rx.try_recv().unwrap();
    chainsmith::tui::drain(&mut app, first, &mut rx);
    term.draw(|f| ui::render(f, &app)).unwrap();
    println!(
        "1000 hub events: drain + 1 frame:                        {}",
        ms(t.elapsed())
    );
    // The same burst as the loop's forwarder sends it: one batch action.
    let batch: Vec<hub::LogLine> = (0..1000)
        .map(|i| hub::LogLine {
            at: OffsetDateTime::now_utc(),
            kind: hub::LogKind::Telemetry,
            device: "dev1".into(),
            text: format!("batched message {i}"),
        })
        .collect();
    let t = Instant::now();
    app.update(Action::Hub(hub::HubAction::Events(batch)));
    term.draw(|f| ui::render(f, &app)).unwrap();
    println!(
        "1000 hub events as one batch + 1 frame:                  {}",
        ms(t.elapsed())
    );
    // A connection test's 1,000 round trips on the Connect tab (log, sparkline), one frame.
    use chainsmith::mqtt::{Event, RoundTripKind};
    use chainsmith::tui::connect::ConnectAction;
    app.update(key(KeyCode::Char('3')));
    let t = Instant::now();
    for i in 0..1000u32 {
        app.update(Action::Connect(ConnectAction::Engine(Box::new(
            Event::RoundTrip {
                message_id: i,
                kind: RoundTripKind::C2d,
                ms: 0.5,
                detail: String::new(),
            },
        ))));
    }
    term.draw(|f| ui::render(f, &app)).unwrap();
    println!(
        "1000 round-trip events + 1 Connect frame:                {}",
        ms(t.elapsed())
    );
}
