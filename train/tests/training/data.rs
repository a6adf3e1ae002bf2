//! Training data from real images: MNI152 T1 with its tissue labels, axial slices at the tiny model's input
//! size, objects per label value, one trainer step on a batch of them; the shared 2D slices and their masks as
//! a folder pair and as an SA-Med2D index.

use std::path::PathBuf;

use medico_models::objects::components;
use medico_models::{load_checkpoint, Sam, SamConfig};
use medico_train::data::{
    folder_samples, make_batch, sa_med2d_samples, slice_samples, ImageFolderSource, LabelGroup, ObjectRule,
    SaMed2dSource, VolumeSource,
};
use medico_train::objective::{Objective, ObjectiveConfig};
use medico_train::trainer::{OptimizerConfig, Trainer};
use tch::Device;

fn shared() -> PathBuf {
    std::env::var_os("MEDICO_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

/// The MNI152 T1 with its tissue labels, axial, every `slice_step`-th slice.
pub fn mni_tissue_axial(slice_step: usize) -> VolumeSource {
    let data = shared().join("data/volumes");
    VolumeSource {
        image: data.join("mni152_t1.nii.gz"),
        labels: data.join("mni152_tissue_labels.nii.gz"),
        axis: 2,
        values: None,
        exclude: Vec::new(),
        slice_step,
        groups: None,
        objects: ObjectRule::Labels,
        propagation: false,
        mask_prompts: false,
    }
}

#[test]
fn mni_slices_become_batches_the_trainer_steps_on() {
    let reference = shared().join("reference/tiny");
    let config = SamConfig::from_json_file(&reference.join("config.json")).unwrap();
    let samples = slice_samples(&mni_tissue_axial(1), &config, 20).unwrap();
    let side = config.img_size;
    // Tissue labels cover axial slices 2..=151 (cases.json); slices with objects of >= 20 px at 256² are kept.
    assert!(samples.len() > 100 && samples.len() <= 189, "{}", samples.len());
    for s in &samples {
        assert_eq!(s.input.len(), 3 * side * side);
        assert!((1..=2).contains(&s.objects.len()));
        assert!(s
            .objects
            .iter()
            .all(|m| m.len() == side * side && m.iter().filter(|&&b| b).count() >= 20));
    }
    // The padded area (233 x 197 -> 256 x 217) holds no object pixels.
    let last_column_used = samples
        .iter()
        .flat_map(|s| s.objects.iter())
        .flat_map(|m| m.iter().enumerate().filter(|(_, &b)| b).map(|(i, _)| i % side))
        .max()
        .unwrap();
    assert!(last_column_used < 217, "{last_column_used}");

    let middle = samples.len() / 2;
    let batch = make_batch(&[&samples[middle], &samples[middle + 5]], &[4, 5], side, 1);
    assert_eq!(batch.objects.len(), 2);
    let sam = Sam::new(config);
    let state = load_checkpoint(&reference.join("weights.safetensors")).unwrap();
    let objective = ObjectiveConfig {
        objective: Objective::MedicoSam,
        rounds: 2,
        mask_prob: 0.5,
        bce_weight: 0.0,
        iou_weight: 1.0,
        point_start: Default::default(),
        propagation_weight: 1.0,
        click_weight: 0.0,
        propagation_mask: false,
    };
    let mut trainer = Trainer::new(sam, &state, Device::Cpu, objective, OptimizerConfig::default(), 0);
    let report = trainer.step(&batch);
    assert!(report.loss.is_finite() && report.loss > 0.0);
}

/// Pixels set in a mask.
fn area(mask: &[bool]) -> usize {
    mask.iter().filter(|&&b| b).count()
}

#[test]
fn components_split_each_label_into_its_connected_pieces() {
    let reference = shared().join("reference/tiny");
    let config = SamConfig::from_json_file(&reference.join("config.json")).unwrap();
    let side = (config.img_size, config.img_size);
    let whole = slice_samples(&mni_tissue_axial(10), &config, 20).unwrap();
    let pieces = slice_samples(
        &VolumeSource {
            objects: ObjectRule::Components,
            ..mni_tissue_axial(10)
        },
        &config,
        20,
    )
    .unwrap();
    let (whole_count, piece_count): (usize, usize) = (
        whole.iter().map(|s| s.objects.len()).sum(),
        pieces.iter().map(|s| s.objects.len()).sum(),
    );
    // Grey matter is a ribbon of many pieces on an axial slice: far more objects, each one piece.
    assert!(
        piece_count > 3 * whole_count,
        "{piece_count} pieces, {whole_count} labels"
    );
    for sample in &pieces {
        let whole_sample = whole.iter().find(|w| w.id == sample.id).expect("same slices");
        for object in &sample.objects {
            assert!(area(object) >= 20);
            assert_eq!(components(object, side, 1).len(), 1, "one connected piece");
            // Every piece lies inside one of the slice's label masks.
            assert!(whole_sample
                .objects
                .iter()
                .any(|label| object.iter().zip(label).all(|(&o, &l)| !o || l)));
        }
    }
}

#[test]
fn label_groups_are_one_object_each() {
    let reference = shared().join("reference/tiny");
    let config = SamConfig::from_json_file(&reference.join("config.json")).unwrap();
    let data = shared().join("data/volumes");
    let group = |text: &str| LabelGroup::try_from(text.to_string()).unwrap();
    let source = VolumeSource {
        image: data.join("inia19_t1_brain.nii.gz"),
        labels: data.join("inia19_neuromaps_labels.nii.gz"),
        axis: 2,
        values: None,
        exclude: Vec::new(),
        slice_step: 16,
        groups: Some(vec![group("1-999"), group("1000-1999"), group("1-1999")]),
        objects: ObjectRule::Labels,
        propagation: false,
        mask_prompts: false,
    };
    let samples = slice_samples(&source, &config, 20).unwrap();
    let three: Vec<_> = samples.iter().filter(|s| s.objects.len() == 3).collect();
    assert!(three.len() >= 4, "{} slices with both hemispheres", three.len());
    for sample in three {
        let [left, right, brain] = [&sample.objects[0], &sample.objects[1], &sample.objects[2]];
        // The brain is the union of the hemispheres, which do not overlap.
        assert_eq!(area(brain), area(left) + area(right));
        assert!(brain
            .iter()
            .zip(left.iter().zip(right))
            .all(|(&b, (&l, &r))| b == (l || r)));
    }
}

#[test]
fn mismatched_grids_are_refused_with_the_file_named() {
    let reference = shared().join("reference/tiny");
    let config = SamConfig::from_json_file(&reference.join("config.json")).unwrap();
    let source = VolumeSource {
        image: shared().join("data/volumes/mni152_t1.nii.gz"),
        labels: shared().join("data/volumes/inia19_neuromaps_labels.nii.gz"),
        axis: 2,
        values: None,
        exclude: Vec::new(),
        slice_step: 1,
        groups: None,
        objects: ObjectRule::Labels,
        propagation: false,
        mask_prompts: false,
    };
    let err = slice_samples(&source, &config, 20).err().unwrap().to_string();
    assert!(
        err.contains("inia19_neuromaps_labels.nii.gz") && err.contains("differs"),
        "{err}"
    );
}

/// The shared 2D cases whose mask belongs to the image: (image, mask) file names.
fn cases_2d() -> Vec<(String, String)> {
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(shared().join("data/cases.json")).unwrap()).unwrap();
    cases["cases_2d"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["image"].as_str().unwrap().to_string(),
                c["mask"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn tiny_config() -> SamConfig {
    SamConfig::from_json_file(&shared().join("reference/tiny/config.json")).unwrap()
}

#[test]
fn folders_of_images_and_label_maps_become_samples() {
    let dir = tempfile::tempdir().unwrap();
    let (images, labels) = (dir.path().join("images"), dir.path().join("labels"));
    std::fs::create_dir_all(&images).unwrap();
    std::fs::create_dir_all(&labels).unwrap();
    let data = shared().join("data");
    let cases = cases_2d();
    for (i, (image, mask)) in cases.iter().enumerate() {
        let name = format!("case{i}.png");
        std::fs::copy(data.join(image), images.join(&name)).unwrap();
        std::fs::copy(data.join(mask), labels.join(&name)).unwrap();
    }
    let config = tiny_config();
    let samples = folder_samples(
        &ImageFolderSource {
            images: images.clone(),
            labels: labels.clone(),
        },
        &config,
        20,
    )
    .unwrap();
    assert_eq!(
        samples.len(),
        cases.len(),
        "every case has one object of >= 20 px at 256²"
    );
    let side = config.img_size;
    for s in &samples {
        assert_eq!(s.input.len(), 3 * side * side);
        assert_eq!(s.objects.len(), 1, "a binary mask is one object");
    }
    // The brain mask of the axial MNI slice (case 0, 20297 px at 197x233) scales by (256/233)^2.
    let brain = samples[0].objects[0].iter().filter(|&&m| m).count() as f64;
    let expected = 20297.0 * (256.0f64 / 233.0).powi(2);
    assert!((brain / expected - 1.0).abs() < 0.03, "{brain} vs {expected}");

    // A missing label map is refused, naming it.
    std::fs::remove_file(labels.join("case3.png")).unwrap();
    let err = folder_samples(&ImageFolderSource { images, labels }, &config, 20)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("case3.png") && err.contains("no label map"), "{err}");
}

#[test]
fn an_sa_med2d_index_maps_images_to_their_masks() {
    let dir = tempfile::tempdir().unwrap();
    let data = shared().join("data");
    let mut index = serde_json::Map::new();
    // Every case's image with its mask; the first image lists its mask twice (two objects).
    let cases = cases_2d();
    for (i, (image, mask)) in cases.iter().enumerate() {
        let entry = index.entry(image.clone()).or_insert_with(|| serde_json::json!([]));
        let copies = if i == 0 { 2 } else { 1 };
        for _ in 0..copies {
            entry
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!(format!("../data/{mask}")));
        }
    }
    let index: serde_json::Map<String, serde_json::Value> =
        index.into_iter().map(|(k, v)| (format!("../data/{k}"), v)).collect();
    let index_path = dir.path().join("index").join("SAMed2D.json");
    std::fs::create_dir_all(index_path.parent().unwrap()).unwrap();
    std::fs::write(&index_path, serde_json::to_string(&index).unwrap()).unwrap();
    // Paths are relative to the index's folder: link the shared data beside it.
    std::os::unix::fs::symlink(&data, dir.path().join("data")).unwrap();
    let config = tiny_config();
    let samples = sa_med2d_samples(
        &SaMed2dSource {
            index: index_path.clone(),
        },
        &config,
        20,
    )
    .unwrap();
    assert_eq!(samples.len(), index.len());
    let objects: usize = samples.iter().map(|s| s.objects.len()).sum();
    assert_eq!(objects, cases.len() + 1, "one object per listed mask");
    assert_eq!(samples.iter().map(|s| s.objects.len()).max(), Some(2));

    std::fs::write(&index_path, "[1, 2]").unwrap();
    let err = sa_med2d_samples(&SaMed2dSource { index: index_path }, &config, 20)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("SAMed2D.json") && err.contains("index"), "{err}");
}

#[test]
fn propagation_objects_are_derived_from_the_neighbours_and_empty_past_the_object() {
    let reference = shared().join("reference/tiny");
    let config = SamConfig::from_json_file(&reference.join("config.json")).unwrap();
    let side = config.img_size;
    // The brain mask (value 1) spans axial slices 0..=154 of 189: slice 155 lies past its end.
    let source = VolumeSource {
        labels: shared().join("data/volumes/mni152_brain_mask.nii.gz"),
        propagation: true,
        mask_prompts: true,
        ..mni_tissue_axial(1)
    };
    let samples = slice_samples(&source, &config, 20).unwrap();
    let past_end = samples
        .iter()
        .find(|s| s.id.slice == 155)
        .expect("slice 155 is kept for its derived object");
    assert!(past_end.objects.is_empty(), "no brain on slice 155");
    assert_eq!(past_end.derived.len(), 1);
    assert!(
        past_end.derived[0].target.iter().all(|&t| !t),
        "past the end the target is empty"
    );
    // The neighbour's mask is the mask prompt, at the model's low resolution: the brain's last slice, small,
    // and nothing in the padding of the 197 x 233 slice's right-hand columns.
    let low = config.low_res_size();
    let prompt_mask = &past_end.derived[0].prompt_mask;
    assert_eq!(prompt_mask.len(), low * low);
    let inside_prompt = prompt_mask.iter().filter(|&&s| s > 0).count();
    assert!(inside_prompt > 0 && inside_prompt < low * low / 50, "{inside_prompt}");
    assert_eq!(prompt_mask[low - 1], 0, "padding");
    let inside = samples.iter().find(|s| s.id.slice == 90).unwrap();
    // Both neighbours hold the brain: one derived object from each, within the brain's slice.
    assert_eq!(inside.derived.len(), 2);
    for derived in &inside.derived {
        let target = &derived.target;
        assert_eq!(target, &inside.objects[0]);
        let b = derived.prompt;
        // The box is the neighbour's box plus 3 pixels of the 197 x 233 slice, mapped to the model's input:
        // it holds the object's pixels of this slice but a few.
        let inside_box = (0..side * side)
            .filter(|&i| target[i])
            .filter(|&i| {
                let (x, y) = ((i % side) as f64, (i / side) as f64);
                x >= b.x0 - 1.0 && x <= b.x1 + 1.0 && y >= b.y0 - 1.0 && y <= b.y1 + 1.0
            })
            .count();
        let total = target.iter().filter(|&&t| t).count();
        assert!(inside_box as f64 > 0.98 * total as f64, "{inside_box} of {total}");
        assert!(b.x1 < side as f64 && b.y1 < side as f64 && b.x0 >= 0.0 && b.y0 >= 0.0);
    }
    // Without mask prompts the derived objects carry none.
    let box_only = slice_samples(
        &VolumeSource {
            mask_prompts: false,
            ..source.clone()
        },
        &config,
        20,
    )
    .unwrap();
    let box_only_end = box_only.iter().find(|s| s.id.slice == 155).unwrap();
    assert!(box_only_end.derived[0].prompt_mask.is_empty());
    assert_eq!(box_only_end.derived[0].prompt, past_end.derived[0].prompt);
    // Without propagation the same volume yields no derived object and drops the empty slices.
    let plain = slice_samples(
        &VolumeSource {
            propagation: false,
            ..source
        },
        &config,
        20,
    )
    .unwrap();
    assert!(plain.iter().all(|s| s.derived.is_empty()) && !plain.iter().any(|s| s.id.slice == 155));
}

/// A label group propagates as one object: the whole brain of grey and white matter, not each tissue.
#[test]
fn propagation_objects_follow_label_groups() {
    let reference = shared().join("reference/tiny");
    let config = SamConfig::from_json_file(&reference.join("config.json")).unwrap();
    let group = |text: &str| LabelGroup::try_from(text.to_string()).unwrap();
    let source = VolumeSource {
        groups: Some(vec![group("1-2")]),
        propagation: true,
        ..mni_tissue_axial(45)
    };
    let samples = slice_samples(&source, &config, 20).unwrap();
    let inside = samples.iter().find(|s| s.id.slice == 90).unwrap();
    assert_eq!(inside.objects.len(), 1, "one group object");
    assert_eq!(inside.derived.len(), 2, "one from each neighbour, for the group");
    for derived in &inside.derived {
        assert_eq!(derived.target, inside.objects[0]);
    }
    // Excluded values are left out of the group's propagation target as of its object.
    let without_wm = slice_samples(
        &VolumeSource {
            exclude: vec![2],
            ..source
        },
        &config,
        20,
    )
    .unwrap();
    let inside = without_wm.iter().find(|s| s.id.slice == 90).unwrap();
    assert!(inside.derived.iter().all(|d| d.target == inside.objects[0]));
}

/// An RT Structure Set as training labels: the TotalSegmentator liver and spleen of the 20-slice CT series,
/// written as contours, give the same training objects as the label map they were drawn from.
#[test]
fn a_structure_set_gives_the_objects_of_the_label_map_it_holds() {
    use medico_io::rtstruct::{write_rtstruct, Generation, RoiMask};
    let series = shared().join("data/body/totalseg/ct_abdomen_dicom");
    let label_map = shared().join("data/body/totalseg/ct_abdomen_dicom_seg.nii.gz");
    let volume = medico_io::dicom_io::read_dicom(&series).unwrap();
    let source = medico_io::dicom_seg::SourceSeries::read(&series).unwrap();
    let labels = medico_io::label_source::read_labels_for(&label_map, &volume, &series).unwrap();
    let organ = |value: f32| labels.data.mapv(|v| u8::from(v == value));
    let (liver, spleen) = (organ(5.0), organ(1.0));
    let dir = tempfile::tempdir().unwrap();
    let contours = dir.path().join("organs.dcm");
    let rois = [
        RoiMask {
            name: "liver".into(),
            color: [200, 100, 50],
            mask: &liver,
        },
        RoiMask {
            name: "spleen".into(),
            color: [50, 100, 200],
            mask: &spleen,
        },
    ];
    let generation = Generation {
        algorithm_name: "medico test".into(),
    };
    write_rtstruct(&contours, &volume, &source, &rois, &generation).unwrap();
    let config = SamConfig::from_json_file(&shared().join("reference/tiny/config.json")).unwrap();
    let from = |labels: PathBuf, values: Vec<i64>| VolumeSource {
        image: series.clone(),
        labels,
        axis: 2,
        values: Some(values),
        exclude: Vec::new(),
        slice_step: 4,
        groups: None,
        objects: ObjectRule::Labels,
        propagation: false,
        mask_prompts: false,
    };
    // ROI numbers 1 (liver) and 2 (spleen) in the structure set; TotalSegmentator's 5 and 1 in the map.
    let by_contours = slice_samples(&from(contours, vec![1, 2]), &config, 20).unwrap();
    let by_map = slice_samples(&from(label_map, vec![5, 1]), &config, 20).unwrap();
    assert!(!by_map.is_empty());
    assert_eq!(by_contours.len(), by_map.len());
    for (a, b) in by_contours.iter().zip(&by_map) {
        let pixels = |s: &medico_train::data::SliceSample| {
            let mut areas: Vec<usize> = s.objects.iter().map(|m| m.iter().filter(|&&v| v).count()).collect();
            areas.sort();
            areas
        };
        assert_eq!(pixels(a), pixels(b));
    }
}
