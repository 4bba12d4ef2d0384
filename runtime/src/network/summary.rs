//! The printed summary of a network: one row per layer with its output shape, parameters and
//! forward FLOPs, then the totals.

use std::fmt;

use super::spec::NetSpec;

/// A network's layer table; print it with `{}`.
#[derive(Clone, Copy, Debug)]
pub struct Summary {
    spec: &'static NetSpec,
}

impl Summary {
    /// The summary of the network described by `spec`.
    pub fn new(spec: &'static NetSpec) -> Self {
        Summary { spec }
    }

    /// Forward FLOPs per sample (a multiply-add counts 2).
    pub fn flops(&self) -> u64 {
        self.spec.layers.iter().map(|l| l.flops).sum()
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn shape(s: &[usize]) -> String {
    format!("[{}]", s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "))
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let spec = self.spec;
        let rows: Vec<[String; 4]> = spec
            .layers
            .iter()
            .map(|l| [format!("{} ({})", l.name, l.display), shape(l.output), thousands(l.params as u64), thousands(l.flops)])
            .collect();
        let header = ["Layer (type)", "Output shape", "Param #", "FLOPs"];
        let mut w = header.map(str::len);
        for r in &rows {
            for (w, c) in w.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let total = w.iter().sum::<usize>() + 6;
        writeln!(f, "{} (input {})", spec.name, shape(spec.input))?;
        writeln!(f, "{}", "=".repeat(total))?;
        writeln!(f, "{:<w0$}  {:<w1$}  {:>w2$}  {:>w3$}", header[0], header[1], header[2], header[3], w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3])?;
        writeln!(f, "{}", "-".repeat(total))?;
        for r in &rows {
            writeln!(f, "{:<w0$}  {:<w1$}  {:>w2$}  {:>w3$}", r[0], r[1], r[2], r[3], w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3])?;
        }
        writeln!(f, "{}", "=".repeat(total))?;
        writeln!(f, "Total params: {}", thousands(spec.param_len as u64))?;
        writeln!(f, "Forward FLOPs per sample: {} (a multiply-add counts 2)", thousands(self.flops()))?;
        write!(f, "Activation memory per sample (train): {} floats", thousands((spec.act_len + spec.grad_len) as u64))
    }
}
