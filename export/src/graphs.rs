//! The exported graphs: `encoder.onnx` and the decoder variants, each recorded from the one SAM
//! definition through [`OnnxBackend`].

use crate::pb;
use medico_models::prepared_decoder::PreparedImage;
use medico_models::prompt_encoder::DensePrompt;
use medico_models::sam::PromptTensors;
use medico_models::{Backend, Sam, StateDict, UnetrDecoder};

use crate::onnx_backend::{resize_linear, Attr, OnnxBackend, OnnxTensor};

/// ONNX opset of every exported graph.
pub const OPSET: i64 = 17;
/// ONNX IR version matching [`OPSET`].
pub const IR_VERSION: i64 = 8;

/// Which decoder graph to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecoderVariant {
    /// The official `SamOnnxModel` interface: all mask tokens, in-graph post-processing to `orig_im_size`.
    Official,
    /// As `Official` with `return_single_mask=True`: the official selection rule picks one mask.
    OfficialSingle,
    /// No `orig_im_size` input and no post-processing: `iou_predictions` and `low_res_masks` of all
    /// mask tokens (for runtimes that cannot resize by a runtime value, such as tract).
    LowRes,
}

impl DecoderVariant {
    /// File name inside a bundle.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Official => "decoder.onnx",
            Self::OfficialSingle => "decoder_single.onnx",
            Self::LowRes => "decoder_lowres.onnx",
        }
    }
}

/// A dimension of a graph input or output.
enum Dim {
    Fixed(usize),
    Named(&'static str),
}

fn value_info(name: &str, dims: &[Dim]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Fixed(n) => Value::DimValue(*n as i64),
                Dim::Named(s) => Value::DimParam(s.to_string()),
            }),
            ..Default::default()
        })
        .collect();
    pb::ValueInfoProto {
        name: name.to_string(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Float as i32,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn model(
    name: &str,
    b: OnnxBackend<'_>,
    inputs: Vec<pb::ValueInfoProto>,
    outputs: Vec<pb::ValueInfoProto>,
) -> pb::ModelProto {
    let (node, initializer) = b.finish();
    model_of(pb::GraphProto {
        name: name.to_string(),
        node,
        initializer,
        input: inputs,
        output: outputs,
        ..Default::default()
    })
}

/// A model of `graph` at medico's opset and IR version.
fn model_of(graph: pb::GraphProto) -> pb::ModelProto {
    pb::ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "medico".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        ..Default::default()
    }
}

fn input(name: &str, rank: usize) -> OnnxTensor {
    OnnxTensor {
        name: name.to_string(),
        rank,
    }
}

/// `encoder.onnx`: `images` `[B, 3, S, S]` (normalized, padded) → `image_embeddings` `[B, C, E, E]`.
pub fn encoder_model(sam: &Sam, state: &StateDict) -> pb::ModelProto {
    let c = &sam.config;
    let b = OnnxBackend::new(state);
    let embeddings = sam.encode_image(&b, &input("images", 4));
    b.output_as(&embeddings, "image_embeddings");
    let s = c.img_size;
    let e = c.embedding_size();
    model(
        "medico_sam_encoder",
        b,
        vec![value_info(
            "images",
            &[
                Dim::Named("batch"),
                Dim::Fixed(c.in_chans),
                Dim::Fixed(s),
                Dim::Fixed(s),
            ],
        )],
        vec![value_info(
            "image_embeddings",
            &[
                Dim::Named("batch"),
                Dim::Fixed(c.prompt_embed_dim),
                Dim::Fixed(e),
                Dim::Fixed(e),
            ],
        )],
    )
}

/// `segmentation_decoder.onnx`: `image_embeddings` `[B, E, g, g]` → `probabilities` `[B, classes, S, S]`,
/// the UNETR decoder's class probabilities (after its Sigmoid) resized to the encoder's input side `S`
/// (`image_size`); the runtime crops them to the resized image and resizes them to the original size.
pub fn segmentation_decoder_model(
    decoder: &UnetrDecoder,
    state: &StateDict,
    grid: usize,
    image_size: usize,
) -> pb::ModelProto {
    let b = OnnxBackend::new(state);
    let probabilities = decoder.forward_at_input_size(&b, &input("image_embeddings", 4), grid, image_size);
    b.output_as(&probabilities, "probabilities");
    let c = &decoder.config;
    model(
        "medico_unetr_decoder",
        b,
        vec![value_info(
            "image_embeddings",
            &[
                Dim::Named("batch"),
                Dim::Fixed(c.embed_dim),
                Dim::Fixed(grid),
                Dim::Fixed(grid),
            ],
        )],
        vec![value_info(
            "probabilities",
            &[
                Dim::Named("batch"),
                Dim::Fixed(c.out_channels),
                Dim::Fixed(image_size),
                Dim::Fixed(image_size),
            ],
        )],
    )
}

/// A decoder graph with the official `SamOnnxModel` inputs (see [`DecoderVariant`]).
pub fn decoder_model(sam: &Sam, state: &StateDict, variant: DecoderVariant) -> pb::ModelProto {
    let c = &sam.config;
    let b = OnnxBackend::new(state);
    let embeddings = input("image_embeddings", 4);
    let coords = input("point_coords", 3);
    let labels = input("point_labels", 2);
    let mask_input = input("mask_input", 4);
    let has_mask = input("has_mask_input", 1);
    let decoded = sam.decode(
        &b,
        &embeddings,
        PromptTensors {
            sparse: Some((&coords, &labels)),
            dense: DensePrompt::Blend {
                mask: &mask_input,
                has_mask: &has_mask,
            },
        },
    );
    let (masks, scores) = match variant {
        DecoderVariant::OfficialSingle => {
            select_single_mask(&b, sam, &decoded.masks, &decoded.iou_predictions, &coords)
        }
        _ => (decoded.masks, decoded.iou_predictions),
    };
    let e = c.embedding_size();
    let low = c.low_res_size();
    let m = match variant {
        DecoderVariant::OfficialSingle => 1,
        _ => c.num_mask_tokens(),
    };
    let mut inputs = vec![
        value_info(
            "image_embeddings",
            &[
                Dim::Fixed(1),
                Dim::Fixed(c.prompt_embed_dim),
                Dim::Fixed(e),
                Dim::Fixed(e),
            ],
        ),
        value_info(
            "point_coords",
            &[Dim::Fixed(1), Dim::Named("num_points"), Dim::Fixed(2)],
        ),
        value_info("point_labels", &[Dim::Fixed(1), Dim::Named("num_points")]),
        value_info(
            "mask_input",
            &[Dim::Fixed(1), Dim::Fixed(1), Dim::Fixed(low), Dim::Fixed(low)],
        ),
        value_info("has_mask_input", &[Dim::Fixed(1)]),
    ];
    let mut outputs = Vec::new();
    if variant != DecoderVariant::LowRes {
        inputs.push(value_info("orig_im_size", &[Dim::Fixed(2)]));
        let upscaled = postprocess_to_original(&b, sam, &masks, &input("orig_im_size", 1));
        b.output_as(&upscaled, "masks");
        outputs.push(value_info(
            "masks",
            &[Dim::Fixed(1), Dim::Fixed(m), Dim::Named("height"), Dim::Named("width")],
        ));
    }
    b.output_as(&scores, "iou_predictions");
    b.output_as(&masks, "low_res_masks");
    outputs.push(value_info("iou_predictions", &[Dim::Fixed(1), Dim::Fixed(m)]));
    outputs.push(value_info(
        "low_res_masks",
        &[Dim::Fixed(1), Dim::Fixed(m), Dim::Fixed(low), Dim::Fixed(low)],
    ));
    model("medico_sam_decoder", b, inputs, outputs)
}

/// The shapes of the prepared-image tensors ([`PreparedImage::NAMES`]) for `sam`.
fn prepared_value_infos(sam: &Sam) -> Vec<pb::ValueInfoProto> {
    let c = &sam.config;
    let tokens = c.embedding_size() * c.embedding_size();
    let heads = c.decoder_num_heads;
    let head_dim = c.prompt_embed_dim / c.decoder_attention_downsample_rate / heads;
    let shapes = [
        [1, tokens, c.prompt_embed_dim, 0],
        [1, heads, head_dim, tokens],
        [1, heads, tokens, head_dim],
        [1, heads, head_dim, tokens],
    ];
    PreparedImage::NAMES
        .iter()
        .zip(shapes)
        .map(|(name, shape)| {
            let rank = if shape[3] == 0 { 3 } else { 4 };
            let dims: Vec<Dim> = shape[..rank].iter().map(|&d| Dim::Fixed(d)).collect();
            value_info(name, &dims)
        })
        .collect()
}

/// `decoder_prepare.onnx`: `image_embeddings` `[1, C, E, E]` → the decoder's image-only tensors
/// ([`PreparedImage`]), computed once per image.
pub fn decoder_prepare_model(sam: &Sam, state: &StateDict) -> pb::ModelProto {
    let c = &sam.config;
    let b = OnnxBackend::new(state);
    let prepared = sam.prepare_image(&b, &input("image_embeddings", 4));
    for (tensor, name) in prepared.tensors().into_iter().zip(PreparedImage::NAMES) {
        b.output_as(tensor, name);
    }
    let e = c.embedding_size();
    model(
        "medico_sam_decoder_prepare",
        b,
        vec![value_info(
            "image_embeddings",
            &[
                Dim::Fixed(1),
                Dim::Fixed(c.prompt_embed_dim),
                Dim::Fixed(e),
                Dim::Fixed(e),
            ],
        )],
        prepared_value_infos(sam),
    )
}

/// `decoder_prompt.onnx`: the prepared image and points → `iou_predictions` and `low_res_masks` of all
/// mask tokens, as [`DecoderVariant::LowRes`] without a mask prompt.
pub fn decoder_prompt_model(sam: &Sam, state: &StateDict) -> pb::ModelProto {
    let c = &sam.config;
    let b = OnnxBackend::new(state);
    let [image_tokens, layer0_keys, layer0_values, layer0_queries] =
        [(0, 3), (1, 4), (2, 4), (3, 4)].map(|(i, rank)| input(PreparedImage::NAMES[i], rank));
    let prepared = PreparedImage {
        image_tokens,
        layer0_keys,
        layer0_values,
        layer0_queries,
    };
    let decoded = sam.decode_prepared(&b, &prepared, &input("point_coords", 3), &input("point_labels", 2));
    b.output_as(&decoded.iou_predictions, "iou_predictions");
    b.output_as(&decoded.masks, "low_res_masks");
    let (m, low) = (c.num_mask_tokens(), c.low_res_size());
    let mut inputs = prepared_value_infos(sam);
    inputs.push(value_info(
        "point_coords",
        &[Dim::Fixed(1), Dim::Named("num_points"), Dim::Fixed(2)],
    ));
    inputs.push(value_info("point_labels", &[Dim::Fixed(1), Dim::Named("num_points")]));
    model(
        "medico_sam_decoder_prompt",
        b,
        inputs,
        vec![
            value_info("iou_predictions", &[Dim::Fixed(1), Dim::Fixed(m)]),
            value_info(
                "low_res_masks",
                &[Dim::Fixed(1), Dim::Fixed(m), Dim::Fixed(low), Dim::Fixed(low)],
            ),
        ],
    )
}

/// Official `select_masks`: `argmax(iou + (N - 2.5) * [1000, 0, ...])` over the mask tokens, where `N`
/// counts every input point (padding and box corners included); returns the chosen mask and score.
fn select_single_mask(
    b: &OnnxBackend<'_>,
    sam: &Sam,
    masks: &OnnxTensor,
    iou: &OnnxTensor,
    coords: &OnnxTensor,
) -> (OnnxTensor, OnnxTensor) {
    let count = b.shape_slice(coords, 1, 2);
    let count = b.node("Cast", &[&count.name], vec![("to", Attr::Int(1))], 1);
    let mut reweight = vec![0.0f32; sam.config.num_mask_tokens()];
    reweight[0] = 1000.0;
    let reweight = b.constant(&reweight, &[1, reweight.len()]);
    let score = b.add(iou, &b.mul(&b.add_scalar(&count, -2.5), &reweight));
    let best = b.node(
        "ArgMax",
        &[&score.name],
        vec![("axis", Attr::Int(1)), ("keepdims", Attr::Int(0))],
        1,
    );
    let pick = |x: &OnnxTensor| b.node("Gather", &[&x.name, &best.name], vec![("axis", Attr::Int(1))], x.rank);
    (pick(masks), pick(iou))
}

/// The official in-graph post-processing: low-res logits → `S x S` → crop to the resized image size
/// `floor(orig * S / max(orig) + 0.5)` → bilinear resize to `orig_im_size`.
fn postprocess_to_original(
    b: &OnnxBackend<'_>,
    sam: &Sam,
    masks: &OnnxTensor,
    orig_im_size: &OnnxTensor,
) -> OnnxTensor {
    let s = sam.config.img_size;
    let full = b.resize_bilinear(masks, s, s);
    let longest = b.node("ReduceMax", &[&orig_im_size.name], vec![("keepdims", Attr::Int(1))], 1);
    let side = b.const_scalar(s as f32);
    let scale = b.node("Div", &[&side, &longest.name], vec![], 1);
    let scaled = b.mul(&scale, orig_im_size);
    let rounded = b.node("Floor", &[&b.add_scalar(&scaled, 0.5).name], vec![], 1);
    let prepadded = b.node("Cast", &[&rounded.name], vec![("to", Attr::Int(7))], 1);
    let starts = b.const_i64(&[0, 0], &[2]);
    let axes = b.const_i64(&[2, 3], &[2]);
    let cropped = b.node("Slice", &[&full.name, &starts, &prepadded.name, &axes], vec![], 4);
    let leading = b.shape_slice(&cropped, 0, 2);
    let original = b.node("Cast", &[&orig_im_size.name], vec![("to", Attr::Int(7))], 1);
    let sizes = b.node(
        "Concat",
        &[&leading.name, &original.name],
        vec![("axis", Attr::Int(0))],
        1,
    );
    resize_linear(b, &cropped, &sizes)
}

/// A one-node graph `product = a · b` of two `n x n` inputs: the matrix-product probe `bench` measures an
/// engine's achievable f32 throughput with.
pub fn matmul_model(n: usize) -> pb::ModelProto {
    let node = pb::NodeProto {
        name: "MatMul_probe".into(),
        op_type: "MatMul".into(),
        input: vec!["a".into(), "b".into()],
        output: vec!["product".into()],
        ..Default::default()
    };
    let square = [Dim::Fixed(n), Dim::Fixed(n)];
    model_of(pb::GraphProto {
        name: "medico_matmul_probe".into(),
        node: vec![node],
        input: vec![value_info("a", &square), value_info("b", &square)],
        output: vec![value_info("product", &square)],
        ..Default::default()
    })
}
