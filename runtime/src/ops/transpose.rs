//! Transposition of a (rows × cols) block into a (cols × rows) layout, masked on the way: the
//! convolution's filter gradient reads dY channels-last, and a fused ReLU's mask is applied while
//! the data passes anyway. Also the row copies of the convolution's padded buffers, masked the
//! same way.

use rayon::prelude::*;

/// `g` where `y > 0`, else 0, without a branch (the mask is data: a branch would mispredict).
#[inline(always)]
pub fn keep_if_positive(g: f32, y: f32) -> f32 {
    f32::from_bits(g.to_bits() & (-((y > 0.0) as i32)) as u32)
}

/// `dst = src`, masked by `mask > 0` when given: moves of 8 floats inline, the last one
/// overlapping the one before. Made for the short rows of an image (28 floats for MNIST), where
/// `copy_from_slice` would call memcpy once per row; any length works.
#[inline]
pub fn copy_row(dst: &mut [f32], src: &[f32], mask: Option<&[f32]>) {
    let n = src.len();
    let dst = &mut dst[..n];
    if n < 8 {
        match mask {
            Some(m) => {
                for (i, (d, &s)) in dst.iter_mut().zip(src).enumerate() {
                    *d = keep_if_positive(s, m[i]);
                }
            }
            // Two moves of 4 or 2 floats, overlapping: LLVM made a plain loop a call to memcpy
            // (2% of the CIFAR network's forward at batch 128, for its pooled rows of 4).
            None if n >= 4 => {
                for at in [0, n - 4] {
                    let s: [f32; 4] = src[at..at + 4].try_into().expect("4 floats");
                    dst[at..at + 4].copy_from_slice(&s);
                }
            }
            None if n >= 2 => {
                for at in [0, n - 2] {
                    let s: [f32; 2] = src[at..at + 2].try_into().expect("2 floats");
                    dst[at..at + 2].copy_from_slice(&s);
                }
            }
            None => dst.copy_from_slice(src),
        }
        return;
    }
    for i in (0..n).step_by(8) {
        let at = i.min(n - 8);
        let d: &mut [f32; 8] = (&mut dst[at..at + 8]).try_into().expect("8 floats");
        let s: &[f32; 8] = src[at..at + 8].try_into().expect("8 floats");
        match mask {
            Some(m) => {
                let m: &[f32; 8] = m[at..at + 8].try_into().expect("8 floats");
                *d = std::array::from_fn(|k| keep_if_positive(s[k], m[k]));
            }
            None => *d = *s,
        }
    }
}

/// `dst = 0` for a short row, as [`copy_row`] copies one.
#[inline]
pub fn zero_row(dst: &mut [f32]) {
    let n = dst.len();
    if n < 8 {
        return dst.iter_mut().for_each(|v| *v = 0.0);
    }
    for i in (0..n).step_by(8) {
        let at = i.min(n - 8);
        dst[at..at + 8].copy_from_slice(&[0.0; 8]);
    }
}

/// `dst[c · ld + r] = src[r · stride + c]` (masked by `mask[r · stride + c] > 0` when given)
/// for `r < rows`, `c < cols`; lanes `rows..ld` of every `dst` row are zeroed. `stride` is
/// `cols` for a whole matrix, more for columns of a wider one.
pub fn masked_transpose(src: &[f32], mask: Option<&[f32]>, rows: usize, cols: usize, stride: usize, dst: &mut [f32], ld: usize) {
    let end = if rows == 0 || cols == 0 { 0 } else { (rows - 1) * stride + cols };
    assert!(
        stride >= cols && rows <= ld && src.len() >= end && mask.is_none_or(|m| m.len() >= end) && dst.len() >= cols * ld,
        "masked_transpose: {rows} × {cols} (stride {stride}) into rows of {ld}: out of its slices"
    );
    #[cfg(target_arch = "x86_64")]
    if crate::ops::isa::avx2() {
        // SAFETY: AVX2 is present (checked above); the rows and columns are inside the slices
        // (asserted above).
        return unsafe { avx2(src, mask, rows, cols, stride, dst, ld) };
    }
    scalar(src, mask, rows, cols, stride, dst, ld);
}

/// `dst[c · dst_ld + r] += src[r · ld + c]` for `r < rows`, `c < cols`: a row-major rows × cols
/// matrix (leading dimension `ld`) added, transposed, to the first `rows` columns of a cols ×
/// dst_ld one (`dst_ld ≥ rows`; `dst` starts at the first of those columns). In tasks of 8 rows
/// of `dst`, each 8 × 8 block transposed in registers where AVX2 is there: element by element
/// down a column of `src`, every read was a cache miss once `src` outgrew the cache (AlexNet's
/// 384 → 256 filter gradient spent 40% of its time here).
pub fn add_transposed(src: &[f32], rows: usize, cols: usize, ld: usize, dst: &mut [f32], dst_ld: usize) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(dst_ld >= rows && dst.len() >= (cols - 1) * dst_ld + rows, "add_transposed: {rows} × {cols} into {} floats of rows {dst_ld}", dst.len());
    let dst = &mut dst[..(cols - 1) * dst_ld + rows];
    dst.par_chunks_mut(8 * dst_ld).enumerate().for_each(|(t, dst)| {
        let c0 = 8 * t;
        let width = (cols - c0).min(8);
        let mut r0 = 0;
        #[cfg(target_arch = "x86_64")]
        if crate::ops::isa::avx2() && width == 8 {
            assert!(src.len() >= (rows - 1) * ld + c0 + 8);
            r0 = rows / 8 * 8;
            // SAFETY: AVX2 is present (checked above); rows below r0 have 8 floats at c0
            // (asserted above) and dst holds 7 rows of `dst_ld` floats and one of `rows`.
            unsafe { add_transposed_avx2(src, r0, ld, c0, dst, dst_ld) };
        }
        for c in 0..width {
            for r in r0..rows {
                dst[c * dst_ld + r] += src[r * ld + c0 + c];
            }
        }
    });
}

/// The 8 × 8 block of `src` whose rows start at `at + i·stride`, each row zeroed where `mask`
/// (at the same places) is not positive, transposed: vector j is the block's column j.
///
/// # Safety
/// AVX2; 8 floats readable at each row's start in `src` (and `mask`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn masked_block8(src: &[f32], mask: Option<&[f32]>, at: usize, stride: usize) -> [std::arch::x86_64::__m256; 8] {
    use std::arch::x86_64::*;
    let zero = _mm256_setzero_ps();
    let rows: [__m256; 8] = std::array::from_fn(|i| {
        let at = at + i * stride;
        // SAFETY: as the caller promises.
        unsafe {
            let v = _mm256_loadu_ps(src.as_ptr().add(at));
            match mask {
                Some(m) => _mm256_and_ps(v, _mm256_cmp_ps::<_CMP_GT_OQ>(_mm256_loadu_ps(m.as_ptr().add(at)), zero)),
                None => v,
            }
        }
    });
    transpose8(rows)
}

/// The whole 8 × 8 blocks of one task of [`add_transposed`]: rows `..r8` of columns
/// `c0..c0 + 8`.
///
/// # Safety
/// AVX2; as asserted by the caller.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn add_transposed_avx2(src: &[f32], r8: usize, ld: usize, c0: usize, dst: &mut [f32], dst_ld: usize) {
    use std::arch::x86_64::*;
    for r in (0..r8).step_by(8) {
        // SAFETY (all three): as the caller promises.
        let v: [__m256; 8] = std::array::from_fn(|i| unsafe { _mm256_loadu_ps(src.as_ptr().add((r + i) * ld + c0)) });
        for (c, t) in transpose8(v).iter().enumerate() {
            let d = unsafe { dst.as_mut_ptr().add(c * dst_ld + r) };
            unsafe { _mm256_storeu_ps(d, _mm256_add_ps(_mm256_loadu_ps(d), *t)) };
        }
    }
}

/// One element at a time.
fn scalar(src: &[f32], mask: Option<&[f32]>, rows: usize, cols: usize, stride: usize, dst: &mut [f32], ld: usize) {
    for c in 0..cols {
        for r in 0..ld {
            dst[c * ld + r] = if r < rows {
                let v = src[r * stride + c];
                mask.map_or(v, |m| keep_if_positive(v, m[r * stride + c]))
            } else {
                0.0
            };
        }
    }
}

/// 8 × 8 blocks transposed in registers; the ragged edges element by element. The columns past
/// the last whole block, where there are 8 at least, as one more block ending at the last
/// column, overlapping the one before (its columns written twice, with the same values): rows
/// of 14 (Model A's second layer, padded into channel blocks) left 6 of 14 columns to the
/// loops below.
///
/// # Safety
/// AVX2; as [`masked_transpose`] asserts.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn avx2(src: &[f32], mask: Option<&[f32]>, rows: usize, cols: usize, stride: usize, dst: &mut [f32], ld: usize) {
    use std::arch::x86_64::*;
    // Blocks of 8 × 8, the last row and column blocks overlapping the ones before where the
    // rows or columns are not a multiple of 8 (they write the same values again): the rows past
    // the last whole block had been moved one float at a time, a third of the transposes of a
    // Winograd filter gradient's panels of 12 rows.
    let last_row = (rows % 8 != 0 && rows >= 8).then(|| rows - 8);
    let last = (cols % 8 != 0 && cols >= 8).then(|| cols - 8);
    for r0 in (0..rows / 8 * 8).step_by(8).chain(last_row) {
        for c0 in (0..cols / 8 * 8).step_by(8).chain(last) {
            // SAFETY: rows r0..r0+8 and columns c0..c0+8 are inside src (and mask).
            let t = unsafe { masked_block8(src, mask, r0 * stride + c0, stride) };
            for (j, t) in t.iter().enumerate() {
                // SAFETY: dst row c0 + j has ld ≥ rows ≥ r0 + 8 lanes.
                unsafe { _mm256_storeu_ps(dst.as_mut_ptr().add((c0 + j) * ld + r0), *t) };
            }
        }
    }
    // With fewer than 8 rows or columns, no block: one float at a time; then the padding lanes.
    if rows < 8 || cols < 8 {
        for c in 0..cols {
            for r in 0..rows {
                let v = src[r * stride + c];
                dst[c * ld + r] = mask.map_or(v, |m| keep_if_positive(v, m[r * stride + c]));
            }
        }
    }
    if rows < ld {
        for c in 0..cols {
            dst[c * ld + rows..(c + 1) * ld].fill(0.0);
        }
    }
}

/// Stores the first `count` < 8 lanes of `v` at `p`, as stores of 4, 2 and 1 floats: AMD's Zen
/// runs a masked store (`vmaskmovps`) in microcode, an order of magnitude slower (it was the
/// hottest instruction of 2 × 2 pooling in perf).
///
/// # Safety
/// AVX2; `p .. p + count` is writable.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn store_first(p: *mut f32, count: usize, v: std::arch::x86_64::__m256) {
    use std::arch::x86_64::*;
    let (mut p, mut n, mut q) = (p, count, _mm256_castps256_ps128(v));
    // SAFETY: each store writes floats below p + count (the caller's promise).
    unsafe {
        if n >= 4 {
            _mm_storeu_ps(p, q);
            (p, n, q) = (p.add(4), n - 4, _mm256_extractf128_ps::<1>(v));
        }
        if n >= 2 {
            _mm_storel_epi64(p.cast::<__m128i>(), _mm_castps_si128(q));
            (p, n, q) = (p.add(2), n - 2, _mm_movehl_ps(q, q));
        }
        if n >= 1 {
            _mm_store_ss(p, q);
        }
    }
}

/// The transpose of an 8 × 8 block held as 8 row vectors.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub(crate) fn transpose8(r: [std::arch::x86_64::__m256; 8]) -> [std::arch::x86_64::__m256; 8] {
    use std::arch::x86_64::*;
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
    let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    [
        _mm256_permute2f128_ps::<0x20>(s0, s4),
        _mm256_permute2f128_ps::<0x20>(s1, s5),
        _mm256_permute2f128_ps::<0x20>(s2, s6),
        _mm256_permute2f128_ps::<0x20>(s3, s7),
        _mm256_permute2f128_ps::<0x31>(s0, s4),
        _mm256_permute2f128_ps::<0x31>(s1, s5),
        _mm256_permute2f128_ps::<0x31>(s2, s6),
        _mm256_permute2f128_ps::<0x31>(s3, s7),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposes_and_masks_every_shape() {
        for &(rows, cols, ld) in &[(16, 196, 16), (10, 17, 16), (12, 196, 12), (5, 9, 8), (24, 64, 24), (3, 3, 8)] {
            let src: Vec<f32> = (0..rows * cols).map(|i| i as f32 + 1.0).collect();
            let mask: Vec<f32> = (0..rows * cols).map(|i| if i % 3 == 0 { -1.0 } else { 2.0 }).collect();
            for m in [None, Some(&mask[..])] {
                let mut dst = vec![f32::NAN; cols * ld];
                masked_transpose(&src, m, rows, cols, cols, &mut dst, ld);
                for c in 0..cols {
                    for r in 0..ld {
                        let want = if r >= rows {
                            0.0
                        } else if m.is_some() && (r * cols + c) % 3 == 0 {
                            0.0
                        } else {
                            src[r * cols + c]
                        };
                        assert_eq!(dst[c * ld + r], want, "{rows}x{cols} ld {ld} masked {} at ({r}, {c})", m.is_some());
                    }
                }
            }
        }
    }

    #[test]
    fn strided_transposes_mask_and_stay_in_their_rows() {
        for &(rows, cols, stride) in &[(16, 16, 256), (16, 13, 169), (16, 7, 49), (8, 9, 20), (5, 11, 11)] {
            let src: Vec<f32> = (0..rows * stride).map(|i| i as f32 + 1.0).collect();
            let mask: Vec<f32> = (0..rows * stride).map(|i| if i % 3 == 0 { -1.0 } else { 2.0 }).collect();
            for m in [None, Some(&mask[..])] {
                let mut dst = vec![f32::NAN; cols * rows + 1];
                masked_transpose(&src, m, rows, cols, stride, &mut dst[..cols * rows], rows);
                for c in 0..cols {
                    for r in 0..rows {
                        let at = r * stride + c;
                        let want = if m.is_some() && at % 3 == 0 { 0.0 } else { src[at] };
                        assert_eq!(dst[c * rows + r], want, "{rows}x{cols} stride {stride} masked {} at ({r}, {c})", m.is_some());
                    }
                }
                assert!(dst[cols * rows].is_nan(), "{rows}x{cols}: wrote past the end");
            }
        }
    }

    #[test]
    fn adds_the_transpose() {
        // (rows, cols, ld, dst_ld, at): into columns at..at + rows of rows dst_ld long.
        for &(rows, cols, ld, dst_ld, at) in &[(3456, 256, 256, 3456, 0), (19, 13, 16, 19, 0), (8, 8, 8, 8, 0), (7, 20, 32, 7, 0), (0, 5, 8, 0, 0), (64, 32, 64, 200, 72), (19, 13, 16, 40, 21), (16, 9, 32, 16, 0)] {
            let src: Vec<f32> = (0..rows * ld).map(|i| (i % 1000) as f32).collect();
            let mut dst: Vec<f32> = (0..dst_ld * cols).map(|i| 0.5 * i as f32).collect();
            let before = dst.clone();
            add_transposed(&src, rows, cols, ld, &mut dst[at..], dst_ld);
            for c in 0..cols {
                for r in 0..dst_ld {
                    let added = if (at..at + rows).contains(&r) { src[(r - at) * ld + c] } else { 0.0 };
                    assert_eq!(dst[c * dst_ld + r], before[c * dst_ld + r] + added, "{rows}x{cols} ld {ld} into rows {dst_ld} at {at}: ({r}, {c})");
                }
            }
        }
    }

    #[test]
    fn copies_and_zeroes_rows_of_every_length() {
        for n in [0usize, 1, 2, 3, 4, 5, 7, 8, 9, 14, 16, 28, 33] {
            let src: Vec<f32> = (0..n).map(|i| i as f32 + 1.0).collect();
            let mask: Vec<f32> = (0..n).map(|i| if i % 3 == 0 { 0.0 } else { 2.0 }).collect();
            for m in [None, Some(&mask[..])] {
                // One float past the row, which must stay as it is.
                let mut dst = vec![f32::NAN; n + 1];
                copy_row(&mut dst, &src, m);
                for i in 0..n {
                    let want = if m.is_some() && i % 3 == 0 { 0.0 } else { src[i] };
                    assert_eq!(dst[i], want, "length {n}, masked {}, at {i}", m.is_some());
                }
                assert!(dst[n].is_nan(), "length {n}: wrote past the row");
                zero_row(&mut dst[..n]);
                assert!(dst[..n].iter().all(|&v| v == 0.0) && dst[n].is_nan(), "zero_row, length {n}");
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn stores_the_first_lanes_only() {
        if !crate::ops::isa::avx2() {
            return println!("SKIPPED: no AVX2 on this processor");
        }
        for count in 0..8 {
            let mut out = [f32::NAN; 8];
            // SAFETY: AVX2 is present (checked above); out holds 8 ≥ count floats.
            unsafe {
                let v = std::arch::x86_64::_mm256_setr_ps(1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0);
                store_first(out.as_mut_ptr(), count, v);
            }
            for (i, &v) in out.iter().enumerate() {
                assert!(if i < count { v == (i + 1) as f32 } else { v.is_nan() }, "count {count}: {out:?}");
            }
        }
    }
}
