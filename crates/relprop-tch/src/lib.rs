//! relprop-tch: placeholder, being implemented.
