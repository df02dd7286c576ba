//! `.npy` bytes → tensor (`relprop_core::npy::decode`); whatever decodes must survive an encode/decode round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use relprop_core::npy;

fuzz_target!(|data: &[u8]| {
    let Ok(t) = npy::decode(data, "fuzz.npy") else { return };
    assert_eq!(t.data.len(), t.shape.iter().product::<usize>());
    let again = npy::decode(&npy::encode(&t), "again.npy").expect("an encoded tensor decodes");
    assert_eq!(again.shape, t.shape);
    assert!(again.data.iter().zip(&t.data).all(|(a, b)| a.to_bits() == b.to_bits()), "round trip changes values");
});
