//! relprop-ort: placeholder, being implemented.
