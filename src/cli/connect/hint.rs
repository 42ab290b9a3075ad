//! The CLI's hint for a connection test's remedy: the command (or flag) that applies it, with
//! the real names, so that a person can run it as printed. The engine's diagnosis says the
//! same fix in domain words; this is the CLI's half.

use crate::mqtt::{ConnectRemedy, PeerKind};

/// The command or flag for `remedy`. `peer` is the kind of peer the test went to: proving a
/// CA is one command against the local hub, and making a verification certificate for
/// another hub's code elsewhere.
pub fn hint(remedy: &ConnectRemedy, peer: PeerKind) -> String {
    use ConnectRemedy as R;
    match remedy {
        R::MoreTime { timeout_ms } => {
            // Twice the limit, in whole seconds: enough to tell a slow link from a dead one.
            let secs = (timeout_ms.saturating_mul(2)).div_ceil(1000).max(1);
            format!("--timeout {secs}s")
        }
        R::NotStrict => "drop --strict".into(),
        R::ServerCa { issuer } => {
            format!("--ca FILE, the PEM of \"{issuer}\" (or --ca NAME for a workspace CA)")
        }
        R::StartHub => "chainsmith hub serve".into(),
        R::RestartHub => {
            "stop the running `chainsmith hub serve` and start it again in this workspace".into()
        }
        R::HubLog => "the output of the running `chainsmith hub serve`".into(),
        R::InspectServerCert => "chainsmith inspect SERVER-CERT.pem".into(),
        R::InspectDeviceCert => "chainsmith inspect CERT.pem (the --cert file)".into(),
        R::ClientCertificate => "a workspace device, or --cert FILE --key FILE".into(),
        R::AzureFlavor => "--flavor azure".into(),
        R::SendChain { intermediates } => format!(
            "append {} to the --cert file after the leaf",
            intermediates
                .iter()
                .map(|n| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        R::RegisterDevice {
            device,
            self_signed,
        } => {
            let auth = match self_signed {
                None => "--auth ca".to_string(),
                Some(t) => match &t.from {
                    Some(name) => format!("--auth self-signed --from {}", word(name)),
                    None => format!("--auth self-signed --primary {}", t.sha1),
                },
            };
            format!("chainsmith hub device add {} {auth}", word(device))
        }
        R::EnableDevice { device } => format!("chainsmith hub device enable {}", word(device)),
        R::ProveCa { ca } if peer == PeerKind::LocalHub => {
            format!("chainsmith hub ca prove {}", word(ca))
        }
        R::ProveCa { ca } => format!(
            "chainsmith new verification --issuer {} --code CODE (CODE: the hub's verification code)",
            word(ca)
        ),
        // `hub ca prove` adds the CA first when the hub does not have it.
        R::UploadCa { ca } => format!("chainsmith hub ca prove {}", word(ca)),
        R::Renew {
            name,
            then_update_hub,
        } => match then_update_hub {
            None => format!("chainsmith renew {}", word(name)),
            Some(device) => format!(
                "chainsmith renew {n} && chainsmith hub device update {} --from {n}",
                word(device),
                n = word(name)
            ),
        },
        R::SlotThumbprint { device, thumbprint } => match &thumbprint.from {
            Some(name) => format!(
                "chainsmith hub device update {} --from {}",
                word(device),
                word(name)
            ),
            None => format!(
                "chainsmith hub device update {} --secondary {}",
                word(device),
                thumbprint.sha1
            ),
        },
        R::IssueDevice { device, replace } => format!(
            "chainsmith new device {} --issuer CA{}",
            word(device),
            if *replace { " --force" } else { "" }
        ),
        R::Pathlen => "--pathlen N when re-issuing that CA with `chainsmith new`".into(),
        R::Aws { fix } => aws_hint(fix),
    }
}

/// The `chainsmith aws …` command for a fix of the local AWS IoT Core.
fn aws_hint(fix: &crate::mqtt::AwsFix) -> String {
    use crate::mqtt::AwsFix as F;
    match fix {
        F::RegisterCertificate { device } => {
            format!("chainsmith aws cert register {} --active", word(device))
        }
        F::ActivateCertificate { device } => {
            format!(
                "chainsmith aws cert update {} --status ACTIVE",
                word(device)
            )
        }
        F::ReplaceCertificate { device } => format!(
            "chainsmith renew {d} && chainsmith aws cert register {d} --active",
            d = word(device)
        ),
        F::RegisterCa { ca } => format!(
            "chainsmith new verification --issuer {c} --code \"$(chainsmith aws registration-code)\" --out verification.pem && chainsmith aws ca register {c} --verification-cert verification.pem --active",
            c = word(ca)
        ),
        F::ActivateCa { ca } => format!("chainsmith aws ca update {} --status ACTIVE", word(ca)),
        F::AttachPolicy { device } => format!(
            "chainsmith aws policy create POLICY --document policy.json && chainsmith aws policy attach POLICY --cert {}",
            word(device)
        ),
        F::OwnClientId => "chainsmith aws monitor (shows who connects)".into(),
        F::ConnectAgain { device } => format!("chainsmith connect {} --to aws-local", word(device)),
        F::ServiceLog => "the output of the running `chainsmith aws serve`".into(),
        F::StartService => "chainsmith aws serve".into(),
    }
}

/// `command IDS OPTIONS`, or `command OPTIONS -- IDS` when an id begins with '-', which the
/// command would read as an option (hostile pass: an id `--workspace=/tmp/x` pasted from a
/// hint acted on another workspace).
fn ids_last(command: &str, ids: &str, options: &str, dashed: bool) -> String {
    match (dashed, options.is_empty()) {
        (true, true) => format!("{command} -- {ids}"),
        (true, false) => format!("{command} {options} -- {ids}"),
        (false, true) => format!("{command} {ids}"),
        (false, false) => format!("{command} {ids} {options}"),
    }
}

/// The hint for a group of devices that failed alike (a fleet's failure group): ONE command
/// for all of them where the command takes several ids (`hub device add|enable`, `new
/// device`), with the ids written as ranges; otherwise [`hint`] for the group's example.
/// `devices` is empty in reports written before groups listed their devices.
pub fn group_hint(remedy: &ConnectRemedy, peer: PeerKind, devices: &[String]) -> String {
    use ConnectRemedy as R;
    // A group of one device is that device's hint.
    if let [] | [_] = devices {
        if !devices.iter().any(|d| d.contains('{')) {
            return hint(remedy, peer);
        }
    }
    let ids = words(devices);
    let dashed = devices.iter().any(|d| d.starts_with('-'));
    match remedy {
        // Each self-signed device's thumbprints come from the workspace device of its name.
        R::RegisterDevice { self_signed, .. } => ids_last(
            "chainsmith hub device add",
            &ids,
            if self_signed.is_some() {
                "--auth self-signed"
            } else {
                "--auth ca"
            },
            dashed,
        ),
        R::EnableDevice { .. } => ids_last("chainsmith hub device enable", &ids, "", dashed),
        R::IssueDevice { replace, .. } => ids_last(
            "chainsmith new device",
            &ids,
            if *replace {
                "--issuer CA --force"
            } else {
                "--issuer CA"
            },
            dashed,
        ),
        other => hint(other, peer),
    }
}

/// Device ids as shell words for one command: consecutive ids as ranges (`'sensor-{001..399}'`).
pub(crate) fn words(ids: &[String]) -> String {
    crate::fleet::select::compress_ids(ids)
        .iter()
        .map(|id| word(id))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A name as one shell word: as is when it holds only characters a shell leaves alone,
/// otherwise single-quoted (device ids may hold `$ ( ) ! * ? '`).
pub(crate) fn word(s: &str) -> String {
    crate::text::shell_word(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_one_shell_word() {
        assert_eq!(word("sensor-7"), "sensor-7");
        assert_eq!(word("dev$(x)"), "'dev$(x)'");
        assert_eq!(word("it's"), r"'it'\''s'");
        assert_eq!(word("Contoso Root"), "'Contoso Root'");
    }

    /// Split a hint the way a POSIX shell would for the words `word` writes.
    fn shell_split(cmd: &str) -> Vec<String> {
        let (mut words, mut cur, mut quoted) = (Vec::new(), String::new(), false);
        let mut chars = cmd.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\'' => quoted = !quoted,
                '\\' if !quoted => cur.extend(chars.next()),
                ' ' if !quoted => words.push(std::mem::take(&mut cur)),
                c => cur.push(c),
            }
        }
        words.push(cur);
        words
    }

    /// Every hint that is a command parses with the CLI's own parser, names as given.
    #[test]
    fn every_command_hint_is_a_valid_invocation() {
        use crate::mqtt::diagnose::Thumbprint;
        use clap::Parser;
        let sha1 = "A1B2C3D4E5F60718293A4B5C6D7E8F9012345678".to_string();
        let dev = "dev $(1)".to_string();
        let remedies = [
            ConnectRemedy::StartHub,
            ConnectRemedy::RegisterDevice {
                device: dev.clone(),
                self_signed: None,
            },
            ConnectRemedy::RegisterDevice {
                device: dev.clone(),
                self_signed: Some(Thumbprint {
                    sha1: sha1.clone(),
                    from: Some("it's".into()),
                }),
            },
            ConnectRemedy::RegisterDevice {
                device: dev.clone(),
                self_signed: Some(Thumbprint {
                    sha1: sha1.clone(),
                    from: None,
                }),
            },
            ConnectRemedy::EnableDevice {
                device: dev.clone(),
            },
            ConnectRemedy::ProveCa {
                ca: "Contoso Root".into(),
            },
            ConnectRemedy::UploadCa {
                ca: "Contoso Root".into(),
            },
            ConnectRemedy::Renew {
                name: dev.clone(),
                then_update_hub: None,
            },
            ConnectRemedy::SlotThumbprint {
                device: dev.clone(),
                thumbprint: Thumbprint {
                    sha1: sha1.clone(),
                    from: Some(dev.clone()),
                },
            },
            ConnectRemedy::SlotThumbprint {
                device: dev.clone(),
                thumbprint: Thumbprint { sha1, from: None },
            },
            ConnectRemedy::IssueDevice {
                device: dev.clone(),
                replace: true,
            },
        ];
        for r in &remedies {
            let h = hint(r, PeerKind::LocalHub);
            let words = shell_split(&h);
            assert_eq!(words[0], "chainsmith", "{h}");
            assert!(
                words.contains(&dev)
                    || words.contains(&"Contoso Root".to_string())
                    || h == "chainsmith hub serve",
                "{h}: {words:?}"
            );
            crate::cli::Cli::try_parse_from(&words).unwrap_or_else(|e| panic!("{h}: {e}"));
        }
        // Renewing a self-signed device updates the hub after: two commands, both valid.
        let r = ConnectRemedy::Renew {
            name: "ss-1".into(),
            then_update_hub: Some("ss-1".into()),
        };
        let h = hint(&r, PeerKind::LocalHub);
        for cmd in h.split(" && ") {
            crate::cli::Cli::try_parse_from(shell_split(cmd))
                .unwrap_or_else(|e| panic!("{cmd}: {e}"));
        }
        // Against another hub, proving a CA is a verification certificate for its code.
        let h = hint(
            &ConnectRemedy::ProveCa {
                ca: "Contoso Root".into(),
            },
            PeerKind::AzureHub,
        );
        let cmd = h.split(" (").next().unwrap();
        crate::cli::Cli::try_parse_from(shell_split(cmd)).unwrap_or_else(|e| panic!("{cmd}: {e}"));
    }

    #[test]
    fn more_time_doubles_the_limit() {
        let r = ConnectRemedy::MoreTime { timeout_ms: 10_000 };
        assert_eq!(hint(&r, PeerKind::Broker), "--timeout 20s");
        let r = ConnectRemedy::MoreTime { timeout_ms: 300 };
        assert_eq!(hint(&r, PeerKind::Broker), "--timeout 1s");
    }

    /// Ids that begin with '-' go after `--`, so a pasted hint never reads one as an option.
    #[test]
    fn group_hints_put_dashed_ids_after_a_double_dash() {
        let enable = ConnectRemedy::EnableDevice {
            device: "d-1".into(),
        };
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            group_hint(&enable, PeerKind::LocalHub, &ids(&["d-1", "d-2"])),
            "chainsmith hub device enable d-1 d-2"
        );
        assert_eq!(
            group_hint(&enable, PeerKind::LocalHub, &ids(&["d-1", "--workspace=x"])),
            "chainsmith hub device enable -- --workspace=x d-1"
        );
    }
}
