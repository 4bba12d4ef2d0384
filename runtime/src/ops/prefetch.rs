//! Software prefetches for data a loop reads next, spread over the steps of the work before.

/// Memory to be read next, prefetched into L2 a few cache lines at a time, spread evenly over
/// the `steps` of the work before it.
pub(crate) struct Ahead<'a, const P: usize> {
    parts: [&'a [f32]; P],
    part: usize,
    at: usize,
    per_step: usize,
}

impl<'a, const P: usize> Ahead<'a, P> {
    pub(crate) fn new(parts: [&'a [f32]; P], steps: usize) -> Self {
        let lines: usize = parts.iter().map(|p| p.len().div_ceil(16)).sum();
        Ahead { parts, part: 0, at: 0, per_step: lines.div_ceil(steps.max(1)) }
    }

    /// The next step's share of the lines.
    #[inline]
    pub(crate) fn step(&mut self) {
        let mut left = self.per_step;
        while left > 0 && self.part < self.parts.len() {
            let part = self.parts[self.part];
            if self.at >= part.len() {
                (self.part, self.at) = (self.part + 1, 0);
                continue;
            }
            let lines = (part.len() - self.at).div_ceil(16).min(left);
            #[cfg(target_arch = "x86_64")]
            for l in 0..lines {
                // SAFETY: SSE is part of x86-64; a prefetch reads nothing the program sees.
                unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(part.as_ptr().wrapping_add(self.at + 16 * l).cast()) };
            }
            self.at += 16 * lines;
            left -= lines;
        }
    }
}
