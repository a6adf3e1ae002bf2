//! Training tests, one test binary: libtorch parity, the objective and trainer, and data from real volumes.

mod data;
mod distributed;
mod finetune;
mod objective;
mod parity;
mod semantic;
