//! Resource limits: how much a model file, an input file or an explanation may ask for before relprop refuses
//! it. Every loader checks declared sizes against these bounds *before* allocating anything, so a hostile or
//! simply huge file fails with a message instead of exhausting memory.
//!
//! The process-wide limits ([`Limits::global`]) start from [`Limits::default`] overridden by the environment
//! variables `RELPROP_MAX_BYTES`, `RELPROP_MAX_ACTIVATION_BYTES` and `RELPROP_MAX_NODES` (plain numbers, or with
//! a `K`/`M`/`G`/`T` suffix in powers of 1024); a front end may replace them with [`Limits::set_global`].

use std::sync::RwLock;

use crate::error::{Error, Result};

/// Bounds on what a model, an input or an explanation may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest declared data of one file: a `.npy` array (as float32), all initializers of an ONNX model
    /// together, and one sample's activations over all nodes of a model. Default 4 GiB.
    pub max_bytes: u64,
    /// Largest estimated working memory of one explanation: `N × Σ per-node elements × 4 bytes ×`
    /// [`Limits::ACTIVATION_FACTOR`] for a batch of N. Default 16 GiB.
    pub max_activation_bytes: u64,
    /// Most nodes a model may have (ONNX nodes when importing, IR nodes after). Default 100 000.
    pub max_nodes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

static GLOBAL: RwLock<Option<Limits>> = RwLock::new(None);

impl Limits {
    /// The built-in defaults.
    pub const DEFAULT: Limits = Limits { max_bytes: 4 << 30, max_activation_bytes: 16 << 30, max_nodes: 100_000 };

    /// Tensors an explanation keeps per node and sample, roughly: the forward output, the kernel layers' `W x`,
    /// the relevance and a few temporaries of the rule being applied.
    pub const ACTIVATION_FACTOR: u64 = 4;

    /// The defaults overridden by the `RELPROP_MAX_*` environment variables; a malformed value is an error
    /// naming the variable.
    pub fn from_env() -> Result<Limits> {
        let mut l = Limits::DEFAULT;
        let var = |name: &str| -> Result<Option<u64>> {
            match std::env::var(name) {
                Ok(v) => parse_size(&v).map(Some).ok_or_else(|| Error::param(name, v, "expected a size such as 8000000000, 512M or 8G")),
                Err(_) => Ok(None),
            }
        };
        if let Some(v) = var("RELPROP_MAX_BYTES")? {
            l.max_bytes = v;
        }
        if let Some(v) = var("RELPROP_MAX_ACTIVATION_BYTES")? {
            l.max_activation_bytes = v;
        }
        if let Some(v) = var("RELPROP_MAX_NODES")? {
            l.max_nodes = usize::try_from(v).unwrap_or(usize::MAX);
        }
        Ok(l)
    }

    /// The process-wide limits: those set with [`Limits::set_global`], else [`Limits::from_env`] (falling back
    /// to the defaults when a variable is malformed).
    pub fn global() -> Limits {
        if let Some(l) = *GLOBAL.read().unwrap_or_else(|e| e.into_inner()) {
            return l;
        }
        let l = Limits::from_env().unwrap_or_default();
        *GLOBAL.write().unwrap_or_else(|e| e.into_inner()) = Some(l);
        l
    }

    /// Replace the process-wide limits.
    pub fn set_global(limits: Limits) {
        *GLOBAL.write().unwrap_or_else(|e| e.into_inner()) = Some(limits);
    }

    /// `count` float32 values, checked against `max_bytes`; `what` names them in the error.
    pub fn check_f32s(&self, count: u64, what: &str) -> std::result::Result<(), String> {
        let bytes = count.checked_mul(4).ok_or_else(|| format!("{what}: {count} values overflow"))?;
        if bytes > self.max_bytes {
            return Err(format!("{what} would take {bytes} bytes, more than the limit of {} (RELPROP_MAX_BYTES)", self.max_bytes));
        }
        Ok(())
    }
}

/// "4096", "512K", "8M", "4G", "1T" (powers of 1024, optional trailing "B"/"iB").
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = s.strip_suffix("iB").or_else(|| s.strip_suffix('B')).unwrap_or(s);
    let (digits, shift) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 10),
        'M' | 'm' => (&s[..s.len() - 1], 20),
        'G' | 'g' => (&s[..s.len() - 1], 30),
        'T' | 't' => (&s[..s.len() - 1], 40),
        _ => (s, 0),
    };
    digits.trim().parse::<u64>().ok()?.checked_mul(1u64 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("8G"), Some(8 << 30));
        assert_eq!(parse_size("512 MiB"), Some(512 << 20));
        assert_eq!(parse_size("1k"), Some(1024));
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("G"), None);
        assert_eq!(parse_size("-1"), None);
        assert_eq!(parse_size("99999999999T"), None);
        assert!(Limits::DEFAULT.check_f32s(1 << 30, "x").is_ok());
        assert!(Limits::DEFAULT.check_f32s((1 << 30) + 1, "x").unwrap_err().contains("limit"));
        assert!(Limits::DEFAULT.check_f32s(u64::MAX, "x").is_err());
    }
}
