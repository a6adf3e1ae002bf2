//! Volumes: prompts derived from a neighbour slice's mask, propagation through the slices (both
//! directions, typed stop reasons), sessions that hold a volume, its embeddings and its masks, and
//! semantic segmentation (a label map of a whole volume from the bundle's segmentation decoder).

pub mod mask_prompts;
pub mod propagation;
pub mod semantic;
pub mod session;
