//! `docs/operations.md`'s configuration reference says exactly what the CLI accepts: every
//! flag of every command with its variable and default, and nothing the CLI does not know.

use std::collections::BTreeSet;

use clap::CommandFactory;
use customer_api::config::{Cli, SECRET_VARIABLES};

/// (variable or `—`, `--flag`, default as the table writes it).
type Row = (String, String, String);

fn expected_rows(command: &clap::Command, rows: &mut BTreeSet<Row>) {
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else {
            continue; // positional: documented in the text
        };
        if ["help", "version"].contains(&long) {
            continue;
        }
        let variable = arg.get_env().map_or("—".to_owned(), |env| {
            format!("`{}`", env.to_string_lossy())
        });
        let default = if !arg.get_action().takes_values() {
            "off".to_owned()
        } else {
            let values: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|value| value.to_string_lossy().into_owned())
                .collect();
            if values.is_empty() {
                "—".to_owned()
            } else {
                format!("`{}`", values.join(","))
            }
        };
        rows.insert((variable, format!("`--{long}`"), default));
    }
    for sub in command.get_subcommands() {
        expected_rows(sub, rows);
    }
}

fn document() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
        .expect("docs/operations.md")
}

fn documented_rows(doc: &str) -> BTreeSet<Row> {
    let start = doc
        .find("<!-- configuration-reference")
        .expect("the reference's start marker");
    let end = doc
        .find("<!-- /configuration-reference -->")
        .expect("the reference's end marker");
    doc[start..end]
        .lines()
        .filter(|line| line.starts_with("| `") || line.starts_with("| —"))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            assert!(cells.len() >= 5, "a reference row has 5 cells: {line}");
            (
                cells[0].to_owned(),
                cells[1].to_owned(),
                cells[2].to_owned(),
            )
        })
        .collect()
}

#[test]
fn the_configuration_reference_lists_every_flag_and_variable_with_its_default() {
    let mut expected = BTreeSet::new();
    expected_rows(&Cli::command(), &mut expected);
    let documented = documented_rows(&document());
    let missing: Vec<_> = expected.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&expected).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "docs/operations.md is out of step with the CLI.\nmissing or different there: \
         {missing:#?}\nnot in the CLI: {unknown:#?}"
    );
    assert!(expected.len() > 50, "{} rows", expected.len());
}

#[test]
fn every_secret_file_variable_is_documented() {
    let doc = document();
    for variable in SECRET_VARIABLES {
        assert!(
            doc.contains(&format!("`{variable}_FILE`")),
            "{variable}_FILE is not in docs/operations.md"
        );
    }
}
