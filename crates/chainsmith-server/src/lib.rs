//! The local-cloud machinery chainsmith's clouds share (the local IoT Hub + DPS today, AWS IoT
//! Core next): one accept loop over every transport ([`listener`]), per-peer budgets
//! ([`budget`]), TLS that asks for client certificates ([`tls`]) and state files that no input
//! can make unreadable ([`state_file`]), the local control channel the CLI drives a running
//! server through ([`control`]), and what a long-running server gives back once it listens
//! ([`memory`]). Nothing here knows a cloud's protocol or vocabulary:
//! a cloud implements [`listener::Service`].

pub mod budget;
pub mod control;
pub mod listener;
pub mod local_tls;
pub mod memory;
pub mod state_file;
pub mod tls;
pub mod topic;
