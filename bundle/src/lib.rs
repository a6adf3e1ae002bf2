//! The medico model bundle format: a folder with exported graphs and `model.json` ([`Manifest`]), every
//! graph listed with its SHA-256 ([`checksum`]), opened only after verification ([`Bundle::open`]), and
//! written through a staging folder that is renamed into place ([`staging`]). Writers (`medico-export`)
//! and readers (`medico-runtime`) share this crate, so inference links no exporter and no download client.

pub mod cache;
pub mod checksum;
pub mod manifest;
mod open;
pub mod staging;

pub use manifest::{
    default_intensity, FileEntry, GraphRole, InteractionDefaults, Manifest, MaskDefaults, PropagationDefaults,
    Provenance, SemanticHead, SourceCheckpoint, DEFAULT_INTENSITY, FORMAT, LITE_MEDSAM_INTENSITY, MANIFEST,
    MAX_CLOSE_RADIUS,
};
pub use open::{Bundle, BundleError};
