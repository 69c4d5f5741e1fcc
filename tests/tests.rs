//! The integration tests: one binary, real sockets, a real upstream, the real gateway.

mod util;

mod cli;
mod core;
mod stores;
