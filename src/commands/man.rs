//! `portcullis man`: the roff man page, generated from the clap definitions.
//!
//! One page on stdout rather than `--out DIR` with a page per subcommand: a packager
//! redirects it (`portcullis man > portcullis.1`) without the binary writing files, and the
//! page's SUBCOMMANDS section lists every command with its summary; each command's flags are
//! in its `--help`.

use crate::cli::Cli;
use clap::CommandFactory;
use std::process::ExitCode;

pub fn run() -> anyhow::Result<ExitCode> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut page)?;
    crate::out!("{}", String::from_utf8_lossy(&page))?;
    Ok(ExitCode::SUCCESS)
}
