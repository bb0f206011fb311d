//! The ABI table the firmware links from (`wasmfleet_node::abi`) against the contract:
//! `modules/ABI.md`, what guests are written against.

use std::collections::BTreeSet;

use wasmfleet_fw_runtime::abi::{Capability, FUNCTIONS, Val, errno, limits};

const ABI_MD: &str = include_str!("../../../../modules/ABI.md");

/// `(level: i32, ptr, len) -> ()` → parameter and result types (untyped names are `i32`:
/// pointers, lengths and handles).
fn parse_signature(sig: &str) -> (Vec<Val>, Vec<Val>) {
    let sig = sig.trim().trim_matches('`');
    let (params, results) = sig.split_once("->").expect(sig);
    let ty = |t: &str| match t.trim() {
        "i64" => Val::I64,
        "i32" | "" => Val::I32,
        other => panic!("type {other} in {sig}"),
    };
    let params = params.trim().trim_start_matches('(').trim_end_matches(')');
    let params = params
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| ty(p.split_once(':').map_or("", |(_, t)| t)))
        .collect();
    let results = match results.trim() {
        "()" => vec![],
        r => vec![ty(r)],
    };
    (params, results)
}

#[test]
fn abi_md_import_tables_match_the_firmware_table() {
    let imports = ABI_MD
        .split("## Imports")
        .nth(1)
        .expect("an Imports section");
    let imports = imports.split("\n## ").next().unwrap();
    let mut heading = "";
    let mut documented = BTreeSet::new();
    for line in imports.lines() {
        if line.starts_with("### ") {
            heading = line;
            continue;
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 || !cells[1].starts_with('`') || !cells[2].starts_with("`(") {
            continue;
        }
        let name = cells[1].trim_matches('`');
        let f = FUNCTIONS
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("ABI.md documents `{name}`, the firmware table lacks it"));
        let (params, results) = parse_signature(cells[2]);
        assert_eq!(
            (params.as_slice(), results.as_slice()),
            (f.params, f.results),
            "{line}"
        );
        let section_ok = match f.capability {
            Capability::Base => heading.starts_with("### Always available"),
            c => heading.contains(&format!(
                "`{}`",
                c.field().trim_start_matches("capabilities.")
            )),
        };
        assert!(
            section_ok,
            "`{name}` ({:?}) documented under {heading}",
            f.capability
        );
        documented.insert(name);
    }
    let table: BTreeSet<&str> = FUNCTIONS.iter().map(|f| f.name).collect();
    assert_eq!(documented, table);
}

#[test]
fn abi_md_error_codes_match() {
    let codes = [
        ("NOT_PERMITTED", errno::NOT_PERMITTED),
        ("NOT_FOUND", errno::NOT_FOUND),
        ("INVALID_ARGUMENT", errno::INVALID_ARGUMENT),
        ("BAD_HANDLE", errno::BAD_HANDLE),
        ("BUSY", errno::BUSY),
        ("NO_SPACE", errno::NO_SPACE),
        ("TOO_MANY", errno::TOO_MANY),
        ("TOO_LARGE", errno::TOO_LARGE),
        ("BUS", errno::BUS),
        ("NO_ACKNOWLEDGE", errno::NO_ACKNOWLEDGE),
        ("ARBITRATION_LOSS", errno::ARBITRATION_LOSS),
        ("IO", errno::IO),
        ("UNSUPPORTED", errno::UNSUPPORTED),
    ];
    let documented: BTreeSet<(String, i32)> = ABI_MD
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let code = cells.get(1)?.parse::<i32>().ok().filter(|c| *c < 0)?;
            Some((cells.get(2)?.trim_matches('`').to_string(), code))
        })
        .collect();
    let ours: BTreeSet<(String, i32)> = codes.iter().map(|(n, c)| (n.to_string(), *c)).collect();
    assert_eq!(documented, ours);
}
