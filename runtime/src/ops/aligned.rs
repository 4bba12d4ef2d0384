//! Buffers whose first element starts a 64-byte cache line: the CPU backend's buffers and the
//! GEMM's packing buffers.

/// A `Vec` whose first element starts a 64-byte cache line (the CPU backend's buffers).
///
/// A 64-byte vector load (AVX-512) that starts elsewhere in a line reads two lines. glibc's
/// `malloc` returns large blocks 16 bytes past a page boundary, so with plain `Vec`s every
/// AVX-512 load of packed weights was such a split: the convolution microkernel alone ran at
/// 176 GFLOP/s on one thread with its B panel there, 195–212 with it on a line (prof, one Xeon
/// core, AVX-512 peak 240).
pub struct AlignedVec<T> {
    vec: Vec<T>,
    start: usize,
    len: usize,
}

impl<T: Copy + Default> AlignedVec<T> {
    const LINE: usize = 64;

    /// `len` default values, the first on a cache line.
    pub fn new(len: usize) -> Self {
        let extra = Self::LINE / std::mem::size_of::<T>().max(1);
        let vec = vec![T::default(); len + extra];
        // A multiple of the element's size, which is its alignment (f32, u32).
        let misaligned = vec.as_ptr() as usize % Self::LINE;
        let start = if misaligned == 0 { 0 } else { (Self::LINE - misaligned) / std::mem::size_of::<T>().max(1) };
        AlignedVec { vec, start, len }
    }
}

impl<T> std::ops::Deref for AlignedVec<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.vec[self.start..self.start + self.len]
    }
}

impl<T> std::ops::DerefMut for AlignedVec<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.vec[self.start..self.start + self.len]
    }
}

impl<T: Copy + Default> Clone for AlignedVec<T> {
    fn clone(&self) -> Self {
        let mut copy = Self::new(self.len);
        copy.copy_from_slice(self);
        copy
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for AlignedVec<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::AlignedVec;

    #[test]
    fn buffers_start_a_cache_line_and_keep_their_contents() {
        for len in [0, 1, 15, 16, 17, 1000, 1 << 20] {
            let mut a = AlignedVec::<f32>::new(len);
            assert_eq!(a.as_ptr() as usize % 64, 0, "len {len}");
            assert_eq!(a.len(), len);
            assert!(a.iter().all(|&v| v == 0.0));
            a.iter_mut().enumerate().for_each(|(i, v)| *v = i as f32);
            let b = a.clone();
            assert_eq!(b.as_ptr() as usize % 64, 0, "clone of len {len}");
            assert_eq!(&*a, &*b);
            let u = AlignedVec::<u32>::new(len);
            assert_eq!(u.as_ptr() as usize % 64, 0, "u32, len {len}");
        }
    }
}
