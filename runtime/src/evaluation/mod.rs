//! Simulated interactive prompting as the MedicoSAM paper evaluates it: a box or point start, correction
//! clicks, Dice per round ([`interactive`], 2D), and a central-slice start with propagation ([`volume`], 3D),
//! whose traced walks choose a model's stop rule ([`stop_rule_search`]).

pub mod interactive;
pub mod stop_rule_search;
pub mod volume;
