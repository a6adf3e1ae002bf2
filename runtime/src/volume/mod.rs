//! Volumes: prompts derived from a neighbour slice's mask, propagation through the slices (both
//! directions, typed stop reasons), and sessions that hold a volume, its embeddings and its masks.

pub mod mask_prompts;
pub mod propagation;
pub mod session;
