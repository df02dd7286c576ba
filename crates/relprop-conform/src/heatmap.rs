//! Heatmap PNGs: channels summed, symmetric red-white-blue map centred at 0 (red positive, blue negative),
//! one panel per sample side by side, small inputs scaled up with nearest-neighbour.

use relprop_core::{Error, Layout, Result, Tensor};

/// Per-sample 2-D maps `(height, width, values)` from a batched relevance tensor.
pub fn maps(r: &Tensor, layout: Layout) -> Result<Vec<(usize, usize, Vec<f32>)>> {
    let per = &r.shape[1..];
    let (h, w, c, channels_last) = match (per.len(), layout) {
        (2, _) => (per[0], per[1], 1, true),
        (3, Layout::ChannelsFirst) => (per[1], per[2], per[0], false),
        (3, Layout::ChannelsLast) => (per[0], per[1], per[2], true),
        // Unknown layout: a last axis of at most 4 looks like colour channels.
        (3, Layout::Unknown) if per[2] <= 4 => (per[0], per[1], per[2], true),
        (3, Layout::Unknown) => (per[1], per[2], per[0], false),
        _ => return Err(Error::Input(format!("--heatmap needs image inputs (H, W[, C]); the input has per-sample shape {per:?}"))),
    };
    let size = h * w * c;
    Ok((0..r.shape[0])
        .map(|n| {
            let s = &r.data[n * size..(n + 1) * size];
            let mut m = vec![0f32; h * w];
            for (i, v) in s.iter().enumerate() {
                let pix = if channels_last { i / c } else { i % (h * w) };
                m[pix] += v;
            }
            (h, w, m)
        })
        .collect())
}

/// Encode the maps of `r` as one RGB PNG, each panel about 256 pixels on its longer side.
pub fn encode(r: &Tensor, layout: Layout) -> Result<Vec<u8>> {
    encode_sized(r, layout, 256)
}

/// Encode with panels of about `px` pixels on their longer side (at least the map's own size).
pub fn encode_sized(r: &Tensor, layout: Layout, px: usize) -> Result<Vec<u8>> {
    let maps = maps(r, layout)?;
    let (h, w) = (maps[0].0, maps[0].1);
    let scale = (px / h.max(w).max(1)).clamp(1, 32);
    let gap = if maps.len() > 1 { 4 } else { 0 };
    let (ph, pw) = (h * scale, w * scale);
    let width = maps.len() * pw + (maps.len() - 1) * gap;
    let mut rgb = vec![255u8; width * ph * 3];
    for (k, (_, _, m)) in maps.iter().enumerate() {
        let top = m.iter().fold(0f32, |a, v| a.max(v.abs())).max(f32::MIN_POSITIVE);
        for y in 0..ph {
            for x in 0..pw {
                let v = (m[(y / scale) * w + x / scale] / top).clamp(-1.0, 1.0);
                let fade = (255.0 * (1.0 - v.abs())).round() as u8;
                let px = if v >= 0.0 { [255, fade, fade] } else { [fade, fade, 255] };
                let o = (y * width + k * (pw + gap) + x) * 3;
                rgb[o..o + 3].copy_from_slice(&px);
            }
        }
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, width as u32, ph as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header().map_err(|e| Error::Io { path: "heatmap".into(), msg: e.to_string() })?;
        wr.write_image_data(&rgb).map_err(|e| Error::Io { path: "heatmap".into(), msg: e.to_string() })?;
    }
    Ok(out)
}
