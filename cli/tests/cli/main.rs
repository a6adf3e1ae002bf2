//! Command-line tests, one test binary: linking each file separately cost ~0.7 GB of disk per binary in debug
//! builds and filled CI's disk.

mod common;

mod annotator_browser;
mod batch_cli;
mod bench_cli;
mod checkpoint_cli;
mod default_model_cli;
mod eval_cli;
mod export_cli;
mod propagate_cli;
mod rtstruct_cli;
mod segment_cli;
mod segment_dicom_cli;
mod segment_volume_cli;
mod semantic_cli;
mod serve_attacks;
mod serve_cli;
mod slicer_cli;
mod train_cli;
