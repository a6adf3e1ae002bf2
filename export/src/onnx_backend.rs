//! [`Backend`] that records ONNX nodes: running the SAM definition on it writes the graph.
//!
//! Parameters become initializers named by their official keys (emitted once, on first use);
//! constants become initializers named `const_N`. Tensor handles carry the value name and its rank,
//! which is all the ops below need to build shape-polymorphic nodes.

use std::cell::RefCell;
use std::collections::HashSet;

use crate::pb;
use medico_models::backend::BatchNorm;
use medico_models::{Backend, HostTensor, StateDict};

/// A value in the graph being built.
#[derive(Debug, Clone)]
pub struct OnnxTensor {
    /// Name of the value.
    pub name: String,
    /// Number of axes.
    pub rank: usize,
}

#[derive(Default)]
struct Graph {
    nodes: Vec<pb::NodeProto>,
    initializers: Vec<pb::TensorProto>,
    emitted_params: HashSet<String>,
    next_id: usize,
}

/// Records ONNX nodes for a state dict's parameters.
pub struct OnnxBackend<'s> {
    state: &'s StateDict,
    graph: RefCell<Graph>,
}

/// A node attribute.
pub enum Attr {
    /// An int.
    Int(i64),
    /// A list of ints.
    Ints(Vec<i64>),
    /// A float.
    Float(f32),
    /// A string.
    Str(&'static str),
}

fn attribute(name: &str, value: Attr) -> pb::AttributeProto {
    use pb::attribute_proto::AttributeType;
    let mut a = pb::AttributeProto {
        name: name.to_string(),
        ..Default::default()
    };
    match value {
        Attr::Int(i) => {
            a.i = i;
            a.r#type = AttributeType::Int as i32;
        }
        Attr::Ints(v) => {
            a.ints = v;
            a.r#type = AttributeType::Ints as i32;
        }
        Attr::Float(f) => {
            a.f = f;
            a.r#type = AttributeType::Float as i32;
        }
        Attr::Str(s) => {
            a.s = s.as_bytes().to_vec();
            a.r#type = AttributeType::String as i32;
        }
    }
    a
}

/// A float initializer.
pub fn float_tensor(name: &str, dims: &[usize], values: &[f32]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.to_string(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: pb::tensor_proto::DataType::Float as i32,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn int64_tensor(name: &str, dims: &[usize], values: &[i64]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.to_string(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: pb::tensor_proto::DataType::Int64 as i32,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

impl<'s> OnnxBackend<'s> {
    /// A recorder whose parameters come from `state` (already checked against the model).
    pub fn new(state: &'s StateDict) -> Self {
        Self {
            state,
            graph: RefCell::new(Graph::default()),
        }
    }

    fn fresh(&self, prefix: &str) -> String {
        let mut g = self.graph.borrow_mut();
        g.next_id += 1;
        format!("{prefix}{}", g.next_id)
    }

    /// The host values of parameter `name`.
    fn host_param(&self, name: &str) -> &'s HostTensor {
        self.state
            .get(name)
            .unwrap_or_else(|| panic!("parameter '{name}' missing: checkpoints are checked against the model first"))
    }

    /// Emits the initializer of every parameter among `inputs` that a node uses for the first time, so a
    /// parameter only folded into another (BatchNorm) never reaches the graph.
    fn emit_params(&self, inputs: &[&str]) {
        let mut g = self.graph.borrow_mut();
        for &name in inputs {
            if let Some(tensor) = self.state.get(name) {
                if g.emitted_params.insert(name.to_string()) {
                    g.initializers.push(float_tensor(name, &tensor.shape, &tensor.data));
                }
            }
        }
    }

    /// Adds a node with one output of rank `rank`.
    pub fn node(&self, op: &str, inputs: &[&str], attrs: Vec<(&str, Attr)>, rank: usize) -> OnnxTensor {
        self.emit_params(inputs);
        let output = self.fresh("t");
        let node = pb::NodeProto {
            name: format!("{op}_{output}"),
            op_type: op.to_string(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.clone()],
            attribute: attrs.into_iter().map(|(n, v)| attribute(n, v)).collect(),
            ..Default::default()
        };
        self.graph.borrow_mut().nodes.push(node);
        OnnxTensor { name: output, rank }
    }

    /// An int64 constant initializer; returns its name.
    pub fn const_i64(&self, values: &[i64], dims: &[usize]) -> String {
        let name = self.fresh("const_");
        self.graph
            .borrow_mut()
            .initializers
            .push(int64_tensor(&name, dims, values));
        name
    }

    /// A float scalar constant; returns its name.
    pub fn const_scalar(&self, value: f32) -> String {
        let name = self.fresh("const_");
        self.graph
            .borrow_mut()
            .initializers
            .push(float_tensor(&name, &[], &[value]));
        name
    }

    /// Renames the value `from` to the graph output `to` (an Identity node).
    pub fn output_as(&self, from: &OnnxTensor, to: &str) {
        let node = pb::NodeProto {
            name: format!("Identity_{to}"),
            op_type: "Identity".into(),
            input: vec![from.name.clone()],
            output: vec![to.to_string()],
            ..Default::default()
        };
        self.graph.borrow_mut().nodes.push(node);
    }

    /// The recorded nodes and initializers.
    pub fn finish(self) -> (Vec<pb::NodeProto>, Vec<pb::TensorProto>) {
        let g = self.graph.into_inner();
        (g.nodes, g.initializers)
    }

    fn binary(&self, op: &str, a: &OnnxTensor, b: &OnnxTensor) -> OnnxTensor {
        self.node(op, &[&a.name, &b.name], vec![], a.rank.max(b.rank))
    }

    fn unary(&self, op: &str, x: &OnnxTensor) -> OnnxTensor {
        self.node(op, &[&x.name], vec![], x.rank)
    }

    /// `Shape(x)[start..end]` as an int64 vector.
    pub fn shape_slice(&self, x: &OnnxTensor, start: i64, end: i64) -> OnnxTensor {
        let shape = self.node("Shape", &[&x.name], vec![], 1);
        let starts = self.const_i64(&[start], &[1]);
        let ends = self.const_i64(&[end], &[1]);
        self.node("Slice", &[&shape.name, &starts, &ends], vec![], 1)
    }
}

impl Backend for OnnxBackend<'_> {
    type Tensor = OnnxTensor;

    fn param(&self, name: &str) -> OnnxTensor {
        OnnxTensor {
            name: name.to_string(),
            rank: self.host_param(name).shape.len(),
        }
    }

    fn constant(&self, values: &[f32], shape: &[usize]) -> OnnxTensor {
        let name = self.fresh("const_");
        self.graph
            .borrow_mut()
            .initializers
            .push(float_tensor(&name, shape, values));
        OnnxTensor {
            name,
            rank: shape.len(),
        }
    }

    fn linear(&self, x: &OnnxTensor, weight: &OnnxTensor, bias: Option<&OnnxTensor>) -> OnnxTensor {
        let transposed = self.node("Transpose", &[&weight.name], vec![("perm", Attr::Ints(vec![1, 0]))], 2);
        let product = self.node("MatMul", &[&x.name, &transposed.name], vec![], x.rank);
        match bias {
            Some(b) => self.binary("Add", &product, b),
            None => product,
        }
    }

    fn conv2d(
        &self,
        x: &OnnxTensor,
        weight: &OnnxTensor,
        bias: Option<&OnnxTensor>,
        stride: usize,
        padding: usize,
    ) -> OnnxTensor {
        let mut inputs = vec![x.name.as_str(), weight.name.as_str()];
        if let Some(b) = bias {
            inputs.push(&b.name);
        }
        let (s, p) = (stride as i64, padding as i64);
        self.node(
            "Conv",
            &inputs,
            vec![
                ("strides", Attr::Ints(vec![s, s])),
                ("pads", Attr::Ints(vec![p, p, p, p])),
            ],
            4,
        )
    }

    fn conv2d_batch_norm(
        &self,
        x: &OnnxTensor,
        weight: &OnnxTensor,
        bias: Option<&OnnxTensor>,
        norm: &BatchNorm<'_, OnnxTensor>,
        stride: usize,
        padding: usize,
        groups: usize,
    ) -> OnnxTensor {
        let (w, b) = fold_batch_norm(
            self.host_param(&weight.name),
            bias.map(|b| &self.host_param(&b.name).data[..]),
            [norm.weight, norm.bias, norm.running_mean, norm.running_var].map(|t| &self.host_param(&t.name).data[..]),
            norm.eps,
        );
        let weight_name = format!("{}.bn_folded", weight.name);
        let bias_name = format!("{}.bn_folded_bias", weight.name);
        {
            let mut g = self.graph.borrow_mut();
            g.initializers.push(float_tensor(&weight_name, &w.shape, &w.data));
            g.initializers.push(float_tensor(&bias_name, &[b.len()], &b));
        }
        let (s, p) = (stride as i64, padding as i64);
        self.node(
            "Conv",
            &[&x.name, &weight_name, &bias_name],
            vec![
                ("strides", Attr::Ints(vec![s, s])),
                ("pads", Attr::Ints(vec![p, p, p, p])),
                ("group", Attr::Int(groups as i64)),
            ],
            4,
        )
    }

    fn conv_transpose2d(
        &self,
        x: &OnnxTensor,
        weight: &OnnxTensor,
        bias: Option<&OnnxTensor>,
        stride: usize,
    ) -> OnnxTensor {
        let mut inputs = vec![x.name.as_str(), weight.name.as_str()];
        if let Some(b) = bias {
            inputs.push(&b.name);
        }
        let s = stride as i64;
        self.node("ConvTranspose", &inputs, vec![("strides", Attr::Ints(vec![s, s]))], 4)
    }

    fn layer_norm(&self, x: &OnnxTensor, weight: &OnnxTensor, bias: &OnnxTensor, eps: f64) -> OnnxTensor {
        self.node(
            "LayerNormalization",
            &[&x.name, &weight.name, &bias.name],
            vec![("axis", Attr::Int(-1)), ("epsilon", Attr::Float(eps as f32))],
            x.rank,
        )
    }

    fn gelu(&self, x: &OnnxTensor) -> OnnxTensor {
        // x * 0.5 * (1 + erf(x / sqrt(2))), the exact GELU as opset 17 spells it.
        let sqrt2 = self.const_scalar(std::f32::consts::SQRT_2);
        let scaled = self.node("Div", &[&x.name, &sqrt2], vec![], x.rank);
        let erf = self.unary("Erf", &scaled);
        let one = self.const_scalar(1.0);
        let shifted = self.node("Add", &[&erf.name, &one], vec![], x.rank);
        let product = self.binary("Mul", x, &shifted);
        let half = self.const_scalar(0.5);
        self.node("Mul", &[&product.name, &half], vec![], x.rank)
    }

    fn relu(&self, x: &OnnxTensor) -> OnnxTensor {
        self.unary("Relu", x)
    }

    fn sigmoid(&self, x: &OnnxTensor) -> OnnxTensor {
        self.unary("Sigmoid", x)
    }

    fn instance_norm(&self, x: &OnnxTensor, channels: usize, eps: f64) -> OnnxTensor {
        let scale = self.constant(&vec![1.0; channels], &[channels]);
        let shift = self.constant(&vec![0.0; channels], &[channels]);
        self.node(
            "InstanceNormalization",
            &[&x.name, &scale.name, &shift.name],
            vec![("epsilon", Attr::Float(eps as f32))],
            x.rank,
        )
    }

    fn softmax_last(&self, x: &OnnxTensor) -> OnnxTensor {
        self.node("Softmax", &[&x.name], vec![("axis", Attr::Int(-1))], x.rank)
    }

    /// `exp(x - max) / Σ exp(x - max)` over `axis` in reduce and element-wise ops, in place (no
    /// transposes): tract runs `Softmax` and `ReduceMax` over a short last axis row by row with a fixed
    /// per-row cost (18 ms for the decoder's 32768 rows of 7 prompt tokens on 2 cores); over a middle
    /// axis with long contiguous rows inside, every pass is vectorized in both engines.
    fn softmax_short(&self, x: &OnnxTensor, axis: usize, _rank: usize) -> OnnxTensor {
        let axis = axis as i64;
        let axes = self.const_i64(&[axis], &[1]);
        let max = self.node("ReduceMax", &[&x.name], vec![("axes", Attr::Ints(vec![axis]))], x.rank);
        let exp = self.unary("Exp", &self.binary("Sub", x, &max));
        let sum = self.node("ReduceSum", &[&exp.name, &axes], vec![], x.rank);
        self.binary("Div", &exp, &sum)
    }

    fn sin(&self, x: &OnnxTensor) -> OnnxTensor {
        self.unary("Sin", x)
    }

    fn cos(&self, x: &OnnxTensor) -> OnnxTensor {
        self.unary("Cos", x)
    }

    fn matmul(&self, a: &OnnxTensor, b: &OnnxTensor) -> OnnxTensor {
        self.binary("MatMul", a, b)
    }

    fn add(&self, a: &OnnxTensor, b: &OnnxTensor) -> OnnxTensor {
        self.binary("Add", a, b)
    }

    fn sub(&self, a: &OnnxTensor, b: &OnnxTensor) -> OnnxTensor {
        self.binary("Sub", a, b)
    }

    fn mul(&self, a: &OnnxTensor, b: &OnnxTensor) -> OnnxTensor {
        self.binary("Mul", a, b)
    }

    fn scale(&self, x: &OnnxTensor, factor: f64) -> OnnxTensor {
        let c = self.const_scalar(factor as f32);
        self.node("Mul", &[&x.name, &c], vec![], x.rank)
    }

    fn add_scalar(&self, x: &OnnxTensor, value: f64) -> OnnxTensor {
        let c = self.const_scalar(value as f32);
        self.node("Add", &[&x.name, &c], vec![], x.rank)
    }

    fn equal_scalar(&self, x: &OnnxTensor, value: f64) -> OnnxTensor {
        let c = self.const_scalar(value as f32);
        let equal = self.node("Equal", &[&x.name, &c], vec![], x.rank);
        self.node("Cast", &[&equal.name], vec![("to", Attr::Int(1))], x.rank)
    }

    fn reshape(&self, x: &OnnxTensor, shape: &[i64]) -> OnnxTensor {
        let s = self.const_i64(shape, &[shape.len()]);
        self.node("Reshape", &[&x.name, &s], vec![], shape.len())
    }

    fn permute(&self, x: &OnnxTensor, perm: &[usize]) -> OnnxTensor {
        let perm = perm.iter().map(|&p| p as i64).collect();
        self.node("Transpose", &[&x.name], vec![("perm", Attr::Ints(perm))], x.rank)
    }

    fn slice(&self, x: &OnnxTensor, axis: usize, start: usize, end: usize) -> OnnxTensor {
        let starts = self.const_i64(&[start as i64], &[1]);
        let ends = self.const_i64(&[end as i64], &[1]);
        let axes = self.const_i64(&[axis as i64], &[1]);
        self.node("Slice", &[&x.name, &starts, &ends, &axes], vec![], x.rank)
    }

    fn pad_end(&self, x: &OnnxTensor, pads: &[(usize, usize)]) -> OnnxTensor {
        let mut spec = vec![0i64; 2 * x.rank];
        for &(axis, amount) in pads {
            spec[x.rank + axis] = amount as i64;
        }
        let p = self.const_i64(&spec, &[spec.len()]);
        self.node("Pad", &[&x.name, &p], vec![("mode", Attr::Str("constant"))], x.rank)
    }

    fn concat(&self, xs: &[&OnnxTensor], axis: usize) -> OnnxTensor {
        let names: Vec<&str> = xs.iter().map(|t| t.name.as_str()).collect();
        self.node("Concat", &names, vec![("axis", Attr::Int(axis as i64))], xs[0].rank)
    }

    fn gather_rows(&self, table: &OnnxTensor, indices: &[i64], index_shape: &[usize]) -> OnnxTensor {
        let idx = self.const_i64(indices, index_shape);
        self.node(
            "Gather",
            &[&table.name, &idx],
            vec![("axis", Attr::Int(0))],
            index_shape.len() + table.rank - 1,
        )
    }

    fn expand_batch_like(&self, x: &OnnxTensor, like: &OnnxTensor) -> OnnxTensor {
        let batch = self.shape_slice(like, 0, 1);
        let ones = self.const_i64(&vec![1; x.rank - 1], &[x.rank - 1]);
        let shape = self.node("Concat", &[&batch.name, &ones], vec![("axis", Attr::Int(0))], 1);
        self.node("Expand", &[&x.name, &shape.name], vec![], x.rank)
    }

    fn resize_bilinear(&self, x: &OnnxTensor, h: usize, w: usize) -> OnnxTensor {
        let leading = self.shape_slice(x, 0, 2);
        let spatial = self.const_i64(&[h as i64, w as i64], &[2]);
        let sizes = self.node("Concat", &[&leading.name, &spatial], vec![("axis", Attr::Int(0))], 1);
        resize_linear(self, x, &sizes)
    }
}

/// Folds an inference-mode BatchNorm (`[gamma, beta, mean, var]`, one value per output channel) into the
/// convolution before it (bias `conv_bias`, none for TinyViT's `Conv2d_BN`): `w' = w * gamma / sqrt(var +
/// eps)`, `b' = beta + (conv_bias - mean) * gamma / sqrt(var + eps)`, computed in f64 and rounded once.
fn fold_batch_norm(
    weight: &HostTensor,
    conv_bias: Option<&[f32]>,
    norm: [&[f32]; 4],
    eps: f64,
) -> (HostTensor, Vec<f32>) {
    let [gamma, beta, mean, var] = norm;
    let out = weight.shape[0];
    let per_channel = weight.data.len() / out.max(1);
    let scale: Vec<f64> = (0..out)
        .map(|o| gamma[o] as f64 / (var[o] as f64 + eps).sqrt())
        .collect();
    let data = weight
        .data
        .iter()
        .enumerate()
        .map(|(i, &v)| (v as f64 * scale[i / per_channel]) as f32)
        .collect();
    let bias = (0..out)
        .map(|o| {
            let conv_bias = conv_bias.map_or(0.0, |b| b[o] as f64);
            (beta[o] as f64 + (conv_bias - mean[o] as f64) * scale[o]) as f32
        })
        .collect();
    (HostTensor::new(weight.shape.clone(), data), bias)
}

/// Bilinear `Resize` of an NCHW value to int64 `sizes` (PyTorch `align_corners=False`).
pub fn resize_linear(b: &OnnxBackend<'_>, x: &OnnxTensor, sizes: &OnnxTensor) -> OnnxTensor {
    b.node(
        "Resize",
        &[&x.name, "", "", &sizes.name],
        vec![
            ("mode", Attr::Str("linear")),
            ("coordinate_transformation_mode", Attr::Str("pytorch_half_pixel")),
        ],
        x.rank,
    )
}
