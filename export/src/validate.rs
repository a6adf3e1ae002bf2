//! Structural check of an exported model: opset declared, initializers named, every node input defined
//! before use, every value produced once, every graph output produced.

use std::collections::HashSet;

use crate::pb;

/// Checks `model`'s structure; returns every problem found.
pub fn check_structure(model: &pb::ModelProto) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    if !model.opset_import.iter().any(|o| o.domain.is_empty() && o.version > 0) {
        problems.push("no default-domain opset declared".to_string());
    }
    let Some(graph) = &model.graph else {
        return Err(vec!["model has no graph".into()]);
    };
    let mut defined: HashSet<&str> = HashSet::new();
    for init in &graph.initializer {
        if init.name.is_empty() {
            problems.push("an initializer has no name".into());
        } else if !defined.insert(&init.name) {
            problems.push(format!("initializer '{}' defined twice", init.name));
        }
    }
    for input in &graph.input {
        if !defined.insert(&input.name) {
            problems.push(format!("graph input '{}' defined twice", input.name));
        }
    }
    for node in &graph.node {
        for name in node.input.iter().filter(|n| !n.is_empty()) {
            if !defined.contains(name.as_str()) {
                problems.push(format!(
                    "node '{}' ({}) uses undefined value '{name}'",
                    node.name, node.op_type
                ));
            }
        }
        for name in &node.output {
            if !defined.insert(name) {
                problems.push(format!("value '{name}' produced twice"));
            }
        }
    }
    for output in &graph.output {
        if !defined.contains(output.name.as_str()) {
            problems.push(format!("graph output '{}' is never produced", output.name));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}
