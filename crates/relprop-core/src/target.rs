//! Neuron selection (SPEC 1.4).

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// Which output neuron(s) to explain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// signxai's `"max_activation"` (its default): every tensor the top layer's rule computes is reduced by its
    /// own maximum, per sample. For Z/epsilon with bias this is the argmax logit; for other rules the selected
    /// neuron can differ between tensors (SPEC 1.4, 10.8).
    Max,
    /// One fixed output index for every sample and every tensor.
    Index(usize),
    /// No selection: all outputs explained at once (their relevances add up).
    All,
}

impl FromStr for Target {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim() {
            "max" | "max_activation" => Ok(Target::Max),
            "all" | "None" | "none" => Ok(Target::All),
            t => t
                .parse::<usize>()
                .map(Target::Index)
                .map_err(|_| Error::Target(format!("'{t}' is not max, all or a non-negative output index"))),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Max => write!(f, "max"),
            Target::Index(k) => write!(f, "{k}"),
            Target::All => write!(f, "all"),
        }
    }
}
