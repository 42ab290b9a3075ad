//! Small things a newcomer meets on the command line: usage lines, `list`'s columns, the
//! wrong-issuer error, plurals, and the example spec's pointer to its documentation.

use crate::common::Ws;

/// With CHAINSMITH_WORKSPACE set, usage lines do not show `--workspace <DIR>` as if required;
/// the flag still wins over the variable.
#[test]
fn usage_lines_do_not_demand_the_workspace_the_environment_gives() {
    let w = Ws::new();
    let out = w.cmd().args(["show"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("Usage: chainsmith show"), "{err}");
    assert!(!err.contains("--workspace <DIR>"), "{err}");

    w.ok(&["new", "root", "in-env"]);
    let other = w.path("other");
    w.ok(&[
        "--workspace",
        other.to_str().unwrap(),
        "new",
        "root",
        "in-flag",
    ]);
    assert!(w.ok(&["list"]).contains("in-env"));
    let listed = w.ok(&["list", "--workspace", other.to_str().unwrap()]);
    assert!(
        listed.contains("in-flag") && !listed.contains("in-env"),
        "{listed}"
    );
}

/// `list` has a header row, and every column starts at the same place on every line, even
/// with a verification certificate's 67-character name.
#[test]
fn list_has_a_header_and_columns_that_stay_aligned() {
    let w = Ws::new();
    w.chain("dev-1");
    let code = "75B86466DA34D2B04C0C4C9557A119687ADAE7D4732BDDB3";
    w.ok(&["new", "verification", "--issuer", "inter", "--code", code]);
    let list = w.ok(&["list"]);
    let lines: Vec<&str> = list.lines().collect();
    let header = lines[0];
    assert!(header.starts_with("NAME "), "{list}");
    let col = |name: &str| {
        header
            .find(name)
            .unwrap_or_else(|| panic!("{name}: {list}"))
    };
    let (kind, key, days, cn) = (col("KIND"), col("KEY"), col("DAYS"), col("CN"));
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("verify-inter-{code}"))),
        "{list}"
    );
    assert_eq!(lines.len(), 5, "{list}");
    for l in &lines[1..] {
        let kind_word = &l[kind..].split(' ').next().unwrap();
        assert!(
            ["root", "intermediate", "device", "verification"].contains(kind_word),
            "KIND column moved: {l:?}\n{list}"
        );
        assert!(l[..kind].ends_with("  "), "{l:?}\n{list}");
        assert!(
            l[key..].starts_with("ec-p256"),
            "KEY column moved: {l:?}\n{list}"
        );
        // DAYS is right-aligned, ending with `d` under the header's last letter.
        assert_eq!(
            &l[days + 3..days + 4],
            "d",
            "DAYS column moved: {l:?}\n{list}"
        );
        assert!(
            l[..cn].ends_with("  ") && !l[cn..].starts_with(' '),
            "{l:?}\n{list}"
        );
    }
}

/// A device given as issuer: say it is not a CA and name the CAs that exist.
#[test]
fn a_device_as_issuer_is_not_a_ca_and_the_cas_are_named() {
    let w = Ws::new();
    w.ok(&["new", "root", "contoso-root"]);
    w.ok(&["new", "intermediate", "line-2", "--issuer", "contoso-root"]);
    w.ok(&["new", "device", "sensor-001", "--issuer", "line-2"]);
    let err = w.fails(&["new", "device", "sensor-002", "--issuer", "sensor-001"]);
    assert!(
        err.contains("\"sensor-001\" is a device certificate, not a CA")
            && err.contains("the CAs here are contoso-root, line-2"),
        "{err}"
    );
    assert!(!err.contains("sign a CRL;"), "{err}");

    let w = Ws::new();
    w.ok(&["new", "device", "lab", "--self-signed"]);
    let err = w.fails(&["new", "device", "d", "--issuer", "lab"]);
    assert!(
        err.contains("not a CA") && err.contains("no CA yet") && err.contains("new root"),
        "{err}"
    );
}

#[test]
fn counts_read_as_english() {
    let w = Ws::new();
    w.ok(&["new", "root", "r"]);
    w.ok(&["new", "device", "p-{1..3}", "--issuer", "r"]);
    let err = w.fails(&["new", "device", "p-{1..3}", "--issuer", "r"]);
    assert!(err.contains("3 entities already exist"), "{err}");
    let err = w.fails(&["new", "device", "p-1", "--issuer", "r"]);
    assert!(err.contains("1 entity already exists"), "{err}");
}

/// The example spec points at documentation that exists: a book chapter (issue 26 moved the
/// reference out of the README) and a heading in it.
#[test]
fn the_example_spec_points_at_the_book() {
    let root = env!("CARGO_MANIFEST_DIR");
    let spec = std::fs::read_to_string(format!("{root}/assets/fixtures/example.toml")).unwrap();
    let pointer = spec
        .lines()
        .find_map(|l| l.strip_prefix("# Every field is documented in "))
        .expect("the spec names the chapter that documents it");
    let (file, section) = pointer
        .split_once(", section \"")
        .expect("the spec names a section of that chapter");
    let section = section.trim_end_matches("\".");
    assert!(file.starts_with("docs/"), "not a book chapter: {file}");
    let chapter = std::fs::read_to_string(format!("{root}/{file}"))
        .unwrap_or_else(|e| panic!("the spec points at {file}: {e}"));
    assert!(
        chapter
            .lines()
            .any(|l| l.trim_start_matches('#').trim() == section && l.starts_with('#')),
        "{file} has no section {section:?}"
    );
}

/// `hub ca prove` and `hub dps ca prove` are one engine function over two CA lists: both say
/// that the CA was listed already, unverified, before proving it (DPS used to skip that step).
#[test]
fn prove_says_the_ca_was_listed_unverified_in_the_hub_and_in_dps() {
    let w = Ws::new();
    w.ok(&["new", "root", "acme"]);
    w.ok(&["hub", "ca", "add", "acme"]);
    w.ok(&["hub", "dps", "ca", "add", "acme"]);
    let hub = w.ok(&["hub", "ca", "prove", "acme"]);
    assert!(
        hub.contains("CA \"acme\" is in the hub, Unverified"),
        "{hub}"
    );
    assert!(
        hub.contains("hub verified the proof: CA \"acme\" is Verified"),
        "{hub}"
    );
    let dps = w.ok(&["hub", "dps", "ca", "prove", "acme"]);
    assert!(dps.contains("CA \"acme\" is in DPS, Unverified"), "{dps}");
    assert!(
        dps.contains("DPS verified the proof: CA \"acme\" is Verified"),
        "{dps}"
    );
}

/// A device made or renewed past its CA's end is warned about, in the same words: one engine
/// check serves `new device` and `renew`.
#[test]
fn certificates_that_outlive_their_issuer_are_warned_about() {
    let w = Ws::new();
    w.ok(&["new", "root", "short", "--days", "30"]);
    let made = w.ok_all(&[
        "new", "device", "long-1", "--issuer", "short", "--days", "365",
    ]);
    assert!(
        made.contains("the devices are valid until") && made.contains("\"short\" expires earlier"),
        "{made}"
    );
    let renewed = w.ok_all(&["renew", "long-1", "--days", "365"]);
    assert!(
        renewed.contains("the new certificate is valid until")
            && renewed.contains("\"short\" expires earlier"),
        "{renewed}"
    );
}
