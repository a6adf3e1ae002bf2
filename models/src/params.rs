//! The list of parameters a model expects (official state-dict keys and shapes), and the check of a
//! checkpoint against it.

use std::collections::BTreeMap;

use crate::ModelError;

/// One expected parameter: its official key and shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    /// Official state-dict key, e.g. `image_encoder.blocks.0.attn.qkv.weight`.
    pub name: String,
    /// Expected shape.
    pub shape: Vec<usize>,
}

/// The parameters of a network, in definition order.
#[derive(Debug, Clone, Default)]
pub struct ParamSpecs(Vec<ParamSpec>);

impl ParamSpecs {
    /// Declares a parameter.
    pub fn add(&mut self, name: impl Into<String>, shape: &[usize]) {
        self.0.push(ParamSpec {
            name: name.into(),
            shape: shape.to_vec(),
        });
    }

    /// Declares `{prefix}.weight` `[out, inp]` and, if `bias`, `{prefix}.bias` `[out]`.
    pub fn add_linear(&mut self, prefix: &str, inp: usize, out: usize, bias: bool) {
        self.add(format!("{prefix}.weight"), &[out, inp]);
        if bias {
            self.add(format!("{prefix}.bias"), &[out]);
        }
    }

    /// Declares a norm layer's `{prefix}.weight` and `{prefix}.bias`, both `[dim]`.
    pub fn add_norm(&mut self, prefix: &str, dim: usize) {
        self.add(format!("{prefix}.weight"), &[dim]);
        self.add(format!("{prefix}.bias"), &[dim]);
    }

    /// The declared parameters.
    pub fn iter(&self) -> impl Iterator<Item = &ParamSpec> {
        self.0.iter()
    }

    /// Number of declared parameters.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when nothing is declared.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Total number of scalar values.
    pub fn numel(&self) -> usize {
        self.0.iter().map(|p| p.shape.iter().product::<usize>()).sum()
    }

    /// Compares a checkpoint's key → shape map with the declared parameters; lists every missing,
    /// unexpected and mis-shaped key in one error.
    pub fn check(&self, found: &BTreeMap<String, Vec<usize>>) -> Result<(), ModelError> {
        let mut missing = Vec::new();
        let mut misshaped = Vec::new();
        for spec in &self.0 {
            match found.get(&spec.name) {
                None => missing.push(spec.name.clone()),
                Some(shape) if *shape != spec.shape => {
                    misshaped.push(format!("{} (expected {:?}, found {:?})", spec.name, spec.shape, shape))
                }
                Some(_) => {}
            }
        }
        let expected: std::collections::BTreeSet<&str> = self.0.iter().map(|p| p.name.as_str()).collect();
        let unexpected: Vec<String> = found
            .keys()
            .filter(|k| !expected.contains(k.as_str()))
            .cloned()
            .collect();
        if missing.is_empty() && unexpected.is_empty() && misshaped.is_empty() {
            return Ok(());
        }
        Err(ModelError::KeyMismatch {
            missing,
            unexpected,
            misshaped,
        })
    }
}
