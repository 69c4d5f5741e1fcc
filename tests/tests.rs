//! The integration tests: one binary, real sockets, a real upstream, the real gateway.

mod util;

mod catalog;
mod chaos;
mod cli;
mod core;
mod forwarding;
mod hardening;
mod operations;
mod properties;
mod queued;
mod stores;
