//! Max and average pooling (and their global forms), channels-first, any number of spatial axes, with the
//! routing / transpose the LRP backward pass needs. Parallel over (sample, channel) planes.
//!
//! Window conventions (ONNX / PyTorch):
//! - a window covers input positions `o·stride - pad_begin + [0, k)` per axis; positions outside the input are
//!   padding: they never win a max and add nothing to an average;
//! - average divisor: the number of in-bounds positions, or with `count_include_pad` the window's extent
//!   clipped to the padded input `[-pad_begin, len + pad_end)` (positions past it, created by `ceil_mode`,
//!   never count);
//! - `ceil_mode` may create a window lying wholly in the end padding; such an empty window yields 0 and routes
//!   nothing (its argmax is `u32::MAX`).

use ndarray::{ArrayD, ArrayViewD, IxDyn};
use rayon::prelude::*;
use relprop_core::graph::{window_out, Pool};

/// Argmax value of an empty window (all padding): routes nothing.
pub const NO_WINNER: u32 = u32::MAX;

/// One window extent along one axis: in-bounds input range `[lo, hi)` and the count used by
/// `count_include_pad`.
#[derive(Clone, Copy)]
struct Span {
    lo: usize,
    hi: usize,
    padded: usize,
}

struct PGeom {
    in_sp: Vec<usize>,
    out_sp: Vec<usize>,
    istride: Vec<usize>,
    /// Per axis, per output index.
    spans: Vec<Vec<Span>>,
    count_include_pad: bool,
}

impl PGeom {
    fn new(p: &Pool, in_sp: &[usize]) -> PGeom {
        let r = p.kernel.len();
        assert!(r >= 1, "pool: needs at least one spatial axis");
        assert_eq!(
            in_sp.len(),
            r,
            "pool: input has {} spatial axes, kernel {r}",
            in_sp.len()
        );
        for (name, v) in [
            ("strides", &p.strides),
            ("pads_begin", &p.pads_begin),
            ("pads_end", &p.pads_end),
        ] {
            assert_eq!(
                v.len(),
                r,
                "pool: {name} has {} entries, expected {r}",
                v.len()
            );
        }
        let mut out_sp = Vec::with_capacity(r);
        let mut spans = Vec::with_capacity(r);
        for (a, &len) in in_sp.iter().enumerate() {
            let (k, s, pb, pe) = (p.kernel[a], p.strides[a], p.pads_begin[a], p.pads_end[a]);
            let o = window_out(len, k, s, 1, pb, pe, p.ceil_mode)
                .unwrap_or_else(|e| panic!("pool geometry: {e}"));
            out_sp.push(o);
            spans.push(
                (0..o)
                    .map(|i| {
                        // Window [start, start + k) in coordinates shifted by pb (so padded input is [0, len+pb+pe)).
                        let start = i * s;
                        let lo = start.max(pb).min(len + pb) - pb;
                        let hi = (start + k).min(len + pb).max(pb) - pb;
                        let padded = (start + k).min(len + pb + pe).saturating_sub(start);
                        Span {
                            lo,
                            hi: hi.max(lo),
                            padded,
                        }
                    })
                    .collect(),
            );
        }
        let mut istride = vec![1; r];
        for a in (0..r - 1).rev() {
            istride[a] = istride[a + 1] * in_sp[a + 1];
        }
        PGeom {
            in_sp: in_sp.to_vec(),
            out_sp,
            istride,
            spans,
            count_include_pad: p.count_include_pad,
        }
    }

    fn in_plane(&self) -> usize {
        self.in_sp.iter().product()
    }
    fn out_plane(&self) -> usize {
        self.out_sp.iter().product()
    }

    /// Call `f(row, rows, outer)` for every output row of a plane (all axes but the last fixed; `row` counts
    /// them row-major), with `rows` the input-plane offsets of the window's in-bounds input rows (row-major)
    /// and `outer` its extent over those axes (`padded` count and in-bounds count multiplied out).
    fn for_each_out_row(&self, mut f: impl FnMut(usize, &[usize], Outer)) {
        let last = self.out_sp.len() - 1;
        let n_rows: usize = self.out_sp[..last].iter().product();
        if n_rows == 0 || self.out_sp[last] == 0 {
            return;
        }
        let mut pos = vec![0usize; last];
        let (mut rows, mut next) = (Vec::new(), Vec::new());
        for row in 0..n_rows {
            rows.clear();
            rows.push(0);
            let mut outer = Outer {
                padded: 1,
                inside: 1,
            };
            for (a, &pa) in pos.iter().enumerate() {
                let sp = self.spans[a][pa];
                outer.padded *= sp.padded;
                outer.inside *= sp.hi - sp.lo;
                next.clear();
                for &r in &rows {
                    next.extend((sp.lo..sp.hi).map(|i| r + i * self.istride[a]));
                }
                std::mem::swap(&mut rows, &mut next);
            }
            f(row, &rows, outer);
            for a in (0..last).rev() {
                pos[a] += 1;
                if pos[a] < self.out_sp[a] {
                    break;
                }
                pos[a] = 0;
            }
        }
    }

    /// The last axis' spans.
    fn last_spans(&self) -> &[Span] {
        self.spans.last().expect("rank >= 1")
    }

    /// Average divisor of a window: its outer extent times the last-axis span.
    fn divisor(&self, outer: Outer, sp: Span) -> usize {
        if self.count_include_pad {
            outer.padded * sp.padded
        } else {
            outer.inside * (sp.hi - sp.lo)
        }
    }
}

/// A window's extent over the axes before the last.
#[derive(Clone, Copy)]
struct Outer {
    padded: usize,
    inside: usize,
}

fn split_batched<'a>(x: &'a ArrayViewD<f32>, what: &str) -> (usize, usize, &'a [usize]) {
    assert!(
        x.ndim() >= 3,
        "{what}: input must be (N, C, spatial...), got {:?}",
        x.shape()
    );
    (x.shape()[0], x.shape()[1], &x.shape()[2..])
}

fn shape_of(n: usize, c: usize, sp: &[usize]) -> Vec<usize> {
    [n, c].into_iter().chain(sp.iter().copied()).collect()
}

/// Max pooling of `x` `(N, C, spatial...)`. Returns the output `(N, C, out spatial...)` and, per output
/// element, the flat per-sample index (`c · plane + spatial offset`) of its winner: the first maximum in
/// row-major window order; padding never wins.
pub fn maxpool_forward(p: &Pool, x: ArrayViewD<f32>) -> (ArrayD<f32>, Vec<u32>) {
    let (n, c, sp) = split_batched(&x, "maxpool");
    let g = PGeom::new(p, sp);
    let (inp, op) = (g.in_plane(), g.out_plane());
    assert!(
        c * inp < NO_WINNER as usize,
        "maxpool: per-sample input too large for u32 indices"
    );
    let xs = x.as_standard_layout();
    let xs = xs.as_slice().expect("standard layout");
    let mut out = vec![0f32; n * c * op];
    let mut arg = vec![NO_WINNER; n * c * op];
    if op > 0 && inp > 0 {
        let ow_n = *g.out_sp.last().expect("rank >= 1");
        out.par_chunks_mut(op)
            .zip(arg.par_chunks_mut(op))
            .zip(xs.par_chunks(inp))
            .enumerate()
            .for_each(|(pl, ((o, a), xp))| {
                let base = (pl % c) * inp;
                g.for_each_out_row(|row, rows, _| {
                    let (o, a) = (
                        &mut o[row * ow_n..(row + 1) * ow_n],
                        &mut a[row * ow_n..(row + 1) * ow_n],
                    );
                    let Some(&r0) = rows.first() else { return };
                    for ((o, a), sp) in o.iter_mut().zip(a.iter_mut()).zip(g.last_spans()) {
                        if sp.lo == sp.hi {
                            continue;
                        }
                        let (mut bi, mut best) = (r0 + sp.lo, xp[r0 + sp.lo]);
                        for &r in rows {
                            for (j, &v) in xp[r + sp.lo..r + sp.hi].iter().enumerate() {
                                if v > best {
                                    (best, bi) = (v, r + sp.lo + j);
                                }
                            }
                        }
                        *o = best;
                        *a = (base + bi) as u32;
                    }
                });
            });
    }
    (
        ArrayD::from_shape_vec(IxDyn(&shape_of(n, c, &g.out_sp)), out).expect("shape"),
        arg,
    )
}

/// Global max over all spatial axes: `(N, C)`.
pub fn global_maxpool_forward(x: ArrayViewD<f32>) -> ArrayD<f32> {
    let (n, c, sp) = split_batched(&x, "global maxpool");
    let inp: usize = sp.iter().product();
    assert!(inp > 0, "global maxpool: empty spatial extent");
    let xs = x.as_standard_layout();
    let xs = xs.as_slice().expect("standard layout");
    let out: Vec<f32> = xs.par_chunks(inp).map(|xp| xp[1..].iter().fold(xp[0], |m, &v| if v > m { v } else { m })).collect();
    ArrayD::from_shape_vec(IxDyn(&[n, c]), out).expect("shape")
}

/// The maximum of `xs` and the share `1/ties` each of its equal maxima gets (TensorFlow's `reduce_max`
/// gradient; NaN never counts as a maximum).
pub(crate) fn max_and_share<'a>(xs: impl Iterator<Item = &'a f32> + Clone) -> (f32, f32) {
    let m = xs.clone().fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    let ties = xs.filter(|&&v| v == m).count();
    (m, 1.0 / ties.max(1) as f32)
}

/// Route relevance `r` `(N, C)` through a global max pooling of `x` `(N, C, spatial...)`: every maximum of a
/// plane gets `(1/ties)·r`, as TensorFlow's `reduce_max` gradient gives it (Keras' GlobalMaxPooling layers,
/// which signxai explains by their gradient; a dead channel's all-zero plane shares evenly).
pub fn global_maxpool_route(x: ArrayViewD<f32>, r: ArrayViewD<f32>) -> ArrayD<f32> {
    let (n, c, _) = split_batched(&x, "global maxpool route");
    assert_eq!(r.shape(), [n, c], "global maxpool route: r must be (N, C)");
    let inp: usize = x.shape()[2..].iter().product();
    let xs = x.as_standard_layout();
    let xs = xs.as_slice().expect("standard layout");
    let rs = r.as_standard_layout();
    let rs = rs.as_slice().expect("standard layout");
    let mut dx = vec![0f32; xs.len()];
    if inp > 0 {
        dx.par_chunks_mut(inp).zip(xs.par_chunks(inp)).zip(rs.par_iter()).for_each(|((d, xp), &rv)| {
            let (m, share) = max_and_share(xp.iter());
            for (d, &v) in d.iter_mut().zip(xp) {
                if v == m {
                    *d = share * rv;
                }
            }
        });
    }
    ArrayD::from_shape_vec(x.raw_dim(), dx).expect("shape")
}

/// Route relevance through a max pooling: scatter-add each element of `r` `(N, C, out...)` to its winner from
/// `argmax`; overlapping windows add up. Returns `(N, in_shape...)`,
/// `in_shape` being the per-sample input shape `(C, spatial...)`.
pub fn maxpool_route(argmax: &[u32], r: ArrayViewD<f32>, in_shape: &[usize]) -> ArrayD<f32> {
    assert!(
        r.ndim() >= 2 && !in_shape.is_empty(),
        "maxpool route: r must be (N, C, ...)"
    );
    let (n, c) = (r.shape()[0], in_shape[0]);
    assert_eq!(
        r.shape()[1],
        c,
        "maxpool route: channel count differs from the input's"
    );
    assert_eq!(
        argmax.len(),
        r.len(),
        "maxpool route: one argmax per relevance value"
    );
    let inp: usize = in_shape[1..].iter().product();
    let rp: usize = r.shape()[2..].iter().product();
    let rs = r.as_standard_layout();
    let rs = rs.as_slice().expect("standard layout");
    let mut dx = vec![0f32; n * c * inp];
    if inp > 0 && rp > 0 {
        dx.par_chunks_mut(inp)
            .zip(rs.par_chunks(rp))
            .zip(argmax.par_chunks(rp))
            .enumerate()
            .for_each(|(pl, ((d, rv), av))| {
                let base = (pl % c) * inp;
                for (&v, &a) in rv.iter().zip(av) {
                    if a != NO_WINNER {
                        // Winners of channel c lie in input plane c; indexing checks that.
                        d[a as usize - base] += v;
                    }
                }
            });
    }
    let shape: Vec<usize> = std::iter::once(n).chain(in_shape.iter().copied()).collect();
    ArrayD::from_shape_vec(IxDyn(&shape), dx).expect("shape")
}

/// Route relevance through a max pooling as TensorFlow's MaxPool3D gradient does: every input equal to its
/// window's maximum receives the window's whole relevance, so tied maxima each get all of it (1-D and 2-D
/// pooling take the first maximum, [`maxpool_route`]; docs/divergences.md). `x` is the pooling's input
/// `(N, C, spatial...)`, `r` the relevance at its output; returns `x`'s shape.
pub fn maxpool_route_ties(p: &Pool, x: ArrayViewD<f32>, r: ArrayViewD<f32>) -> ArrayD<f32> {
    let (n, c, sp) = split_batched(&x, "maxpool route");
    let g = PGeom::new(p, sp);
    let (inp, op) = (g.in_plane(), g.out_plane());
    assert_eq!(r.len(), n * c * op, "maxpool route: r must have the output's size");
    let (xs, rs) = (x.as_standard_layout(), r.as_standard_layout());
    let (xs, rs) = (xs.as_slice().expect("standard layout"), rs.as_slice().expect("standard layout"));
    let mut dx = vec![0f32; n * c * inp];
    if op > 0 && inp > 0 {
        let ow_n = *g.out_sp.last().expect("rank >= 1");
        dx.par_chunks_mut(inp)
            .zip(xs.par_chunks(inp))
            .zip(rs.par_chunks(op))
            .for_each(|((d, xp), rp)| {
                g.for_each_out_row(|row, rows, _| {
                    for (&v, sp) in rp[row * ow_n..(row + 1) * ow_n].iter().zip(g.last_spans()) {
                        let window = || rows.iter().map(|&r0| r0 + sp.lo..r0 + sp.hi);
                        let best = window().flat_map(|w| &xp[w]).fold(f32::NEG_INFINITY, |m, &x| m.max(x));
                        for w in window() {
                            for (d, &x) in d[w.clone()].iter_mut().zip(&xp[w]) {
                                if x == best {
                                    *d += v;
                                }
                            }
                        }
                    }
                });
            });
    }
    ArrayD::from_shape_vec(IxDyn(&shape_of(n, c, sp)), dx).expect("shape")
}

/// Average pooling of `x` `(N, C, spatial...)`.
pub fn avgpool_forward(p: &Pool, x: ArrayViewD<f32>) -> ArrayD<f32> {
    let (n, c, sp) = split_batched(&x, "avgpool");
    let g = PGeom::new(p, sp);
    let (inp, op) = (g.in_plane(), g.out_plane());
    let xs = x.as_standard_layout();
    let xs = xs.as_slice().expect("standard layout");
    let mut out = vec![0f32; n * c * op];
    if op > 0 && inp > 0 {
        let ow_n = *g.out_sp.last().expect("rank >= 1");
        out.par_chunks_mut(op)
            .zip(xs.par_chunks(inp))
            .for_each(|(o, xp)| {
                g.for_each_out_row(|row, rows, outer| {
                    for (o, &sp) in o[row * ow_n..(row + 1) * ow_n]
                        .iter_mut()
                        .zip(g.last_spans())
                    {
                        let div = g.divisor(outer, sp);
                        if div > 0 {
                            let sum: f32 = rows
                                .iter()
                                .map(|&r| xp[r + sp.lo..r + sp.hi].iter().sum::<f32>())
                                .sum();
                            *o = sum / div as f32;
                        }
                    }
                });
            });
    }
    ArrayD::from_shape_vec(IxDyn(&shape_of(n, c, &g.out_sp)), out).expect("shape")
}

/// Vector-Jacobian product of [`avgpool_forward`] w.r.t. its input: each `s` value divided by its window's
/// divisor, added to every in-bounds position of the window. `in_shape` is the per-sample `(C, spatial...)`.
pub fn avgpool_transpose(p: &Pool, s: ArrayViewD<f32>, in_shape: &[usize]) -> ArrayD<f32> {
    assert!(
        in_shape.len() >= 2,
        "avgpool transpose: in_shape must be (C, spatial...)"
    );
    let (n, c) = (s.shape()[0], in_shape[0]);
    let g = PGeom::new(p, &in_shape[1..]);
    assert_eq!(
        s.shape(),
        &shape_of(n, c, &g.out_sp)[..],
        "avgpool transpose: s has the wrong shape"
    );
    let (inp, op) = (g.in_plane(), g.out_plane());
    let ss = s.as_standard_layout();
    let ss = ss.as_slice().expect("standard layout");
    let mut dx = vec![0f32; n * c * inp];
    if op > 0 && inp > 0 {
        let ow_n = *g.out_sp.last().expect("rank >= 1");
        dx.par_chunks_mut(inp)
            .zip(ss.par_chunks(op))
            .for_each(|(d, sv)| {
                g.for_each_out_row(|row, rows, outer| {
                    for (&v, &sp) in sv[row * ow_n..(row + 1) * ow_n].iter().zip(g.last_spans()) {
                        let div = g.divisor(outer, sp);
                        if div > 0 {
                            let v = v / div as f32;
                            for &r in rows {
                                d[r + sp.lo..r + sp.hi].iter_mut().for_each(|e| *e += v);
                            }
                        }
                    }
                });
            });
    }
    let shape: Vec<usize> = std::iter::once(n).chain(in_shape.iter().copied()).collect();
    ArrayD::from_shape_vec(IxDyn(&shape), dx).expect("shape")
}

/// Mean over all spatial axes: `(N, C, spatial...)` → `(N, C)`.
pub fn global_avgpool_forward(x: ArrayViewD<f32>) -> ArrayD<f32> {
    let (n, c, sp) = split_batched(&x, "global avgpool");
    let inp: usize = sp.iter().product();
    assert!(inp > 0, "global avgpool: empty spatial extent");
    let xs = x.as_standard_layout();
    let xs = xs.as_slice().expect("standard layout");
    let out: Vec<f32> = xs
        .par_chunks(inp)
        .map(|xp| xp.iter().sum::<f32>() / inp as f32)
        .collect();
    ArrayD::from_shape_vec(IxDyn(&[n, c]), out).expect("shape")
}

/// Vector-Jacobian product of [`global_avgpool_forward`]: `s` `(N, C)` spread evenly over each plane of
/// `(N, in_shape...)`.
pub fn global_avgpool_transpose(s: ArrayViewD<f32>, in_shape: &[usize]) -> ArrayD<f32> {
    assert!(
        in_shape.len() >= 2,
        "global avgpool transpose: in_shape must be (C, spatial...)"
    );
    assert!(
        s.ndim() == 2 && s.shape()[1] == in_shape[0],
        "global avgpool transpose: s must be (N, {})",
        in_shape[0]
    );
    let n = s.shape()[0];
    let inp: usize = in_shape[1..].iter().product();
    let ss = s.as_standard_layout();
    let ss = ss.as_slice().expect("standard layout");
    let mut dx = vec![0f32; n * in_shape[0] * inp];
    if inp > 0 {
        dx.par_chunks_mut(inp)
            .zip(ss.par_iter())
            .for_each(|(d, &v)| d.fill(v / inp as f32));
    }
    let shape: Vec<usize> = std::iter::once(n).chain(in_shape.iter().copied()).collect();
    ArrayD::from_shape_vec(IxDyn(&shape), dx).expect("shape")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_util::{assert_close, dot, unravel, Rng};

    fn pool(
        kernel: &[usize],
        strides: &[usize],
        pb: &[usize],
        pe: &[usize],
        ceil: bool,
        cip: bool,
    ) -> Pool {
        Pool {
            kernel: kernel.to_vec(),
            strides: strides.to_vec(),
            pads_begin: pb.to_vec(),
            pads_end: pe.to_vec(),
            count_include_pad: cip,
            ceil_mode: ceil,
        }
    }

    /// Naive reference: for every output, scan the full window (row-major), skipping padding. Returns
    /// (max, argmax, avg, avg-transpose of `s`).
    fn naive(
        p: &Pool,
        x: &[f32],
        n: usize,
        c: usize,
        sp: &[usize],
        s: &[f32],
    ) -> (Vec<f32>, Vec<u32>, Vec<f32>, Vec<f32>) {
        let r = sp.len();
        let out_sp: Vec<usize> = (0..r)
            .map(|a| {
                window_out(
                    sp[a],
                    p.kernel[a],
                    p.strides[a],
                    1,
                    p.pads_begin[a],
                    p.pads_end[a],
                    p.ceil_mode,
                )
                .unwrap()
            })
            .collect();
        let (inp, op, kp) = (
            sp.iter().product::<usize>(),
            out_sp.iter().product::<usize>(),
            p.kernel.iter().product::<usize>(),
        );
        let (mut mx, mut am, mut av) = (
            vec![0f32; n * c * op],
            vec![NO_WINNER; n * c * op],
            vec![0f32; n * c * op],
        );
        let mut dx = vec![0f32; n * c * inp];
        for pl in 0..n * c {
            for o in 0..op {
                let ov = unravel(o, &out_sp);
                let (mut best, mut bi) = (f32::NEG_INFINITY, None);
                let (mut sum, mut cnt, mut cntpad) = (0f32, 0usize, 0usize);
                let mut members = vec![];
                for k in 0..kp {
                    let kv = unravel(k, &p.kernel);
                    let mut idx = 0;
                    let mut inside = true;
                    let mut in_padded = true;
                    for a in 0..r {
                        let i = (ov[a] * p.strides[a] + kv[a]) as isize - p.pads_begin[a] as isize;
                        if i < 0 || i >= sp[a] as isize {
                            inside = false;
                        }
                        if i >= (sp[a] + p.pads_end[a]) as isize {
                            in_padded = false;
                        }
                        idx = idx * sp[a] + i.max(0) as usize;
                    }
                    if in_padded {
                        cntpad += 1;
                    }
                    if !inside {
                        continue;
                    }
                    let v = x[pl * inp + idx];
                    if bi.is_none() || v > best {
                        (best, bi) = (v, Some(idx));
                    }
                    sum += v;
                    cnt += 1;
                    members.push(idx);
                }
                let oi = pl * op + o;
                if let Some(b) = bi {
                    mx[oi] = best;
                    am[oi] = ((pl % c) * inp + b) as u32;
                }
                let div = if p.count_include_pad { cntpad } else { cnt };
                if div > 0 {
                    av[oi] = sum / div as f32;
                    for m in members {
                        dx[pl * inp + m] += s[oi] / div as f32;
                    }
                }
            }
        }
        (mx, am, av, dx)
    }

    fn check(name: &str, p: Pool, n: usize, c: usize, sp: &[usize], integer: bool) {
        let mut rng = Rng::new(name.len() as u64 * 31 + sp.iter().sum::<usize>() as u64);
        let shape = shape_of(n, c, sp);
        let len: usize = shape.iter().product();
        // Integer values in a small range make ties, checking the first-maximum rule.
        let data: Vec<f32> = rng
            .vec(len)
            .into_iter()
            .map(|v| if integer { (v * 3.0).round() } else { v })
            .collect();
        let x = ArrayD::from_shape_vec(IxDyn(&shape), data).unwrap();
        let (y, am) = maxpool_forward(&p, x.view());
        let s = ArrayD::from_shape_vec(IxDyn(y.shape()), rng.vec(y.len())).unwrap();
        let (mx, amn, av, dxn) = naive(&p, x.as_slice().unwrap(), n, c, sp, s.as_slice().unwrap());
        assert_close(&format!("{name} max"), y.as_slice().unwrap(), &mx, 0.0);
        assert_eq!(am, amn, "{name} argmax");
        let a = avgpool_forward(&p, x.view());
        assert_close(&format!("{name} avg"), a.as_slice().unwrap(), &av, 1e-5);
        let dx = avgpool_transpose(&p, s.view(), &shape[1..]);
        assert_close(
            &format!("{name} avg transpose"),
            dx.as_slice().unwrap(),
            &dxn,
            1e-5,
        );
        let (l, r) = (
            dot(a.as_slice().unwrap(), s.as_slice().unwrap()),
            dot(x.as_slice().unwrap(), dx.as_slice().unwrap()),
        );
        assert!(
            (l - r).abs() <= 1e-4 * l.abs().max(r.abs()).max(1.0),
            "{name}: avg adjoint {l} vs {r}"
        );
        // Routing: naive scatter of s to the winners; the routed total equals the total of s (no empty windows)
        // and <route(s), x> == <s, max(x)>.
        let routed = maxpool_route(&am, s.view(), &shape[1..]);
        let mut rn = vec![0f32; len];
        let per = len / n;
        for (j, &w) in amn.iter().enumerate() {
            if w != NO_WINNER {
                rn[(j / (y.len() / n)) * per + w as usize] += s.as_slice().unwrap()[j];
            }
        }
        assert_close(
            &format!("{name} route"),
            routed.as_slice().unwrap(),
            &rn,
            1e-5,
        );
        let (l, r) = (
            dot(y.as_slice().unwrap(), s.as_slice().unwrap()),
            dot(x.as_slice().unwrap(), routed.as_slice().unwrap()),
        );
        assert!(
            (l - r).abs() <= 1e-4 * l.abs().max(r.abs()).max(1.0),
            "{name}: max adjoint {l} vs {r}"
        );
        // TensorFlow's MaxPool3D routing: every member of a window equal to its maximum gets the window's s.
        let ties = maxpool_route_ties(&p, x.view(), s.view());
        let mut tn = vec![0f32; len];
        for (j, &w) in amn.iter().enumerate() {
            if w == NO_WINNER {
                continue;
            }
            let (pl, best) = (j / (y.len() / (n * c)), mx[j]);
            for m in window_members(&p, sp, j % (y.len() / (n * c))) {
                if x.as_slice().unwrap()[pl * (per / c) + m] == best {
                    tn[pl * (per / c) + m] += s.as_slice().unwrap()[j];
                }
            }
        }
        assert_close(&format!("{name} route with ties"), ties.as_slice().unwrap(), &tn, 1e-5);
        if !integer {
            assert_eq!(ties.as_slice().unwrap(), routed.as_slice().unwrap(), "{name}: without ties both routes agree");
        }
    }

    /// The in-bounds input positions (plane offsets) of output position `o`'s window.
    fn window_members(p: &Pool, sp: &[usize], o: usize) -> Vec<usize> {
        let out_sp: Vec<usize> = (0..sp.len())
            .map(|a| window_out(sp[a], p.kernel[a], p.strides[a], 1, p.pads_begin[a], p.pads_end[a], p.ceil_mode).unwrap())
            .collect();
        let ov = unravel(o, &out_sp);
        (0..p.kernel.iter().product::<usize>())
            .filter_map(|k| {
                let kv = unravel(k, &p.kernel);
                let mut idx = 0usize;
                for a in 0..sp.len() {
                    let i = (ov[a] * p.strides[a] + kv[a]) as isize - p.pads_begin[a] as isize;
                    if i < 0 || i >= sp[a] as isize {
                        return None;
                    }
                    idx = idx * sp[a] + i as usize;
                }
                Some(idx)
            })
            .collect()
    }

    #[test]
    fn pool2d_plain() {
        check(
            "2x2 s2",
            pool(&[2, 2], &[2, 2], &[0, 0], &[0, 0], false, false),
            3,
            4,
            &[8, 6],
            false,
        );
        check(
            "2x2 s2 odd",
            pool(&[2, 2], &[2, 2], &[0, 0], &[0, 0], false, false),
            3,
            2,
            &[7, 9],
            false,
        );
    }
    #[test]
    fn pool2d_overlapping() {
        check(
            "3x3 s2",
            pool(&[3, 3], &[2, 2], &[0, 0], &[0, 0], false, false),
            3,
            3,
            &[9, 11],
            false,
        );
        check(
            "3x3 s2 ties",
            pool(&[3, 3], &[2, 2], &[1, 1], &[1, 1], false, false),
            3,
            3,
            &[9, 11],
            true,
        );
        check(
            "3x2 s1 ties",
            pool(&[3, 2], &[1, 1], &[0, 1], &[1, 0], false, false),
            2,
            2,
            &[5, 6],
            true,
        );
    }
    #[test]
    fn pool2d_ceil_mode() {
        check(
            "ceil 3x3 s2",
            pool(&[3, 3], &[2, 2], &[0, 0], &[0, 0], true, false),
            3,
            2,
            &[8, 10],
            false,
        );
        check(
            "ceil 2x2 s2",
            pool(&[2, 2], &[2, 2], &[0, 0], &[0, 0], true, true),
            3,
            2,
            &[7, 9],
            false,
        );
        check(
            "ceil pad cip",
            pool(&[3, 3], &[2, 2], &[1, 1], &[1, 1], true, true),
            3,
            2,
            &[6, 9],
            false,
        );
        check(
            "ceil pad",
            pool(&[3, 3], &[2, 2], &[1, 1], &[1, 1], true, false),
            3,
            2,
            &[6, 9],
            true,
        );
    }
    #[test]
    fn pool2d_padding_divisors() {
        check(
            "pad cip",
            pool(&[3, 3], &[1, 1], &[1, 1], &[1, 1], false, true),
            3,
            2,
            &[5, 7],
            false,
        );
        check(
            "pad no cip",
            pool(&[3, 3], &[1, 1], &[1, 1], &[1, 1], false, false),
            3,
            2,
            &[5, 7],
            false,
        );
        check(
            "asym pad cip",
            pool(&[2, 3], &[2, 1], &[0, 1], &[1, 2], false, true),
            3,
            2,
            &[5, 7],
            false,
        );
        check(
            "asym pad",
            pool(&[2, 3], &[2, 1], &[1, 0], &[0, 2], false, false),
            3,
            2,
            &[5, 7],
            false,
        );
    }
    #[test]
    fn pool_empty_window() {
        // ceil_mode makes the last window lie wholly in the end padding (len 2, pads 1/1, k 2, s 3).
        check(
            "empty",
            pool(&[2], &[3], &[1], &[1], true, false),
            2,
            2,
            &[2],
            false,
        );
        check(
            "empty cip",
            pool(&[2, 2], &[3, 1], &[1, 0], &[1, 0], true, true),
            2,
            2,
            &[2, 3],
            false,
        );
    }
    #[test]
    fn pool1d_and_3d() {
        check(
            "1d",
            pool(&[3], &[2], &[1], &[0], false, false),
            3,
            3,
            &[13],
            false,
        );
        check(
            "1d ceil",
            pool(&[4], &[3], &[0], &[2], true, true),
            3,
            3,
            &[13],
            true,
        );
        check(
            "3d",
            pool(&[2, 3, 2], &[2, 1, 2], &[1, 0, 1], &[0, 1, 1], false, true),
            2,
            2,
            &[5, 4, 6],
            false,
        );
        check(
            "3d ties",
            pool(&[2, 2, 3], &[1, 2, 2], &[0, 1, 1], &[1, 0, 1], true, true),
            2,
            3,
            &[4, 5, 6],
            true,
        );
    }
    #[test]
    fn pool_large_plane() {
        check(
            "large",
            pool(&[2, 2], &[2, 2], &[0, 0], &[0, 0], false, false),
            1,
            3,
            &[64, 70],
            false,
        );
    }

    #[test]
    fn global_pools() {
        let mut rng = Rng::new(9);
        for (sp, integer) in [
            (vec![5usize, 7], false),
            (vec![4, 3], true),
            (vec![11], true),
            (vec![2, 3, 4], false),
        ] {
            let (n, c) = (3, 4);
            let shape = shape_of(n, c, &sp);
            let len: usize = shape.iter().product();
            let inp: usize = sp.iter().product();
            let data: Vec<f32> = rng
                .vec(len)
                .into_iter()
                .map(|v| if integer { (v * 2.0).round() } else { v })
                .collect();
            let x = ArrayD::from_shape_vec(IxDyn(&shape), data.clone()).unwrap();
            let y = global_maxpool_forward(x.view());
            assert_eq!(y.shape(), &[n, c]);
            let ys: Vec<f32> = (0..n * c).map(|pl| data[pl * inp..(pl + 1) * inp].iter().copied().fold(f32::NEG_INFINITY, f32::max)).collect();
            assert_close("gmax", y.as_slice().unwrap(), &ys, 0.0);
            // Relevance: every maximum of a plane gets an equal share (integer inputs have ties).
            let s = ArrayD::from_shape_vec(IxDyn(&[n, c]), rng.vec(n * c)).unwrap();
            let routed = global_maxpool_route(x.view(), s.view());
            let mut tied = false;
            for pl in 0..n * c {
                let plane = &data[pl * inp..(pl + 1) * inp];
                let ties = plane.iter().filter(|&&v| v == ys[pl]).count();
                tied |= ties > 1;
                for (j, &v) in routed.as_slice().unwrap()[pl * inp..(pl + 1) * inp].iter().enumerate() {
                    let want = if plane[j] == ys[pl] { 1.0 / ties as f32 * s.as_slice().unwrap()[pl] } else { 0.0 };
                    assert_eq!(v, want, "plane {pl} position {j}");
                }
            }
            assert!(tied || !integer, "the integer inputs have tied maxima");
            let a = global_avgpool_forward(x.view());
            let an: Vec<f32> = (0..n * c)
                .map(|pl| data[pl * inp..(pl + 1) * inp].iter().sum::<f32>() / inp as f32)
                .collect();
            assert_close("gavg", a.as_slice().unwrap(), &an, 1e-5);
            let dx = global_avgpool_transpose(s.view(), &shape[1..]);
            assert_eq!(dx.shape(), &shape[..]);
            let (l, r) = (
                dot(a.as_slice().unwrap(), s.as_slice().unwrap()),
                dot(&data, dx.as_slice().unwrap()),
            );
            assert!(
                (l - r).abs() <= 1e-4 * l.abs().max(r.abs()).max(1.0),
                "gavg adjoint {l} vs {r}"
            );
        }
    }

    /// `cargo test -p relprop-ndarray --release bench_pool -- --ignored --nocapture --test-threads=1`
    #[test]
    #[ignore]
    fn bench_pool() {
        use std::time::Instant;
        let mut rng = Rng::new(3);
        let x = ArrayD::from_shape_vec(IxDyn(&[1, 64, 224, 224]), rng.vec(64 * 224 * 224)).unwrap();
        let best = |f: &dyn Fn()| {
            (0..20)
                .map(|_| {
                    let t = Instant::now();
                    f();
                    t.elapsed().as_secs_f64() * 1e3
                })
                .fold(f64::MAX, f64::min)
        };
        for (label, p) in [
            (
                "2x2 s2",
                pool(&[2, 2], &[2, 2], &[0, 0], &[0, 0], false, false),
            ),
            (
                "3x3 s2 pad1",
                pool(&[3, 3], &[2, 2], &[1, 1], &[1, 1], false, false),
            ),
        ] {
            let (y, am) = maxpool_forward(&p, x.view());
            let tm = best(&|| drop(std::hint::black_box(maxpool_forward(&p, x.view()))));
            let tr = best(&|| {
                drop(std::hint::black_box(maxpool_route(
                    &am,
                    y.view(),
                    &[64, 224, 224],
                )))
            });
            let ta = best(&|| drop(std::hint::black_box(avgpool_forward(&p, x.view()))));
            let tt = best(&|| {
                drop(std::hint::black_box(avgpool_transpose(
                    &p,
                    y.view(),
                    &[64, 224, 224],
                )))
            });
            println!("pool {label} 64x224x224: maxpool {tm:.3} ms | route {tr:.3} ms | avgpool {ta:.3} ms | avg transpose {tt:.3} ms");
        }
    }
}
