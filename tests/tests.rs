//! The integration tests: one binary, real sockets, a real upstream, the real gateway.

mod util;

mod admin_security;
mod certificates;
mod chaos;
mod cli;
mod console_api;
mod console_replay;
mod core;
mod forwarding;
mod handshakes;
mod hardening;
mod inprocess;
mod layout;
mod limits;
mod operations;
mod properties;
mod queue_faults;
mod queued;
mod recovery;
mod stores;
