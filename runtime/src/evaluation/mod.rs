//! Simulated interactive prompting as the MedicoSAM paper evaluates it: a box or point start, correction
//! clicks, Dice per round ([`interactive`], 2D), and a central-slice start with propagation ([`volume`], 3D).

pub mod interactive;
pub mod volume;
