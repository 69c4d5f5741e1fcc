//! The integration tests: one binary, real sockets, a real upstream, the real gateway.

mod admin_security;
mod attack_console;
mod certificates;
mod chaos;
mod cli;
mod console_api;
mod console_browser;
mod console_dead;
mod console_replay;
mod core;
mod event_log_stores;
mod file_reload;
mod forwarding;
mod handshakes;
mod hardening;
mod inprocess;
mod layout;
mod limits;
mod logs;
mod operations;
mod properties;
mod queue_faults;
mod queued;
mod recovery;
mod stores;
mod util;
