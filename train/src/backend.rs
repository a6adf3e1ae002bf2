//! [`medico_models::Backend`] on tch tensors: the SAM definition computing on libtorch (CPU or CUDA,
//! f32 or bf16), with autograd through the parameters.

use std::collections::HashMap;

use medico_models::backend::BatchNorm;
use medico_models::{Backend, StateDict};
use tch::{Device, Kind, Tensor};

/// A tch tensor handle; cloning is a shallow clone (same storage, same autograd node).
#[derive(Debug)]
pub struct TchTensor(pub Tensor);

impl Clone for TchTensor {
    fn clone(&self) -> Self {
        Self(self.0.shallow_clone())
    }
}

/// Parameters on one device in one dtype, addressed by official key.
pub struct TchBackend {
    params: HashMap<String, Tensor>,
    device: Device,
    kind: Kind,
}

impl TchBackend {
    /// Copies a host state dict to `device` as `kind` (`Kind::Float` or `Kind::BFloat16`).
    pub fn from_state_dict(state: &StateDict, device: Device, kind: Kind) -> Self {
        let params = state
            .iter()
            .map(|(name, t)| {
                let shape: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
                let tensor = Tensor::from_slice(&t.data)
                    .reshape(&shape)
                    .to_device(device)
                    .to_kind(kind);
                (name.clone(), tensor)
            })
            .collect();
        Self { params, device, kind }
    }

    /// The device the parameters live on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The dtype computations run in.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Parameters already on `device` as `kind` (e.g. read from a training checkpoint).
    pub fn from_tensors(params: HashMap<String, Tensor>, device: Device, kind: Kind) -> Self {
        Self { params, device, kind }
    }

    /// Every parameter with its key, sorted by key (shallow handles).
    pub fn named_params(&self) -> Vec<(String, Tensor)> {
        let mut params: Vec<(String, Tensor)> = self
            .params
            .iter()
            .map(|(k, t)| (k.clone(), t.shallow_clone()))
            .collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        params
    }

    /// Makes every parameter for which `trainable` holds an autograd leaf that requires gradients, and the
    /// others plain constants; returns the trainable ones with their keys. What PyTorch registers as buffers
    /// is never trained: BatchNorm running statistics (TinyViT's `Conv2d_BN` runs with them frozen) and the
    /// prompt encoder's random Fourier matrix.
    pub fn make_trainable(&mut self, trainable: impl Fn(&str) -> bool) -> Vec<(String, Tensor)> {
        for (name, tensor) in self.params.iter_mut() {
            let train = trainable(name) && !is_buffer(name);
            *tensor = tensor.detach().set_requires_grad(train);
        }
        self.named_params()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect()
    }

    /// Moves a host tensor (any kind) to this backend's device and dtype.
    pub fn input(&self, tensor: &Tensor) -> TchTensor {
        TchTensor(tensor.to_device(self.device).to_kind(self.kind))
    }
}

/// Whether `name` is one of SAM's buffers (state the official modules keep out of `parameters()`).
fn is_buffer(name: &str) -> bool {
    name.ends_with(".running_mean")
        || name.ends_with(".running_var")
        || name.ends_with("positional_encoding_gaussian_matrix")
}

impl Backend for TchBackend {
    type Tensor = TchTensor;

    fn param(&self, name: &str) -> TchTensor {
        let tensor = self
            .params
            .get(name)
            .unwrap_or_else(|| panic!("parameter '{name}' missing: checkpoints are checked against the model first"));
        TchTensor(tensor.shallow_clone())
    }

    fn constant(&self, values: &[f32], shape: &[usize]) -> TchTensor {
        let shape: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        TchTensor(
            Tensor::from_slice(values)
                .reshape(&shape)
                .to_device(self.device)
                .to_kind(self.kind),
        )
    }

    fn linear(&self, x: &TchTensor, weight: &TchTensor, bias: Option<&TchTensor>) -> TchTensor {
        TchTensor(x.0.linear(&weight.0, bias.map(|b| &b.0)))
    }

    fn conv2d(
        &self,
        x: &TchTensor,
        weight: &TchTensor,
        bias: Option<&TchTensor>,
        stride: usize,
        padding: usize,
    ) -> TchTensor {
        let (s, p) = (stride as i64, padding as i64);
        TchTensor(x.0.conv2d(&weight.0, bias.map(|b| &b.0), [s, s], [p, p], [1, 1], 1))
    }

    fn conv2d_batch_norm(
        &self,
        x: &TchTensor,
        weight: &TchTensor,
        bias: Option<&TchTensor>,
        norm: &BatchNorm<'_, TchTensor>,
        stride: usize,
        padding: usize,
        groups: usize,
    ) -> TchTensor {
        let (s, p) = (stride as i64, padding as i64);
        let conv =
            x.0.conv2d(&weight.0, bias.map(|b| &b.0), [s, s], [p, p], [1, 1], groups as i64);
        // Inference mode: the running statistics normalize and are never updated (nor differentiated).
        TchTensor(conv.batch_norm(
            Some(&norm.weight.0),
            Some(&norm.bias.0),
            Some(&norm.running_mean.0.detach()),
            Some(&norm.running_var.0.detach()),
            false,
            0.0,
            norm.eps,
            true,
        ))
    }

    fn conv_transpose2d(
        &self,
        x: &TchTensor,
        weight: &TchTensor,
        bias: Option<&TchTensor>,
        stride: usize,
    ) -> TchTensor {
        let s = stride as i64;
        TchTensor(x.0.conv_transpose2d(&weight.0, bias.map(|b| &b.0), [s, s], [0, 0], [0, 0], 1, [1, 1]))
    }

    fn layer_norm(&self, x: &TchTensor, weight: &TchTensor, bias: &TchTensor, eps: f64) -> TchTensor {
        let last = *x.0.size().last().expect("layer_norm of a scalar");
        TchTensor(x.0.layer_norm([last], Some(&weight.0), Some(&bias.0), eps, true))
    }

    fn gelu(&self, x: &TchTensor) -> TchTensor {
        TchTensor(x.0.gelu("none"))
    }

    fn relu(&self, x: &TchTensor) -> TchTensor {
        TchTensor(x.0.relu())
    }

    fn sigmoid(&self, x: &TchTensor) -> TchTensor {
        TchTensor(x.0.sigmoid())
    }

    fn instance_norm(&self, x: &TchTensor, _channels: usize, eps: f64) -> TchTensor {
        TchTensor(x.0.instance_norm(
            None::<&Tensor>,
            None::<&Tensor>,
            None::<&Tensor>,
            None::<&Tensor>,
            true,
            0.0,
            eps,
            true,
        ))
    }

    fn softmax_last(&self, x: &TchTensor) -> TchTensor {
        TchTensor(x.0.softmax(-1, x.0.kind()))
    }

    fn sin(&self, x: &TchTensor) -> TchTensor {
        TchTensor(x.0.sin())
    }

    fn cos(&self, x: &TchTensor) -> TchTensor {
        TchTensor(x.0.cos())
    }

    fn matmul(&self, a: &TchTensor, b: &TchTensor) -> TchTensor {
        TchTensor(a.0.matmul(&b.0))
    }

    fn add(&self, a: &TchTensor, b: &TchTensor) -> TchTensor {
        TchTensor(&a.0 + &b.0)
    }

    fn sub(&self, a: &TchTensor, b: &TchTensor) -> TchTensor {
        TchTensor(&a.0 - &b.0)
    }

    fn mul(&self, a: &TchTensor, b: &TchTensor) -> TchTensor {
        TchTensor(&a.0 * &b.0)
    }

    fn scale(&self, x: &TchTensor, factor: f64) -> TchTensor {
        TchTensor(&x.0 * factor)
    }

    fn add_scalar(&self, x: &TchTensor, value: f64) -> TchTensor {
        TchTensor(&x.0 + value)
    }

    fn equal_scalar(&self, x: &TchTensor, value: f64) -> TchTensor {
        TchTensor(x.0.eq(value).to_kind(x.0.kind()))
    }

    fn reshape(&self, x: &TchTensor, shape: &[i64]) -> TchTensor {
        let size = x.0.size();
        let resolved: Vec<i64> = shape
            .iter()
            .enumerate()
            .map(|(i, &d)| if d == 0 { size[i] } else { d })
            .collect();
        TchTensor(x.0.reshape(&resolved))
    }

    fn permute(&self, x: &TchTensor, perm: &[usize]) -> TchTensor {
        let perm: Vec<i64> = perm.iter().map(|&p| p as i64).collect();
        TchTensor(x.0.permute(&perm))
    }

    fn slice(&self, x: &TchTensor, axis: usize, start: usize, end: usize) -> TchTensor {
        TchTensor(x.0.narrow(axis as i64, start as i64, (end - start) as i64))
    }

    fn pad_end(&self, x: &TchTensor, pads: &[(usize, usize)]) -> TchTensor {
        let rank = x.0.dim();
        // constant_pad_nd lists (before, after) pairs from the last axis backwards.
        let mut spec = vec![0i64; 2 * rank];
        for &(axis, amount) in pads {
            spec[2 * (rank - 1 - axis) + 1] = amount as i64;
        }
        TchTensor(x.0.constant_pad_nd(&spec))
    }

    fn concat(&self, xs: &[&TchTensor], axis: usize) -> TchTensor {
        let tensors: Vec<&Tensor> = xs.iter().map(|t| &t.0).collect();
        TchTensor(Tensor::cat(&tensors, axis as i64))
    }

    fn gather_rows(&self, table: &TchTensor, indices: &[i64], index_shape: &[usize]) -> TchTensor {
        let index = Tensor::from_slice(indices).to_device(self.device);
        let cols = table.0.size()[1];
        let mut shape: Vec<i64> = index_shape.iter().map(|&d| d as i64).collect();
        shape.push(cols);
        TchTensor(table.0.index_select(0, &index).reshape(&shape))
    }

    fn expand_batch_like(&self, x: &TchTensor, like: &TchTensor) -> TchTensor {
        let mut size = x.0.size();
        size[0] = like.0.size()[0];
        TchTensor(x.0.expand(&size, false))
    }

    fn resize_bilinear(&self, x: &TchTensor, h: usize, w: usize) -> TchTensor {
        TchTensor(x.0.upsample_bilinear2d([h as i64, w as i64], false, None, None))
    }
}

/// Kind of the computation for a dtype name (`f32` or `bf16`).
pub fn kind_from_name(name: &str) -> Option<Kind> {
    match name {
        "f32" | "float32" => Some(Kind::Float),
        "bf16" | "bfloat16" => Some(Kind::BFloat16),
        _ => None,
    }
}
