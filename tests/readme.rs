//! The README's configuration reference is generated from the flags themselves (their doc comments,
//! environment variables and defaults), so that it cannot drift from `--help`. When a setting changes,
//! `ZAJEL_BLESS=1 cargo test --test readme` rewrites the reference; without it, a difference fails.

use clap::{ArgAction, CommandFactory};
use zajel_signal::Config;

const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
const BEGIN: &str = "<!-- configuration reference: generated from --help by tests/readme.rs -->\n";
const END: &str = "<!-- end of configuration reference -->\n";

/// One table per help heading: flag, environment variable, default, meaning.
fn configuration_reference() -> String {
    let command = Config::command();
    let mut sections: Vec<(String, Vec<String>)> = Vec::new();
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else {
            continue;
        };
        if matches!(arg.get_action(), ArgAction::Help | ArgAction::Version) {
            continue;
        }
        let heading = arg.get_help_heading().unwrap_or("General").to_owned();
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(ToString::to_string)
            .unwrap_or_default();
        let (meaning, documented_default) = split_default(&help);
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|value| value.to_string_lossy().into_owned())
            .collect();
        let default = if !defaults.is_empty() {
            format!("`{}`", defaults.join(","))
        } else if let Some(documented) = documented_default {
            documented
        } else if matches!(arg.get_action(), ArgAction::SetTrue) {
            "off".to_owned()
        } else {
            "none".to_owned()
        };
        let env = arg
            .get_env()
            .map(|env| format!("`{}`", env.to_string_lossy()))
            .unwrap_or_default();
        let row = format!("| `--{long}` | {env} | {default} | {meaning} |");
        match sections.iter_mut().find(|(name, _)| *name == heading) {
            Some((_, rows)) => rows.push(row),
            None => sections.push((heading, vec![row])),
        }
    }
    let mut text = String::new();
    for (heading, rows) in sections {
        text.push_str(&format!(
            "\n**{heading}**\n\n| flag | environment | default | meaning |\n|---|---|---|---|\n"
        ));
        for row in rows {
            text.push_str(&row);
            text.push('\n');
        }
    }
    text.push('\n');
    text
}

/// Splits a help text into its meaning and the `[default: …]` it documents in words, if any.
fn split_default(help: &str) -> (String, Option<String>) {
    match help.find("[default: ") {
        Some(start) => {
            let end = help[start..]
                .find(']')
                .map_or(help.len(), |end| start + end + 1);
            let documented = help[start + "[default: ".len()..end - 1].to_owned();
            let meaning = format!("{} {}", help[..start].trim_end(), help[end..].trim_start());
            (meaning.trim().to_owned(), Some(documented))
        }
        None => (help.trim().to_owned(), None),
    }
}

#[test]
fn the_readme_configuration_reference_matches_the_flags() {
    let readme = std::fs::read_to_string(README).expect("README.md is readable");
    let start = readme
        .find(BEGIN)
        .expect("the README has the reference's start marker")
        + BEGIN.len();
    let end = readme
        .find(END)
        .expect("the README has the reference's end marker");
    let generated = configuration_reference();
    if readme[start..end] == generated {
        return;
    }
    if std::env::var_os("ZAJEL_BLESS").is_some() {
        let updated = format!("{}{generated}{}", &readme[..start], &readme[end..]);
        std::fs::write(README, updated).expect("README.md is writable");
        return;
    }
    panic!(
        "README.md's configuration reference differs from --help; run \
         `ZAJEL_BLESS=1 cargo test --test readme` and commit the result. Expected:\n{generated}"
    );
}

#[test]
fn documented_defaults_are_read_from_the_help_text() {
    assert_eq!(
        split_default("Public endpoint [default: null] in server_info"),
        (
            "Public endpoint in server_info".to_owned(),
            Some("null".to_owned())
        )
    );
    assert_eq!(split_default("Plain text"), ("Plain text".to_owned(), None));
}
