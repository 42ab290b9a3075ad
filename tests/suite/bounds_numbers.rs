//! Issue 11, item 4: no number a user gives makes chainsmith panic. Every date and window is
//! checked against what X.509 can carry (1950 to 9999-12-31T23:59:59Z) and refused with a
//! message naming the limit. Property tests throw arbitrary integers and strings at every
//! numeric argument and spec field: engine level for breadth, the real binary for a bounded
//! number of cases.

use crate::common::Ws;

use chainsmith::ops::ValidityArg;
use chainsmith::ops::lifecycle::{self, parse_window};
use chainsmith::pki::Profile;
use chainsmith::pki::identity::expand_range;
use chainsmith::pki::issue::{EARLIEST, LATEST};
use chainsmith::store::Workspace;
use proptest::prelude::*;
use time::macros::datetime;

/// Exit 0, or exit 1 with a message; 2 is clap's usage error (a number that does not fit the
/// argument's type), also with a message. Never 101 (a panic).
fn assert_clean(ws: &Ws, args: &[&str]) -> (i32, String) {
    let out = ws.cmd().args(args).output().unwrap();
    let code = out.status.code().unwrap_or(-1);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        matches!(code, 0..=2),
        "chainsmith {args:?} exited {code}: {err}"
    );
    assert!(!err.contains("panicked"), "chainsmith {args:?}: {err}");
    if code != 0 {
        assert!(
            !err.trim().is_empty(),
            "chainsmith {args:?} failed silently"
        );
    }
    (code, err)
}

fn refused_naming_the_limit(ws: &Ws, args: &[&str]) -> String {
    let (code, err) = assert_clean(ws, args);
    assert_eq!(code, 1, "chainsmith {args:?} should be refused: {err}");
    assert!(err.contains("9999-12-31"), "{args:?}: {err}");
    err
}

#[test]
fn huge_days_and_windows_are_refused_naming_the_limit() {
    let ws = Ws::new();
    ws.ok(&["init"]);
    ws.ok(&["new", "root", "r"]);
    ws.ok(&["new", "device", "d1", "--issuer", "r"]);
    let e = refused_naming_the_limit(&ws, &["new", "root", "x", "--days", "2913000"]);
    assert!(e.contains("at most"), "{e}");
    refused_naming_the_limit(&ws, &["renew", "d1", "--days", "3000000"]);
    refused_naming_the_limit(&ws, &["crl", "r", "--days", "3000000"]);
    refused_naming_the_limit(&ws, &["list", "--expiring", "3000000d"]);
    refused_naming_the_limit(&ws, &["list", "--expiring", "9223372036854775807d"]);
    refused_naming_the_limit(&ws, &["list", "--expiring", "99999999999999999999999y"]);
    refused_naming_the_limit(
        &ws,
        &["new", "root", "y", "--not-before", "9999-12-31T00:00:00Z"],
    );
    let e = assert_clean(
        &ws,
        &["new", "root", "z", "--not-before", "1900-01-01T00:00:00Z"],
    )
    .1;
    assert!(e.contains("1950"), "{e}");
    let e = assert_clean(
        &ws,
        &["new", "root", "z", "--not-after", "1949-12-31T23:59:59Z"],
    )
    .1;
    assert!(e.contains("1950"), "{e}");
    // Nothing was half made.
    for name in ["x", "y", "z"] {
        assert!(!ws.ws().join("entities").join(name).exists(), "{name}");
    }
    // A long but legal window still works, and so does the latest legal end.
    ws.ok(&["new", "root", "long", "--days", "100000"]);
    ws.ok(&["new", "root", "edge", "--not-after", "9999-12-31T23:59:59Z"]);
    ws.ok(&["list", "--expiring", "36500d"]);
    // Out-of-range ids and pathlens: clean usage or domain errors.
    assert_clean(
        &ws,
        &["new", "device", "dev-{1..99999999999}", "--issuer", "r"],
    );
    assert_eq!(
        assert_clean(&ws, &["new", "root", "p", "--pathlen", "300"]).0,
        2
    );
    assert_eq!(
        assert_clean(&ws, &["new", "root", "p", "--days", "-1"]).0,
        2
    );
}

#[test]
fn apply_refuses_days_past_the_limit_with_its_line() {
    let ws = Ws::new();
    ws.ok(&["init"]);
    std::fs::write(
        ws.path("s.toml"),
        "[[ca]]\nname = \"root\"\n\n[[device]]\nid = \"d1\"\nissuer = \"root\"\ndays = 2913000\n",
    )
    .unwrap();
    let (code, err) = assert_clean(&ws, &["apply", "s.toml"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(":7:") && err.contains("days"), "{err}");
    assert!(err.contains("9999-12-31"), "{err}");
    assert!(
        !ws.ws().join("entities").join("root").exists(),
        "nothing made"
    );
}

fn workspace_with_ca() -> (tempfile::TempDir, Workspace) {
    let dir = tempfile::tempdir().unwrap();
    let ws = chainsmith_test_support::workspace::with_root(&dir.path().join("ws"), "r");
    (dir, ws)
}

/// An RFC 3339 time with any year 0000–9999, or junk.
fn time_text() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u32..=9999, 1u32..=12, 1u32..=28, 0u32..24)
            .prop_map(|(y, m, d, h)| format!("{y:04}-{m:02}-{d:02}T{h:02}:00:00Z")),
        "\\PC{0,30}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_validity_is_a_window_or_an_error(
        days in proptest::option::of(any::<u32>()),
        nb in proptest::option::of(time_text()),
        na in proptest::option::of(time_text()),
    ) {
        let arg = ValidityArg { days, not_before: nb, not_after: na };
        for profile in [Profile::Root { pathlen: None }, Profile::Verification] {
            if let Ok(v) = arg.resolve(&profile, time::macros::datetime!(2026-06-01 12:00 UTC)) {
                prop_assert!(v.not_before >= EARLIEST && v.not_after <= LATEST, "{v:?}");
                prop_assert!(v.not_before < v.not_after);
            }
        }
    }

    #[test]
    fn any_window_text_parses_or_is_refused(
        s in prop_oneof![
            "\\PC{0,24}",
            (any::<u64>(), "(|d|h|w|m|y|days|x|min)").prop_map(|(n, u)| format!("{n}{u}")),
            ("[0-9]{15,40}", "(d|y)").prop_map(|(n, u)| format!("{n}{u}")),
        ]
    ) {
        if let Ok(w) = parse_window(&s) {
            prop_assert!(w <= time::Duration::days(lifecycle::MAX_WINDOW_DAYS), "{s}");
            prop_assert!(datetime!(1950-01-01 0:00 UTC).checked_add(w).is_some());
        }
    }

    #[test]
    fn any_id_range_expands_or_is_refused(
        a in "[0-9]{1,25}", b in "[0-9]{1,25}", junk in "\\PC{0,8}",
    ) {
        for p in [format!("dev-{{{a}..{b}}}"), format!("d{{{a}..{b}}}{junk}"), format!("{junk}{{{a}..")] {
            if let Ok(ids) = expand_range(&p) {
                prop_assert!(ids.len() <= 1_000_000);
            }
        }
    }

    #[test]
    fn any_spec_number_plans_or_names_its_line(
        days in prop_oneof![any::<i64>().prop_map(|n| n.to_string()), "[0-9]{10,30}", Just("1e99".to_string()), Just("-0".to_string())],
        pathlen in prop_oneof![any::<i64>().prop_map(|n| n.to_string()), Just("256".to_string()), Just("3.5".to_string())],
        lo in "[0-9]{1,22}", hi in "[0-9]{1,22}",
    ) {
        let text = format!(
            "[[ca]]\nname = \"root\"\ndays = {days}\npathlen = {pathlen}\n\n[[device]]\nid = \"dev-{{{lo}..{hi}}}\"\nissuer = \"root\"\ndays = {days}\n\n[[verification]]\nca = \"root\"\ncode = \"ABC\"\ndays = {days}\n"
        );
        let now = time::macros::datetime!(2026-06-01 12:00 UTC);
        match chainsmith::fixtures::load_plan("s.toml", &text, now) {
            Ok(plan) => {
                for c in &plan.cas {
                    if let chainsmith::fixtures::plan::What::Ca(ca) = &c.what {
                        if let Some(d) = ca.days {
                            prop_assert!(chainsmith::pki::issue::days_after("x", now, d).is_ok());
                        }
                    }
                }
            }
            Err(e) => prop_assert!(e.line >= 1 && !e.message.is_empty(), "{e}"),
        }
    }
}

proptest! {
    // Each case signs a CRL: few cases.
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_crl_days_signs_or_is_refused(days in prop_oneof![any::<u32>(), 0u32..4000]) {
        let (_dir, ws) = workspace_with_ca();
        match lifecycle::crl(&ws, "r", Some(days)) {
            Ok(c) => prop_assert!(c.next_update <= LATEST),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}

proptest! {
    // The real binary: a bounded number of processes.
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn the_binary_never_panics_on_a_number(
        n in prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u32>().prop_map(|n| n.to_string()),
            "[0-9]{6,25}",
            "\\PC{0,10}",
        ],
        which in 0usize..8,
    ) {
        let ws = Ws::new();
        std::fs::create_dir_all(ws.ws()).unwrap();
        let window = format!("{n}d");
        // Either refused or a single id: never a million real devices.
        let range = format!("dev-{{{n}..{n}0000000}}");
        let args: Vec<&str> = match which {
            0 => vec!["new", "root", "x", "--days", &n],
            1 => vec!["new", "root", "x", "--pathlen", &n],
            2 => vec!["list", "--expiring", &window],
            3 => vec!["crl", "nope", "--days", &n],
            4 => vec!["new", "device", &range, "--self-signed"],
            5 => vec!["connect", "nope", "--count", &n],
            6 => vec!["hub", "serve", "--port", &n, "--bind", "256.0.0.1"],
            _ => vec!["new", "root", "x", "--not-after", &n],
        };
        assert_clean(&ws, &args);
    }
}
