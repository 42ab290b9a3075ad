//! The integration suite: one test binary, a module per area (each relinking the whole crate per
//! file cost more build time than every test together).

#![allow(clippy::unwrap_used)] // tests fail loudly by design
#![allow(clippy::too_many_lines)] // a test reads top to bottom; the 150-line limit is for the product

mod common;
mod connect_support;
mod conventions;
mod isolated;

mod aws_broker;
mod aws_connect;
mod aws_hostile;
mod aws_provision;
mod aws_registry;
mod aws_rules;
mod aws_shadow;
mod bounds_numbers;
mod bounds_work;
mod chain_corpus;
mod cli_details;
mod clock;
mod connect_errors;
mod connect_hub_status;
mod connect_local_hub;
mod connect_mosquitto;
mod connect_running_hub;
mod docs;
mod dps_allocation;
mod dps_amqp;
mod dps_https;
mod dps_protocol;
mod dps_sdk;
mod dps_trust;
mod engine_cli;
mod engine_errors;
mod escape_corpus;
mod export_files;
mod export_lifecycle;
mod export_pfx;
mod fixtures_apply;
mod fixtures_negative;
mod fleet;
mod fleet_dps;
mod fleet_tui;
mod guide_aws;
mod hub_auth;
mod hub_cli;
mod hub_floods;
mod hub_protocol;
mod hub_robust;
mod hub_sdk;
mod hub_status;
mod hub_trust_system;
mod lifecycle_hub;
mod lifecycle_keys;
mod module_layers;
mod names_lookup;
mod readme_blocks;
mod target_resolve;
mod transport_aedes;
mod transport_connect;
mod transport_robust;
mod transport_sdk;
mod tui_connect;
mod tui_first_hour;
mod tui_layers;
mod tui_newcomer;
mod tui_pty;
mod tui_snapshots;
mod tui_update;
mod workspace_index;
mod workspace_trust;
