//! Semantic segmentation training (the MedicoSAM paper's UNETR recipe, micro-sam's `SemanticSamTrainer` and
//! `JointSamTrainer`): torch-em's UNETR decoder on the image encoder's embeddings, loss 0.5 Dice (softmax
//! over the Sigmoid outputs, one-hot targets) + 0.5 cross-entropy, AdamW, ReduceLROnPlateau on the
//! validation loss; the encoder frozen (embeddings computed once and cached, as for the interactive
//! objective) or finetuned, and the joint mode in which the interactive objective and the decoder loss
//! each take their own optimizer step on the shared encoder.

pub mod config;
pub mod loss;
pub mod plateau;
pub mod run;
pub mod trainer;

pub use config::SemanticRunConfig;
pub use run::{run_semantic, SemanticSummary};
pub use trainer::{SemanticBatch, SemanticTrainer};
