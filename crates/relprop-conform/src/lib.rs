//! relprop-conform: the conformance suite. YAML cases (`specs/`) run on every available backend against
//! goldens from the reference implementation, with named property checks, cross-backend agreement, and a
//! self-contained HTML report.

pub mod backends;
pub mod heatmap;
pub mod report;
pub mod runner;
pub mod spec;
