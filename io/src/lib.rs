//! Medical images in and out, below both inference and training: NIfTI-1/2, NRRD and DICOM volumes with their
//! patient-space geometry (the DICOM length and RLE guards before any decoding), PNG/TIFF images,
//! intensity windows, the encoder input a bundle declares (resize and normalization), prompts files, the
//! on-disk cache of slice embeddings, and outputs written atomically. Data flows file → [`volume::Volume`] → slice → encoder input, and masks back to files.

pub mod atomic_output;
mod dicom_elements;
pub mod dicom_guard;
pub mod dicom_io;
pub mod dicom_seg;
pub mod dicom_source;
pub mod embedding_cache;
pub mod error;
pub mod image2d;
pub mod input;
pub mod intensity;
pub mod j2k_guard;
pub mod label_source;
pub mod nifti1_guard;
pub mod nifti2;
pub mod nifti_io;
pub mod nrrd_io;
pub mod preprocess;
pub mod prompts_file;
pub mod resize_area;
pub mod rle_guard;
pub mod rtstruct;
pub mod volume;

pub use error::{chain_text, IoError};
