//! `chainsmith hub dps …`: the local Device Provisioning Service (ID scope, DPS's own CA list,
//! enrollment groups, individual enrollments, registrations).

use clap::{Args, Subcommand};

use super::super::{CliResult, Global, print_json, print_rows, warn};
use super::{CaCommand, usage};
use crate::hub::HubStore;
use crate::hub::dps::{Allocation, DpsState, EnrollmentSettings, Group, read_initial_twin};
use crate::text::escape_controls;

#[derive(Subcommand, Debug)]
pub enum DpsCommand {
    /// The ID scope, DPS's certificates, enrollments and registrations at a glance.
    Show,
    /// DPS's own certificate list (a CA verified on the hub is not verified here).
    #[command(subcommand)]
    Ca(CaCommand),
    /// Enrollment groups (IoT Central's "device connection groups").
    #[command(subcommand)]
    Group(GroupCommand),
    /// Enroll one device: an individual enrollment by registration id.
    Enroll {
        registration_id: String,
        /// Take the primary (and secondary) thumbprint from this workspace device.
        #[arg(long, value_name = "NAME")]
        from: Option<String>,
        /// SHA-1 or SHA-256 thumbprint (hex) of the primary certificate.
        #[arg(long)]
        primary: Option<String>,
        /// SHA-1 or SHA-256 thumbprint (hex) of the secondary certificate.
        #[arg(long)]
        secondary: Option<String>,
        /// The hub device id, when it should differ from the registration id.
        #[arg(long, value_name = "ID")]
        device_id: Option<String>,
        #[command(flatten)]
        enrollment: EnrollmentArgs,
    },
    /// Enable an enrollment (group name or registration id).
    Enable { name: String },
    /// Disable an enrollment: DPS then refuses its devices (403).
    Disable { name: String },
    /// Remove an enrollment (group name or registration id).
    Remove { name: String },
    /// Enrollment groups and individual enrollments.
    List,
    /// Devices DPS assigned.
    Registrations,
    /// One registration; --delete forgets it (the device registers afresh next time).
    Registration {
        registration_id: String,
        #[arg(long)]
        delete: bool,
    },
}

/// What an individual enrollment and an enrollment group both take.
#[derive(Args, Debug)]
pub struct EnrollmentArgs {
    /// IoT Edge: the enrolled device is an Edge device (every device of a group).
    #[arg(long)]
    edge: bool,
    /// Add the enrollment disabled.
    #[arg(long)]
    disable: bool,
    /// Sign the devices' CSRs with this workspace CA (certificate management preview).
    #[arg(long, value_name = "CA")]
    issue_from: Option<String>,
    /// Custom allocation: DPS POSTs each registration's AllocationRequest to this URL
    /// (http://127.0.0.1:PORT/PATH) and assigns, sets the initial twin and answers the device
    /// as its AllocationResponse says.
    #[arg(long, value_name = "URL")]
    allocation_webhook: Option<String>,
    /// A JSON file {"tags":{…},"properties":{"desired":{…}}}: set on the device's twin at its
    /// first assignment (a webhook's initialTwin replaces it).
    #[arg(long, value_name = "FILE")]
    initial_twin: Option<std::path::PathBuf>,
}

impl EnrollmentArgs {
    /// The webhook and the initial twin, read and checked.
    fn allocation(&self) -> anyhow::Result<Allocation> {
        let initial_twin = match self.initial_twin.as_deref() {
            Some(p) => Some(
                read_initial_twin(p)
                    .map_err(|e| usage(e.kind(), format!("--initial-twin: {e}")))?,
            ),
            None => None,
        };
        let allocation = Allocation {
            allocation_webhook: self.allocation_webhook.clone(),
            initial_twin,
        };
        allocation.check()?;
        Ok(allocation)
    }
}

#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// Add (or replace) an enrollment group whose devices chain to --ca (or --secondary).
    Add {
        name: String,
        /// Primary CA: a CA in DPS's list, root or intermediate.
        #[arg(long, value_name = "CA")]
        ca: String,
        /// Secondary CA (for rolling the group's certificate).
        #[arg(long, value_name = "CA")]
        secondary: Option<String>,
        #[command(flatten)]
        enrollment: EnrollmentArgs,
    },
    List,
}

pub fn run(global: &Global, store: &HubStore, c: DpsCommand) -> CliResult {
    match c {
        DpsCommand::Show => show(global, store)?,
        DpsCommand::Ca(c) => ca(global, store, c)?,
        DpsCommand::Group(GroupCommand::Add {
            name,
            ca,
            secondary,
            enrollment,
        }) => {
            let g = store.dps_add_group(Group {
                name,
                primary: ca,
                secondary,
                settings: EnrollmentSettings {
                    edge: enrollment.edge,
                    enabled: !enrollment.disable,
                    allocation: enrollment.allocation()?,
                    issue_from: enrollment.issue_from,
                    added: store.ws.now(),
                },
            })?;
            let st = store.dps_load()?;
            for ca in std::iter::once(&g.primary).chain(g.secondary.as_ref()) {
                if st.cas.iter().any(|c| &c.name == ca && !c.verified) {
                    warn(
                        global,
                        &[format!(
                            "CA \"{ca}\" is not verified in DPS yet: its devices are refused until it is (`chainsmith hub dps ca prove {ca}`)"
                        )],
                    );
                }
            }
            if global.json {
                print_json(&g);
            } else {
                say!("{}", group_line(&g));
            }
        }
        DpsCommand::Group(GroupCommand::List) => {
            print_rows(global, &store.dps_load()?.groups, None, group_line);
        }
        DpsCommand::Enroll {
            registration_id,
            from,
            primary,
            secondary,
            device_id,
            enrollment,
        } => {
            let (mut ind, warnings) = store.dps_enroll(
                &registration_id,
                device_id.as_deref(),
                from.as_deref(),
                primary.as_deref(),
                secondary.as_deref(),
                enrollment.edge,
                enrollment.issue_from.as_deref(),
                enrollment.allocation()?,
            )?;
            if enrollment.disable {
                store.dps_set_enabled(&registration_id, false)?;
                ind.settings.enabled = false;
            }
            warn(global, &warnings);
            if global.json {
                print_json(&ind);
            } else {
                say!("{}", individual_line(&ind));
            }
        }
        DpsCommand::Enable { name } => {
            let what = store.dps_set_enabled(&name, true)?;
            done(global, "enabled", &what);
        }
        DpsCommand::Disable { name } => {
            let what = store.dps_set_enabled(&name, false)?;
            done(global, "disabled", &what);
        }
        DpsCommand::Remove { name } => {
            let what = store.dps_remove_enrollment(&name)?;
            done(global, "removed", &what);
        }
        DpsCommand::List => {
            let st = store.dps_load()?;
            if global.json {
                print_json(&serde_json::json!({
                    "groups": st.groups, "individuals": st.individuals,
                }));
            } else {
                list(&st);
            }
        }
        DpsCommand::Registrations => {
            let registrations = store.dps_load()?.registrations;
            print_rows(
                global,
                &registrations,
                Some("no registrations yet"),
                registration_line,
            );
        }
        DpsCommand::Registration {
            registration_id,
            delete,
        } => {
            let r = if delete {
                store.dps_delete_registration(&registration_id)?
            } else {
                store.dps_registration(&registration_id)?.ok_or(
                    crate::hub::RegistryError::DpsUnknownRegistration(registration_id.clone()),
                )?
            };
            if global.json {
                print_json(&serde_json::json!({ "registration": r, "deleted": delete }));
            } else if delete {
                say!(
                    "registration \"{}\" deleted (device \"{}\" stays in the hub; registering again starts with initialAssignment)",
                    escape_controls(&r.registration_id),
                    escape_controls(&r.device_id)
                );
            } else {
                say!("{}", registration_line(&r));
                if let Some(p) = &r.payload {
                    say!("  payload {}", escape_controls(&p.to_string()));
                }
            }
        }
    }
    Ok(())
}

fn done(global: &Global, verb: &str, what: &str) {
    if global.json {
        print_json(&serde_json::json!({ verb: what }));
    } else {
        say!("{} {verb}", escape_controls(what));
    }
}

fn show(global: &Global, store: &HubStore) -> CliResult {
    let scope = store.dps_id_scope()?;
    let st = store.dps_load()?;
    if global.json {
        print_json(&serde_json::json!({
            "id_scope": scope,
            "global_endpoint": crate::azure::dps::GLOBAL_ENDPOINT,
            "cas": st.cas.iter().map(super::ca_json).collect::<Vec<_>>(),
            "groups": st.groups,
            "individuals": st.individuals,
            "registrations": st.registrations,
        }));
        return Ok(());
    }
    say!("ID scope      {scope}");
    say!(
        "provisioning host: the hub's address (`hub serve`), port 8883; username {scope}/registrations/REGID/api-version={}",
        crate::azure::dps::API_VERSION
    );
    say!("certificates  {}", st.cas.len());
    for c in &st.cas {
        say!("  {}", ca_line(c));
    }
    list(&st);
    say!("registrations {}", st.registrations.len());
    for r in &st.registrations {
        say!("  {}", registration_line(r));
    }
    Ok(())
}

fn list(st: &DpsState) {
    say!("groups        {}", st.groups.len());
    for g in &st.groups {
        say!("  {}", group_line(g));
    }
    say!("individuals   {}", st.individuals.len());
    for i in &st.individuals {
        say!("  {}", individual_line(i));
    }
}

fn ca_line(c: &crate::hub::HubCa) -> String {
    format!(
        "{:<20} {:<10} CN={}  SHA-256 {}  code {}",
        c.name,
        if c.verified { "verified" } else { "unverified" },
        escape_controls(&c.cn),
        c.thumbprint(),
        c.code
    )
}

fn group_line(g: &Group) -> String {
    format!(
        "group {:<20} {:<8} primary {}  secondary {}{}{}",
        g.name,
        if g.settings.enabled {
            "enabled"
        } else {
            "disabled"
        },
        g.primary,
        g.secondary.as_deref().unwrap_or("-"),
        if g.settings.edge { "  edge" } else { "" },
        g.settings
            .issue_from
            .as_deref()
            .map(|c| format!("  issues from {c}"))
            .unwrap_or_default()
    ) + &allocation_text(&g.settings.allocation)
}

/// `  webhook URL  initial twin` when an enrollment has them.
fn allocation_text(a: &Allocation) -> String {
    let mut out = String::new();
    if let Some(url) = &a.allocation_webhook {
        out.push_str(&format!("  webhook {}", escape_controls(url)));
    }
    if a.initial_twin.is_some() {
        out.push_str("  initial twin");
    }
    out
}

fn individual_line(i: &crate::hub::dps::Individual) -> String {
    format!(
        "individual {:<20} {:<8} device {}  primary {}  secondary {}{}",
        escape_controls(&i.registration_id),
        if i.settings.enabled {
            "enabled"
        } else {
            "disabled"
        },
        escape_controls(i.device_id()),
        i.primary.as_deref().unwrap_or("-"),
        i.secondary.as_deref().unwrap_or("-"),
        if i.settings.edge { "  edge" } else { "" },
    ) + &allocation_text(&i.settings.allocation)
}

fn registration_line(r: &crate::hub::dps::Registration) -> String {
    format!(
        "{:<24} device {}  hub {}  {} ({})  {}  created {}  updated {}  etag {}",
        escape_controls(&r.registration_id),
        escape_controls(&r.device_id),
        escape_controls(&r.assigned_hub),
        r.status,
        r.substatus,
        escape_controls(&r.enrollment),
        crate::pki::issue::rfc3339(r.created),
        crate::pki::issue::rfc3339(r.updated),
        r.etag
    ) + &r
        .note
        .as_ref()
        .map(|n| format!("\n{:<24} note: {}", "", escape_controls(n)))
        .unwrap_or_default()
}

fn ca(global: &Global, store: &HubStore, c: CaCommand) -> CliResult {
    match c {
        CaCommand::Add { name, verified } => {
            let ca = store.dps_add_ca(&name, verified)?;
            if global.json {
                print_json(&super::ca_json(&ca));
            } else if verified {
                say!("CA \"{name}\" added to DPS, verified (self-attested)");
            } else {
                say!("CA \"{name}\" added to DPS, unverified");
                say!("verification code: {}", ca.code);
                say!(
                    "prove possession: chainsmith new verification --issuer {name} --code {} ; chainsmith hub dps ca verify {name} --cert FILE",
                    ca.code
                );
            }
        }
        CaCommand::Verify { name, cert } => {
            let bytes = crate::store::read_input(&cert)
                .map_err(|e| usage("io", format!("{e}; check the path")))?;
            let ca = store.dps_verify_ca(&name, &bytes)?;
            if global.json {
                print_json(&super::ca_json(&ca));
            } else {
                say!("CA \"{name}\" is verified in DPS");
            }
        }
        CaCommand::Prove { name } => {
            let steps = crate::hub::dps_prove(store, &name)?;
            if global.json {
                print_json(&serde_json::json!({ "name": name, "steps": steps }));
            } else {
                for s in &steps {
                    say!("{}", escape_controls(s));
                }
            }
        }
        CaCommand::List => {
            let st = store.dps_load()?;
            if global.json {
                print_json(&st.cas.iter().map(super::ca_json).collect::<Vec<_>>());
            } else if st.cas.is_empty() {
                say!("no CAs in DPS; add one with `chainsmith hub dps ca add NAME`");
            } else {
                for c in &st.cas {
                    say!("{}", ca_line(c));
                }
            }
        }
        CaCommand::Remove { name } => {
            store.dps_remove_ca(&name)?;
            if global.json {
                print_json(&serde_json::json!({ "removed": name }));
            } else {
                say!("CA \"{name}\" removed from DPS");
            }
        }
    }
    Ok(())
}
