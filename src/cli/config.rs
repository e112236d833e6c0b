//! `mandate config`: the effective settings and where each came from, or (`--reference`) the
//! reference of every setting.

use clap::{ArgMatches, CommandFactory};

use crate::cli::Cli;
use crate::settings::Settings;

pub fn run(settings: &Settings, matches: &ArgMatches, reference: bool) {
    let command = Cli::command();
    if reference {
        print!("{}", crate::settings::report::reference(&command));
    } else {
        print!(
            "{}",
            crate::settings::report::effective(&command, matches, settings)
        );
    }
}
