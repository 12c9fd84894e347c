//! Every op of the protocol has a typed call: each `### \`op\`` heading of `docs/protocol.md`
//! must be named, as a string literal, by code (not comments) of this client's `src/`. A new op
//! is not done until this client (and the TypeScript and Python ones) has it.

use std::collections::BTreeSet;
use std::path::Path;

fn protocol_ops() -> BTreeSet<String> {
    let doc = include_str!("../../../docs/protocol.md");
    let headings = doc.lines().filter_map(|l| l.strip_prefix("### "));
    let ops: BTreeSet<String> = headings
        .flat_map(|h| h.split('`').skip(1).step_by(2).map(str::to_owned))
        .collect();
    assert!(ops.len() > 40, "op headings not found: {ops:?}");
    ops
}

/// The string literals of the client's code, comments left out.
fn client_literals() -> BTreeSet<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut literals = BTreeSet::new();
    for file in std::fs::read_dir(src).unwrap() {
        let text = std::fs::read_to_string(file.unwrap().path()).unwrap();
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            literals.extend(line.split('"').skip(1).step_by(2).map(str::to_owned));
        }
    }
    literals
}

#[test]
fn every_op_of_the_protocol_has_a_typed_call() {
    let literals = client_literals();
    let missing: Vec<String> = protocol_ops()
        .into_iter()
        .filter(|op| !literals.contains(op))
        .collect();
    assert!(
        missing.is_empty(),
        "ops without a typed call in clients/rust: {missing:?}"
    );
}

#[test]
fn the_check_sees_a_missing_op() {
    let literals = client_literals();
    assert!(literals.contains("queue.push") && !literals.contains("queue.teleport"));
}
