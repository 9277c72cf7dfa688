//! `medgate completions SHELL` and `medgate man`: shell completion scripts and a roff man
//! page, both generated from the clap definitions (so they cannot drift from the parser).

use std::io::Write;

use clap::CommandFactory;

use crate::cli::{Cli, GlobalArgs};
use crate::error::Error;
use crate::exit::Outcome;

/// Arguments of `medgate completions`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  medgate completions bash > ~/.local/share/bash-completion/completions/medgate
  medgate completions zsh > \"${fpath[1]}/_medgate\"
  medgate completions fish > ~/.config/fish/completions/medgate.fish")]
pub struct CompletionsArgs {
    /// The shell to write a completion script for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Arguments of `medgate man`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  medgate man > medgate.1 && man ./medgate.1
  medgate man --subcommand run > medgate-run.1")]
pub struct ManArgs {
    /// Write the page of this subcommand (e.g. `run`) instead of the top-level page.
    #[arg(long, value_name = "NAME")]
    pub subcommand: Option<String>,
}

/// Runs `medgate completions`.
pub fn run_completions(args: CompletionsArgs, _global: &GlobalArgs) -> crate::Result<Outcome> {
    let mut cmd = Cli::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut cmd, "medgate", &mut out);
    out.flush()
        .map_err(|e| Error::Internal(format!("stdout: {e}")))?;
    Ok(Outcome::Pass)
}

/// The roff man page of medgate (or of one subcommand).
pub fn man_page(subcommand: Option<&str>) -> crate::Result<Vec<u8>> {
    let mut cmd = Cli::command();
    cmd.build();
    let page = match subcommand {
        None => cmd,
        Some(name) => {
            let names: Vec<String> = cmd
                .get_subcommands()
                .map(|s| s.get_name().to_string())
                .collect();
            match cmd.find_subcommand(name) {
                Some(s) => s.clone().display_name(format!("medgate-{name}")),
                None => {
                    return Err(Error::input(format!(
                        "no subcommand `{name}`; one of: {}",
                        names.join(", ")
                    )));
                }
            }
        }
    };
    let mut buf = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut buf)
        .map_err(|e| Error::Internal(format!("man page: {e}")))?;
    Ok(buf)
}

/// Runs `medgate man`.
pub fn run_man(args: ManArgs, _global: &GlobalArgs) -> crate::Result<Outcome> {
    let page = man_page(args.subcommand.as_deref())?;
    let mut out = std::io::stdout().lock();
    out.write_all(&page)
        .and_then(|_| out.flush())
        .map_err(|e| Error::Internal(format!("stdout: {e}")))?;
    Ok(Outcome::Pass)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_page_lists_every_subcommand_and_the_environment() {
        let page = String::from_utf8(man_page(None).unwrap()).unwrap();
        assert!(
            page.starts_with(".ie") || page.contains(".TH medgate"),
            "{}",
            &page[..200]
        );
        for sub in ["check", "run", "report", "verify", "completions", "man"] {
            assert!(page.contains(sub), "{sub}");
        }
        assert!(page.contains("MEDGATE_USER"));
        let run = String::from_utf8(man_page(Some("run")).unwrap()).unwrap();
        assert!(run.contains("medgate\\-run"), "{}", &run[..300]);
        assert!(man_page(Some("nope")).is_err());
    }

    #[test]
    fn bash_completion_names_subcommands() {
        let mut cmd = Cli::command();
        let mut buf = Vec::new();
        clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, "medgate", &mut buf);
        let s = String::from_utf8(buf).unwrap();
        assert!(s.contains("_medgate()") && s.contains("verify") && s.contains("completions"));
    }
}
