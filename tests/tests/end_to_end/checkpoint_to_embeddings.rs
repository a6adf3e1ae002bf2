//! Official-format checkpoints, read in pure Rust, drive the SAM definition on libtorch to the official
//! implementation's image embeddings and masks: pickle files (zip, legacy, nested, DDP prefix) → state
//! dict → tch backend → encoder and decoder outputs.

use medico_models::checkpoint::{load_checkpoint, shapes};
use medico_models::prompt::{sparse_prompt, CoordinateMap, Point};
use medico_models::prompt_encoder::DensePrompt;
use medico_models::sam::PromptTensors;
use medico_models::{Sam, SamConfig};
use medico_tests::shared_dir;
use medico_train::TchBackend;
use tch::{Device, Kind, Tensor};

#[test]
fn pickled_checkpoints_reproduce_the_official_outputs() {
    let tiny = shared_dir().join("reference/tiny");
    let config = SamConfig::from_json_file(&tiny.join("config.json")).unwrap();
    let sam = Sam::new(config);
    let tensors = |file: &str| -> std::collections::HashMap<String, Tensor> {
        Tensor::read_safetensors(tiny.join(file)).unwrap().into_iter().collect()
    };
    let input = tensors("preprocess.safetensors").remove("input").unwrap();
    let reference = tensors("embeddings.safetensors").remove("image_embeddings").unwrap();
    let case = tensors("cases/points_pn_single.safetensors");
    let _guard = tch::no_grad_guard();
    for file in [
        "weights.pth",
        "weights_legacy.pth",
        "checkpoint_nested.pt",
        "weights_ddp_prefix.pth",
    ] {
        let state = load_checkpoint(&tiny.join(file)).unwrap();
        sam.param_specs().check(&shapes(&state)).unwrap();
        let b = TchBackend::from_state_dict(&state, Device::Cpu, Kind::Float);
        let embeddings = sam.encode_image(&b, &b.input(&input));
        let err = (&embeddings.0 - &reference).abs().max().double_value(&[]);
        assert!(err <= 1e-4, "{file}: embeddings max|Δ| {err:e}");

        let points = [
            Point {
                x: 135.0,
                y: 100.0,
                positive: true,
            },
            Point {
                x: 90.0,
                y: 70.0,
                positive: true,
            },
            Point {
                x: 239.0,
                y: 40.0,
                positive: false,
            },
        ];
        let (coords, labels) = sparse_prompt(&points, None, &CoordinateMap::new((200, 300), 256)).unwrap();
        let coords = b.input(&Tensor::from_slice(&coords).reshape([1, -1, 2]));
        let labels = b.input(&Tensor::from_slice(&labels).reshape([1, -1]));
        let prompts = PromptTensors {
            sparse: Some((&coords, &labels)),
            dense: DensePrompt::None,
        };
        let out = sam.select_outputs(&b, &sam.decode(&b, &embeddings, prompts), false);
        let logits = sam
            .postprocess_masks(&b, &out.masks, (171, 256), (200, 300))
            .0
            .squeeze_dim(0);
        let expected = case["masks"].to_kind(Kind::Bool);
        let differing = logits
            .gt(0.0)
            .logical_xor(&expected)
            .logical_and(&logits.abs().ge(1e-3));
        assert_eq!(
            differing.sum(Kind::Int64).int64_value(&[]),
            0,
            "{file}: binary mask differs"
        );
    }
}
